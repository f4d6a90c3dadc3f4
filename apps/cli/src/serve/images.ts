/**
 * Image URLs of a chat request → encoded image bytes, before the request is queued (checklist
 * B29, B30, L6, L7):
 * - `data:` URLs with an `image/*` type (the default, and the only kind without a flag);
 * - `http(s)` URLs only for hosts on the `--allowed-media-domains` list, with a timeout (5 s),
 *   the byte cap enforced while the body streams, and redirects followed only to listed hosts;
 * - anything else (`file:`, other schemes, malformed URLs) is refused.
 * The bytes must then look like an image (PNG, JPEG, GIF, WebP, BMP or TIFF) whose header size is
 * under the pixel cap; the full decode happens later, in the engine.
 */
import { checkImageLimits, readImageHeader } from '@owlet/vision-encoder';

import { ApiError, badRequest } from './errors.js';

export interface ImageSourceOptions {
  /** Host names (or host:port) that http(s) image URLs may point at; empty: none. */
  allowedHosts: readonly string[];
  /** Largest encoded image accepted, in bytes. */
  maxBytes: number;
  /** Largest width × height accepted (from the image header). */
  maxPixels: number;
  /** Timeout of one remote fetch, redirects included. */
  timeoutMs: number;
  /** Redirects followed (each to a listed host). */
  maxRedirects?: number;
  /** The client went away: stop fetching. */
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function isTiff(b: Uint8Array): boolean {
  return (
    b.length >= 8 &&
    ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) ||
      (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a))
  );
}

/** Refuses bytes that are not an image of a known format, or whose header is over the caps. */
export function checkImageBytes(bytes: Uint8Array, param: string, maxPixels: number): void {
  if (bytes.length === 0) throw badRequest('the image is empty', param, 'invalid_image');
  let header: ReturnType<typeof readImageHeader>;
  try {
    header = readImageHeader(bytes);
  } catch (e) {
    throw badRequest(`the image is not valid: ${(e as Error).message}`, param, 'invalid_image');
  }
  if (!header) {
    if (isTiff(bytes)) return; // sharp reads TIFF; its own pixel limit guards the decode
    throw badRequest(
      `the image is not a PNG, JPEG, GIF, WebP, BMP or TIFF file (first bytes ${hexPrefix(bytes)})`,
      param,
      'invalid_image',
    );
  }
  try {
    checkImageLimits(header.width, header.height, { maxPixels });
  } catch (e) {
    throw badRequest((e as Error).message, param, 'image_too_large');
  }
}

function hexPrefix(b: Uint8Array): string {
  return Array.from(b.subarray(0, 8), (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/** Decodes a `data:` URL (RFC 2397) whose media type is an image. */
export function decodeDataUrl(url: string, param: string, maxBytes: number): Uint8Array {
  const comma = url.indexOf(',');
  if (comma < 0) throw badRequest('malformed data: URL (no comma)', param, 'invalid_image_url');
  const meta = url.slice('data:'.length, comma).split(';');
  const mime = (meta[0] ?? '').trim().toLowerCase();
  const isBase64 = meta.length > 1 && meta[meta.length - 1]?.trim().toLowerCase() === 'base64';
  if (!mime.startsWith('image/')) {
    throw badRequest(
      `data: URL of type ${JSON.stringify(mime || 'text/plain')} is not an image (expected data:image/...)`,
      param,
      'invalid_image_url',
    );
  }
  const payload = url.slice(comma + 1);
  let bytes: Buffer;
  if (isBase64) {
    if (!BASE64.test(payload)) throw badRequest('data: URL has invalid base64', param, 'invalid_image_url');
    if ((payload.length * 3) / 4 > maxBytes + 3)
      throw badRequest(`the image is over ${maxBytes} bytes`, param, 'image_too_large');
    bytes = Buffer.from(payload, 'base64');
  } else {
    try {
      bytes = Buffer.from(decodeURIComponent(payload), 'latin1');
    } catch {
      throw badRequest('data: URL has invalid percent-encoding', param, 'invalid_image_url');
    }
  }
  if (bytes.length > maxBytes) throw badRequest(`the image is over ${maxBytes} bytes`, param, 'image_too_large');
  // A copy that owns its memory (small Buffers share a pool).
  return new Uint8Array(bytes);
}

function hostAllowed(u: URL, allowed: readonly string[]): boolean {
  const host = u.hostname.toLowerCase();
  const withPort = u.host.toLowerCase();
  return allowed.some((a) => a === host || a === withPort);
}

/** Fetches an http(s) image from an allowed host; every cap holds while the body streams. */
export async function fetchImage(url: string, param: string, o: ImageSourceOptions): Promise<Uint8Array> {
  const doFetch = o.fetch ?? fetch;
  const timeout = AbortSignal.timeout(o.timeoutMs);
  const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
  const maxRedirects = o.maxRedirects ?? 3;
  let current: URL;
  try {
    current = new URL(url);
  } catch {
    throw badRequest('malformed image URL', param, 'invalid_image_url');
  }
  const timedOut = () =>
    badRequest(`fetching the image timed out after ${o.timeoutMs / 1000} s`, param, 'image_fetch_failed');
  try {
    for (let hop = 0; ; hop++) {
      if (current.protocol !== 'http:' && current.protocol !== 'https:')
        throw badRequest(`image URL scheme ${current.protocol} is not allowed`, param, 'invalid_image_url');
      if (!hostAllowed(current, o.allowedHosts)) {
        throw badRequest(
          hop === 0
            ? `image host ${current.host} is not on the server's --allowed-media-domains list`
            : `the image URL redirects to ${current.host}, which is not on the server's --allowed-media-domains list`,
          param,
          'invalid_image_url',
        );
      }
      const res = await doFetch(current, { redirect: 'manual', signal });
      if (res.status >= 300 && res.status < 400) {
        await res.body?.cancel();
        const loc = res.headers.get('location');
        if (!loc) throw badRequest(`the image URL answered HTTP ${res.status} without a Location`, param);
        if (hop >= maxRedirects)
          throw badRequest(`the image URL redirects more than ${maxRedirects} times`, param, 'image_fetch_failed');
        current = new URL(loc, current);
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw badRequest(`could not fetch the image: HTTP ${res.status}`, param, 'image_fetch_failed');
      }
      const declared = Number(res.headers.get('content-length') ?? Number.NaN);
      if (Number.isFinite(declared) && declared > o.maxBytes) {
        await res.body?.cancel();
        throw badRequest(`the image is ${declared} bytes; the limit is ${o.maxBytes}`, param, 'image_too_large');
      }
      if (!res.body) throw badRequest('the image response has no body', param, 'image_fetch_failed');
      const reader = res.body.getReader();
      const chunks: Uint8Array[] = [];
      let size = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.length;
        if (size > o.maxBytes) {
          await reader.cancel();
          throw badRequest(`the image is over ${o.maxBytes} bytes`, param, 'image_too_large');
        }
        chunks.push(value);
      }
      const out = new Uint8Array(size);
      let off = 0;
      for (const c of chunks) {
        out.set(c, off);
        off += c.length;
      }
      return out;
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    if (o.signal?.aborted) throw e; // the client left; nobody to answer
    if (timeout.aborted) throw timedOut();
    throw badRequest(`could not fetch the image: ${(e as Error).message}`, param, 'image_fetch_failed');
  }
}

/** One image URL of a request → checked image bytes. */
export async function loadImage(url: string, param: string, o: ImageSourceOptions): Promise<Uint8Array> {
  if (typeof url !== 'string' || url.trim() === '')
    throw badRequest('the image URL is empty', param, 'invalid_image_url');
  let bytes: Uint8Array;
  if (/^data:/i.test(url)) bytes = decodeDataUrl(url, param, o.maxBytes);
  else if (/^https?:\/\//i.test(url)) {
    if (o.allowedHosts.length === 0) {
      throw badRequest(
        'image URLs must be data: URLs; this server fetches http(s) images only from hosts given with --allowed-media-domains',
        param,
        'invalid_image_url',
      );
    }
    bytes = await fetchImage(url, param, o);
  } else {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
    throw badRequest(
      scheme
        ? `image URL scheme ${scheme}: is not allowed (use a data: URL)`
        : 'malformed image URL (expected a data: URL)',
      param,
      'invalid_image_url',
    );
  }
  checkImageBytes(bytes, param, o.maxPixels);
  return bytes;
}
