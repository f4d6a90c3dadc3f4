/**
 * Bounded HTTP fetches (checklist B29, B30, L6, L7): every cap is enforced while the body streams
 * (never after buffering it), a `Content-Length` over the cap is refused before anything is
 * allocated, the wait for the response headers and every wait for the next body chunk time out,
 * and redirects are followed by hand (`redirect: 'manual'`) only to the request's own origin or to
 * origins the caller allows, with credentials dropped when the origin changes. No Node imports:
 * browsers use it too (where a browser hides a redirect, the final URL is checked instead).
 */
import { CheckpointError, CheckpointErrorCode } from './errors.js';

/** Limits of one fetch. */
export interface FetchLimits {
  /** Largest body accepted, in bytes (default {@link DEFAULT_MAX_DOWNLOAD_BYTES}). */
  maxBytes?: number;
  /** How long to wait for the response headers, in ms (default {@link DEFAULT_CONNECT_TIMEOUT_MS}). */
  connectTimeoutMs?: number;
  /** How long the body may go without a byte, in ms (default {@link DEFAULT_READ_TIMEOUT_MS}). */
  readTimeoutMs?: number;
  /**
   * Origins (`https://cdn.example.com`) a redirect may lead to besides the request's own, or
   * `'any'`. Default: none — except that `https://huggingface.co` may redirect to its download
   * hosts (`https://*.hf.co`, `https://*.huggingface.co`), as every weight file there does.
   */
  allowRedirectOrigins?: readonly string[] | 'any';
  /** Most redirects followed (default 5). */
  maxRedirects?: number;
}

/** The largest body a fetch keeps in memory by default: 4 GiB, the largest Uint8Array Node allows. */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 2 ** 32;
/** Default wait for response headers: 10 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Default wait for the next body chunk: 30 s. */
export const DEFAULT_READ_TIMEOUT_MS = 30_000;

const err = (
  code: CheckpointErrorCode,
  url: string,
  message: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
) => new CheckpointError(code, `${url}: ${message}`, { details: { url, ...details }, cause });

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new CheckpointError(CheckpointErrorCode.ABORTED, 'the download was aborted', { cause: signal.reason });
  }
}

const HF_ORIGIN = 'https://huggingface.co';

/** Whether a redirect from `from` may go to `to`. */
export function redirectAllowed(from: URL, to: URL, allow: FetchLimits['allowRedirectOrigins']): boolean {
  if (to.protocol !== 'https:' && to.protocol !== 'http:') return false;
  if (to.origin === from.origin) return true;
  if (allow === 'any') return true;
  if (allow?.includes(to.origin)) return true;
  if (
    allow === undefined &&
    from.origin === HF_ORIGIN &&
    to.protocol === 'https:' &&
    (to.hostname.endsWith('.hf.co') || to.hostname.endsWith('.huggingface.co'))
  ) {
    return true;
  }
  return false;
}

/** A response whose body is read under the limits it was fetched with. */
export interface BoundedResponse {
  readonly response: Response;
  /** The URL that answered (after redirects). */
  readonly url: string;
  /**
   * Reads the whole body: at most `maxBytes` (else FETCH_TOO_LARGE, as soon as the stream passes
   * it), exactly `expected` bytes when given; each wait for a chunk is bounded by the read timeout.
   */
  readBody(options?: { expected?: number; onBytes?: (loaded: number) => void }): Promise<Uint8Array>;
  /** Discards the body. */
  cancel(): Promise<void>;
}

/**
 * `fetch` under {@link FetchLimits}. Throws FETCH_TIMEOUT (no headers in time), FETCH_REFUSED (a
 * redirect to an origin that is not allowed, too many redirects, an HTML page where a file was
 * expected with `refuseHtml`), FETCH_TOO_LARGE (a Content-Length over the cap), ABORTED, or
 * CHECKPOINT_IO (the network failed). HTTP error statuses are returned, not thrown.
 */
export async function fetchBounded(
  url: string,
  init: RequestInit & { refuseHtml?: boolean } = {},
  limits: FetchLimits & {
    fetch?: typeof fetch;
    signal?: AbortSignal;
    /**
     * Decides where a redirect may go instead of the origin rule of `allowRedirectOrigins` (for a
     * caller with its own policy, such as a host allowlist); http(s) targets only either way.
     */
    redirectAllowed?: (to: URL, from: URL) => boolean;
  } = {},
): Promise<BoundedResponse> {
  const f = limits.fetch ?? globalThis.fetch;
  if (typeof f !== 'function')
    throw err(CheckpointErrorCode.CHECKPOINT_IO, url, 'no fetch implementation is available');
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES;
  const connectMs = limits.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const readMs = limits.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  const maxRedirects = limits.maxRedirects ?? 5;
  const { signal } = limits;
  const { refuseHtml, ...requestInit } = init;
  const first = new URL(url);
  const mayRedirect = (to: URL): boolean =>
    limits.redirectAllowed
      ? (to.protocol === 'https:' || to.protocol === 'http:') && limits.redirectAllowed(to, first)
      : redirectAllowed(first, to, limits.allowRedirectOrigins);
  let current = first;
  let method = (requestInit.method ?? 'GET').toUpperCase();
  let headers = new Headers(requestInit.headers);
  let body = requestInit.body;

  for (let hop = 0; ; hop++) {
    aborted(signal);
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error('connect timeout'));
    }, connectMs);
    let res: Response;
    try {
      res = await f(current.href, {
        ...requestInit,
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        redirect: 'manual',
        signal: controller.signal,
      });
    } catch (e) {
      signal?.removeEventListener('abort', onAbort);
      aborted(signal);
      if (timedOut) {
        throw err(CheckpointErrorCode.FETCH_TIMEOUT, current.href, `no response within ${connectMs / 1000} s`, {
          timeoutMs: connectMs,
        });
      }
      throw err(CheckpointErrorCode.CHECKPOINT_IO, current.href, `fetch failed: ${String(e)}`, {}, e);
    } finally {
      clearTimeout(timer);
    }
    const done = () => signal?.removeEventListener('abort', onAbort);
    const cancel = async () => {
      done();
      await res.body?.cancel().catch(() => {});
    };

    // A browser hides manual redirects (an opaque response): it follows them itself, and the final
    // URL is what can be checked.
    if (res.type === 'opaqueredirect') {
      await cancel();
      const followed = await f(current.href, {
        ...requestInit,
        method,
        headers,
        redirect: 'follow',
        ...(signal ? { signal } : {}),
      });
      const to = new URL(followed.url || current.href);
      if (!mayRedirect(to)) {
        await followed.body?.cancel().catch(() => {});
        throw err(CheckpointErrorCode.FETCH_REFUSED, url, `redirected to ${to.origin}, which is not allowed`, {
          location: to.href,
          reason: 'redirect-target',
        });
      }
      res = followed;
    } else if (res.status >= 300 && res.status < 400 && res.headers.get('location') !== null) {
      const location = res.headers.get('location') as string;
      await cancel();
      let to: URL;
      try {
        to = new URL(location, current);
      } catch (e) {
        throw err(
          CheckpointErrorCode.FETCH_REFUSED,
          current.href,
          `redirect to an invalid URL ${JSON.stringify(location)}`,
          {},
          e,
        );
      }
      if (!mayRedirect(to)) {
        throw err(
          CheckpointErrorCode.FETCH_REFUSED,
          current.href,
          `redirects to ${to.origin}, another origin: not followed (allow it with allowRedirectOrigins)`,
          { location: to.href, reason: 'redirect-target' },
        );
      }
      if (hop >= maxRedirects) {
        throw err(CheckpointErrorCode.FETCH_REFUSED, url, `more than ${maxRedirects} redirects`, {
          location: to.href,
          reason: 'redirect-count',
          maxRedirects,
        });
      }
      if (to.origin !== current.origin) {
        // never carry credentials to another origin
        headers = new Headers(headers);
        headers.delete('authorization');
        headers.delete('cookie');
      }
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
      }
      current = to;
      continue;
    }

    const final = current.href;
    const len = res.headers.get('content-length');
    if (len !== null && /^\d+$/.test(len.trim()) && Number(len) > maxBytes) {
      await cancel();
      throw err(
        CheckpointErrorCode.FETCH_TOO_LARGE,
        final,
        `the server announces ${len.trim()} bytes; the limit is ${maxBytes}`,
        { contentLength: len.trim(), limit: maxBytes },
      );
    }
    if (refuseHtml && res.ok && /^\s*text\/html\b/i.test(res.headers.get('content-type') ?? '')) {
      await cancel();
      throw err(CheckpointErrorCode.FETCH_REFUSED, final, 'the server answered with an HTML page, not the file', {
        reason: 'html',
      });
    }
    return {
      response: res,
      url: final,
      cancel,
      async readBody(options = {}) {
        try {
          return await readBounded(res, final, controller, {
            maxBytes,
            readMs,
            signal,
            expected: options.expected,
            onBytes: options.onBytes,
          });
        } finally {
          done();
        }
      },
    };
  }
}

async function readBounded(
  res: Response,
  url: string,
  controller: AbortController,
  o: {
    maxBytes: number;
    readMs: number;
    signal: AbortSignal | undefined;
    expected: number | undefined;
    onBytes: ((n: number) => void) | undefined;
  },
): Promise<Uint8Array> {
  const { expected, maxBytes } = o;
  if (expected !== undefined && expected > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw err(CheckpointErrorCode.FETCH_TOO_LARGE, url, `${expected} bytes were asked for; the limit is ${maxBytes}`, {
      limit: maxBytes,
    });
  }
  if (!res.body) {
    const buf = new Uint8Array(await res.arrayBuffer());
    if (buf.byteLength > maxBytes)
      throw err(CheckpointErrorCode.FETCH_TOO_LARGE, url, `the body is over ${maxBytes} bytes`, { limit: maxBytes });
    o.onBytes?.(buf.byteLength);
    return buf;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  const out = expected !== undefined ? new Uint8Array(expected) : undefined;
  const stop = async (e: CheckpointError): Promise<never> => {
    controller.abort(e);
    await reader.cancel().catch(() => {});
    throw e;
  };
  for (;;) {
    if (o.signal?.aborted) {
      controller.abort(o.signal.reason);
      await reader.cancel().catch(() => {});
      aborted(o.signal);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), o.readMs);
    });
    let step: ReadableStreamReadResult<Uint8Array> | 'timeout';
    try {
      step = await Promise.race([reader.read(), timeout]);
    } catch (e) {
      aborted(o.signal);
      throw err(CheckpointErrorCode.CHECKPOINT_IO, url, `reading the body failed: ${String(e)}`, {}, e);
    } finally {
      clearTimeout(timer);
    }
    if (step === 'timeout') {
      return stop(
        err(CheckpointErrorCode.FETCH_TIMEOUT, url, `no data for ${o.readMs / 1000} s after ${loaded} bytes`, {
          timeoutMs: o.readMs,
          loaded,
        }),
      );
    }
    if (step.done) break;
    const value = step.value;
    if (loaded + value.byteLength > (out ? out.byteLength : maxBytes)) {
      return stop(
        out
          ? err(
              CheckpointErrorCode.CHECKPOINT_IO,
              url,
              `server sent more than the ${out.byteLength} bytes it announced`,
            )
          : err(
              CheckpointErrorCode.FETCH_TOO_LARGE,
              url,
              `the body is over ${maxBytes} bytes (stopped reading there)`,
              {
                limit: maxBytes,
              },
            ),
      );
    }
    if (out) out.set(value, loaded);
    else chunks.push(value);
    loaded += value.byteLength;
    o.onBytes?.(loaded);
  }
  if (out) {
    if (loaded !== out.byteLength)
      throw err(CheckpointErrorCode.CHECKPOINT_IO, url, `truncated response: ${loaded} of ${out.byteLength} bytes`);
    return out;
  }
  const all = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return all;
}
