/**
 * The one bounded image reader of the CLI (checklist B29, B30, L6, L7): `owlet run` / `chat`
 * (`--image` paths, data: and http(s) URLs) and `owlet serve` (data: URLs, http(s) URLs of listed
 * hosts) read image bytes through these functions, each with its own policy on top:
 * - a data: URL is sized from its payload before it is decoded;
 * - an http(s) fetch goes through `fetchBounded`: the byte cap holds while the body streams, a
 *   Content-Length over it is refused before anything is read, a wait for the headers and every
 *   wait for the next bytes time out, and the whole fetch has a deadline (a server that drips a
 *   byte just under the read timeout is cut off there); redirects are followed by hand, only
 *   where the caller's policy allows, and an HTML page is never taken for an image;
 * - a path opens regular files only (a FIFO or a device never blocks), sized before it is read;
 * - the bytes must then start like a format the official pipeline's Pillow opens and owlet
 *   decodes, with a header under the pixel cap.
 * Every refusal is an {@link ImageSourceError} with a stable code; callers turn it into their own
 * error (a usage error in the CLI, an HTTP 400 in the server).
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

import { fetchBounded, isCheckpointError, type FetchLimits } from '@owlet/checkpoint';
import {
  checkImageFormat,
  checkImageLimits,
  DECODABLE_FORMATS,
  FORMAT_NAMES,
  readImageHeader,
} from '@owlet/vision-encoder';

export type ImageSourceErrorCode =
  | 'invalid_image_url'
  | 'image_not_found'
  | 'image_too_large'
  | 'image_fetch_failed'
  | 'invalid_image';

/** Why an image could not be read. `code` is stable (the server sends it as the OpenAI error code). */
export class ImageSourceError extends Error {
  constructor(
    readonly code: ImageSourceErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ImageSourceError';
  }
}

/** The largest encoded image read by default: 64 MiB. */
export const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

/** Limits and redirect policy of one image fetch. */
export interface ImageFetchOptions {
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** Wait for the response headers, in ms (each hop). */
  connectTimeoutMs: number;
  /** Longest wait for the next body bytes, in ms. */
  readTimeoutMs: number;
  /** Deadline of the whole fetch (redirects and body included), in ms. */
  totalTimeoutMs: number;
  /** Origins a redirect may lead to besides the URL's own (`fetchBounded`'s rule). */
  allowRedirectOrigins?: FetchLimits['allowRedirectOrigins'];
  /** A policy of its own for redirect targets (replaces the origin rule). */
  redirectAllowed?: (to: URL) => boolean;
  /** What a refused redirect target is not, for the message ("…, which is not <this>"). */
  redirectPolicy?: string;
  /** Most redirects followed (default 5). */
  maxRedirects?: number;
  /** The caller gave up: stop (rethrown as the caller's abort, not as an image error). */
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A data: URL (RFC 2397) → its media type and bytes, sized from the payload before decoding it. */
export function decodeDataUrl(url: string, maxBytes: number): { mime: string; bytes: Uint8Array } {
  const comma = url.indexOf(',');
  if (!/^data:/i.test(url) || comma < 0)
    throw new ImageSourceError('invalid_image_url', 'malformed data: URL (no comma)');
  const meta = url.slice('data:'.length, comma).split(';');
  const mime = (meta[0] ?? '').trim().toLowerCase();
  const isBase64 = meta.length > 1 && meta[meta.length - 1]?.trim().toLowerCase() === 'base64';
  const payload = url.slice(comma + 1);
  const over = () => new ImageSourceError('image_too_large', `the image is over ${maxBytes} bytes`);
  let bytes: Buffer;
  if (isBase64) {
    if (!BASE64.test(payload)) throw new ImageSourceError('invalid_image_url', 'data: URL has invalid base64');
    if ((payload.length * 3) / 4 > maxBytes + 3) throw over();
    bytes = Buffer.from(payload, 'base64');
  } else {
    if (payload.length / 3 > maxBytes) throw over(); // at most 3 characters (%XX) a byte
    try {
      bytes = Buffer.from(decodeURIComponent(payload), 'latin1');
    } catch {
      throw new ImageSourceError('invalid_image_url', 'data: URL has invalid percent-encoding');
    }
  }
  if (bytes.length > maxBytes) throw over();
  // a copy that owns its memory (small Buffers share a pool)
  return { mime, bytes: new Uint8Array(bytes) };
}

/** An http(s) image under {@link ImageFetchOptions}: its bytes, or an ImageSourceError. */
export async function fetchImageBytes(url: string, o: ImageFetchOptions): Promise<Uint8Array> {
  const deadline = AbortSignal.timeout(o.totalTimeoutMs);
  const signal = o.signal ? AbortSignal.any([o.signal, deadline]) : deadline;
  const timedOut = (why: string) => new ImageSourceError('image_fetch_failed', `fetching the image timed out (${why})`);
  try {
    const r = await fetchBounded(
      url,
      { refuseHtml: true },
      {
        maxBytes: o.maxBytes,
        connectTimeoutMs: o.connectTimeoutMs,
        readTimeoutMs: o.readTimeoutMs,
        ...(o.allowRedirectOrigins !== undefined ? { allowRedirectOrigins: o.allowRedirectOrigins } : {}),
        ...(o.redirectAllowed ? { redirectAllowed: o.redirectAllowed } : {}),
        ...(o.maxRedirects !== undefined ? { maxRedirects: o.maxRedirects } : {}),
        ...(o.fetch ? { fetch: o.fetch } : {}),
        signal,
      },
    );
    if (!r.response.ok) {
      await r.cancel();
      throw new ImageSourceError('image_fetch_failed', `could not fetch the image: HTTP ${r.response.status}`);
    }
    return await r.readBody();
  } catch (e) {
    if (e instanceof ImageSourceError) throw e;
    if (o.signal?.aborted) throw e; // the caller gave up: its abort, not an image error
    if (deadline.aborted) throw timedOut(`the whole fetch took over ${o.totalTimeoutMs / 1000} s`);
    if (!isCheckpointError(e)) throw e;
    const d = e.details;
    const detail = e.message.slice(e.message.indexOf(': ') + 2).split('\n')[0];
    switch (e.code) {
      case 'FETCH_TIMEOUT':
        throw timedOut(detail ?? e.message);
      case 'FETCH_TOO_LARGE':
        throw new ImageSourceError(
          'image_too_large',
          d.contentLength !== undefined
            ? `the image is ${String(d.contentLength)} bytes; the limit is ${o.maxBytes}`
            : `the image is over ${o.maxBytes} bytes`,
        );
      case 'FETCH_REFUSED':
        if (d.reason === 'redirect-target' && typeof d.location === 'string') {
          const to = new URL(d.location);
          throw new ImageSourceError(
            'invalid_image_url',
            `the image URL redirects to ${to.host}, which is not ${o.redirectPolicy ?? 'allowed'}`,
          );
        }
        if (d.reason === 'redirect-count')
          throw new ImageSourceError(
            'image_fetch_failed',
            `the image URL redirects more than ${String(d.maxRedirects)} times`,
          );
        if (d.reason === 'html')
          throw new ImageSourceError('invalid_image', 'the server answered with an HTML page, not an image');
        throw new ImageSourceError('image_fetch_failed', `could not fetch the image: ${detail}`);
      default:
        throw new ImageSourceError('image_fetch_failed', `could not fetch the image: ${detail}`);
    }
  }
}

/**
 * A local image file: opened without blocking (a FIFO or a device is refused, never waited on),
 * checked to be a regular file on the open descriptor, sized before it is read.
 */
export function readImageFile(path: string, shown: string, maxBytes: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new ImageSourceError('image_not_found', `image not found: ${shown}`);
    throw new ImageSourceError('image_not_found', `cannot open image ${shown}: ${code ?? String(e)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ImageSourceError('invalid_image', `--image must be a regular file: ${shown}`);
    if (st.size > maxBytes)
      throw new ImageSourceError('image_too_large', `image ${shown} is ${st.size} bytes; the limit is ${maxBytes}`);
    if (st.size === 0) throw new ImageSourceError('invalid_image', `image ${shown} is empty`);
    const out = new Uint8Array(st.size);
    let at = 0;
    while (at < out.length) {
      const n = readSync(fd, out, at, out.length - at, at);
      if (n === 0) break;
      at += n;
    }
    return at === out.length ? out : out.slice(0, at);
  } finally {
    closeSync(fd);
  }
}

const DECODABLE = `${DECODABLE_FORMATS.slice(0, -1)
  .map((f) => FORMAT_NAMES[f])
  .join(', ')} or ${FORMAT_NAMES[DECODABLE_FORMATS[DECODABLE_FORMATS.length - 1] ?? 'png']}`;

/**
 * Refuses bytes that do not start like a format owlet decodes (what the official Pillow opens), a
 * header cut short, or a header over the pixel cap — from the first bytes, before any decode.
 * Never echoes the bytes.
 */
export function checkImageBytes(bytes: Uint8Array, maxPixels: number): void {
  if (bytes.length === 0) throw new ImageSourceError('invalid_image', 'the image is empty');
  let format: ReturnType<typeof checkImageFormat>;
  try {
    format = checkImageFormat(bytes);
  } catch (e) {
    throw new ImageSourceError('invalid_image', (e as Error).message);
  }
  if (format === null) throw new ImageSourceError('invalid_image', `the image is not a ${DECODABLE} file`);
  let header: ReturnType<typeof readImageHeader>;
  try {
    header = readImageHeader(bytes);
  } catch (e) {
    throw new ImageSourceError('invalid_image', `the image is not valid: ${(e as Error).message}`);
  }
  if (!header) return; // TIFF: the decoder's own limits guard it (the header is not parsed here)
  try {
    checkImageLimits(header.width, header.height, { maxPixels });
  } catch (e) {
    throw new ImageSourceError('image_too_large', (e as Error).message);
  }
}
