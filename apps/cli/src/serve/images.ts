/**
 * Image URLs of a chat request → encoded image bytes, before the request is queued (checklist
 * B29, B30, L6, L7), through the CLI's one bounded image reader (`../image-source.ts`, which
 * `owlet run` / `chat` use too), under the server's policy:
 * - `data:` URLs with an `image/*` type (the default, and the only kind without a flag);
 * - `http(s)` URLs only for hosts on the `--allowed-media-domains` list, with a deadline on the
 *   whole fetch (5 s), the byte cap enforced while the body streams, and redirects followed only
 *   to listed hosts;
 * - anything else (`file:`, other schemes, malformed URLs) is refused.
 * The bytes must then look like an image of a format owlet decodes whose header size is under the
 * pixel cap; the full decode happens later, in the engine.
 */
import { checkImageBytes, decodeDataUrl, fetchImageBytes, ImageSourceError } from '../image-source.js';
import { badRequest } from './errors.js';

export interface ImageSourceOptions {
  /** Host names (or host:port) that http(s) image URLs may point at; empty: none. */
  allowedHosts: readonly string[];
  /** Largest encoded image accepted, in bytes. */
  maxBytes: number;
  /** Largest width × height accepted (from the image header). */
  maxPixels: number;
  /** Timeout of one remote fetch, redirects and body included. */
  timeoutMs: number;
  /** Redirects followed (each to a listed host). */
  maxRedirects?: number;
  /** The client went away: stop fetching. */
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

function hostAllowed(u: URL, allowed: readonly string[]): boolean {
  const host = u.hostname.toLowerCase();
  const withPort = u.host.toLowerCase();
  return allowed.some((a) => a === host || a === withPort);
}

async function readBytes(url: string, o: ImageSourceOptions): Promise<Uint8Array> {
  if (/^data:/i.test(url)) {
    const { mime, bytes } = decodeDataUrl(url, o.maxBytes);
    if (!mime.startsWith('image/')) {
      throw new ImageSourceError(
        'invalid_image_url',
        `data: URL of type ${JSON.stringify(mime || 'text/plain')} is not an image (expected data:image/...)`,
      );
    }
    return bytes;
  }
  if (!/^https?:\/\//i.test(url)) {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1];
    throw new ImageSourceError(
      'invalid_image_url',
      scheme
        ? `image URL scheme ${scheme}: is not allowed (use a data: URL)`
        : 'malformed image URL (expected a data: URL)',
    );
  }
  if (o.allowedHosts.length === 0) {
    throw new ImageSourceError(
      'invalid_image_url',
      'image URLs must be data: URLs; this server fetches http(s) images only from hosts given with --allowed-media-domains',
    );
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ImageSourceError('invalid_image_url', 'malformed image URL');
  }
  if (!hostAllowed(u, o.allowedHosts)) {
    throw new ImageSourceError(
      'invalid_image_url',
      `image host ${u.host} is not on the server's --allowed-media-domains list`,
    );
  }
  return fetchImageBytes(url, {
    maxBytes: o.maxBytes,
    connectTimeoutMs: o.timeoutMs,
    readTimeoutMs: o.timeoutMs,
    totalTimeoutMs: o.timeoutMs,
    redirectAllowed: (to) => hostAllowed(to, o.allowedHosts),
    redirectPolicy: "on the server's --allowed-media-domains list",
    maxRedirects: o.maxRedirects ?? 3,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.fetch ? { fetch: o.fetch } : {}),
  });
}

/** One image URL of a request → checked image bytes (an ApiError 400 naming `param` otherwise). */
export async function loadImage(url: string, param: string, o: ImageSourceOptions): Promise<Uint8Array> {
  try {
    if (typeof url !== 'string' || url.trim() === '')
      throw new ImageSourceError('invalid_image_url', 'the image URL is empty');
    const bytes = await readBytes(url, o);
    checkImageBytes(bytes, o.maxPixels);
    return bytes;
  } catch (e) {
    if (e instanceof ImageSourceError) throw badRequest(e.message, param, e.code);
    throw e;
  }
}
