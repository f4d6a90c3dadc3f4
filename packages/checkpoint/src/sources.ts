/**
 * Random-access byte sources for checkpoint files: in-memory bytes, a Blob/File, a URL (HTTP Range
 * requests where the server honours them) and, in `node.ts`, a file handle with positional reads.
 * Nothing here imports Node modules, so browsers can load it.
 */
import { CheckpointError, CheckpointErrorCode } from './errors.js';
import { fetchBounded, type FetchLimits } from './fetch.js';

/** A file that can be read at any offset. */
export interface ByteSource {
  /** The file's name as shown in progress events and errors (`model-00001-of-00002.safetensors`). */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` (a short read is a CHECKPOINT_IO error). */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Releases file handles; reads after close fail. */
  close(): Promise<void>;
}

/** A folder of checkpoint files (a directory, a URL prefix, a set of browser Files). */
export interface ByteSourceFolder {
  /** Describes the folder in errors (`/models/owl2`, `https://host/owl2/`). */
  readonly description: string;
  /**
   * Opens `name` (already validated as a plain file name); undefined if it does not exist.
   * `options.maxBytes` bounds a file that must be read whole (a side file).
   */
  open(name: string, signal?: AbortSignal, options?: OpenOptions): Promise<ByteSource | undefined>;
  /** Whether `name` exists, without opening it for long. */
  exists(name: string, signal?: AbortSignal): Promise<boolean>;
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new CheckpointError(CheckpointErrorCode.ABORTED, 'checkpoint operation was aborted', {
      cause: signal.reason,
    });
  }
}

export function checkRange(source: { name: string; size: number }, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > source.size
  ) {
    throw new CheckpointError(
      CheckpointErrorCode.CHECKPOINT_IO,
      `${source.name}: read of ${length} bytes at ${offset} is outside the file (${source.size} bytes)`,
      { details: { file: source.name, offset, length, size: source.size } },
    );
  }
}

/** A source over bytes already in memory (no copy; reads return views). */
export function bytesSource(bytes: Uint8Array | ArrayBuffer, name = 'memory'): ByteSource {
  const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const size = data.byteLength;
  let closed = false;
  return {
    name,
    size,
    async read(offset, length, signal) {
      throwIfAborted(signal);
      if (closed) throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${name}: read after close`);
      checkRange({ name, size }, offset, length);
      return data.subarray(offset, offset + length);
    },
    async close() {
      closed = true;
    },
  };
}

/** A source over a Blob or File (browser or Node ≥ 18); reads slice the blob. */
export function blobSource(blob: Blob, name?: string): ByteSource {
  const fileName = name ?? ((blob as { name?: unknown }).name as string | undefined) ?? 'blob';
  const size = blob.size;
  return {
    name: fileName,
    size,
    async read(offset, length, signal) {
      throwIfAborted(signal);
      checkRange({ name: fileName, size }, offset, length);
      let buf: ArrayBuffer;
      try {
        buf = await blob.slice(offset, offset + length).arrayBuffer();
      } catch (e) {
        throw new CheckpointError(
          CheckpointErrorCode.CHECKPOINT_IO,
          `${fileName}: reading the blob failed: ${String(e)}`,
          {
            cause: e,
          },
        );
      }
      if (buf.byteLength !== length) {
        throw new CheckpointError(
          CheckpointErrorCode.CHECKPOINT_IO,
          `${fileName}: short read, ${buf.byteLength} of ${length} bytes at ${offset}`,
        );
      }
      return new Uint8Array(buf);
    },
    async close() {},
  };
}

/** A folder made of Blobs/Files by name (a browser folder picker, drag and drop, or a Map you build). */
export function blobFolder(
  files: Iterable<Blob | File> | Map<string, Blob | ArrayBuffer | Uint8Array>,
  description = 'files',
): ByteSourceFolder {
  const map = new Map<string, Blob | ArrayBuffer | Uint8Array>();
  if (files instanceof Map) {
    for (const [k, v] of files) map.set(k, v);
  } else {
    for (const f of files) {
      const n = (f as File).name;
      if (typeof n !== 'string') {
        throw new CheckpointError(
          CheckpointErrorCode.CHECKPOINT_IO,
          'blobFolder: every item needs a file name (pass File objects or a Map)',
        );
      }
      // webkitRelativePath from a folder picker: keep the base name only
      map.set(n.split('/').pop() ?? n, f);
    }
  }
  return {
    description,
    async open(name) {
      const v = map.get(name);
      if (v === undefined) return undefined;
      return v instanceof Blob ? blobSource(v, name) : bytesSource(v, name);
    },
    async exists(name) {
      return map.has(name);
    },
  };
}

/** Options of URL sources: the fetch, request init, progress, and the limits of every request. */
export interface UrlSourceOptions extends FetchLimits {
  /** The fetch to use (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Extra request init (headers such as Authorization for private repos; credentials policy). */
  init?: RequestInit;
  /** Called as bytes arrive for downloads without Range support. */
  onBytes?: (loaded: number, total: number) => void;
}

/** Options of one `ByteSourceFolder.open`. */
export interface OpenOptions {
  /** The largest file accepted (a side file: 64 MiB); enforced while the bytes stream. */
  maxBytes?: number;
}

function ioError(url: string, message: string, cause?: unknown, status?: number): CheckpointError {
  return new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${url}: ${message}`, {
    details: { url, ...(status === undefined ? {} : { status }) },
    cause,
  });
}

/**
 * Opens a URL as a ByteSource. It first asks for `bytes=0-0`: a `206` with `Content-Range: bytes
 * 0-0/SIZE` means every later read is its own Range request (only the bytes needed travel, to the
 * URL the first request was redirected to); a `200` means the server ignores Range, and the whole
 * body is downloaded once into memory (with `onBytes` progress) — at most `maxBytes`, checked
 * while it streams. A 404 gives `undefined`; an HTML page, a redirect to another origin, a stall
 * or an oversized body typed errors (see {@link fetchBounded}); any other failure CHECKPOINT_IO.
 */
export async function openUrlSource(
  url: string,
  options: UrlSourceOptions = {},
  signal?: AbortSignal,
): Promise<ByteSource | undefined> {
  const name = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? url);
  const request = (target: string, headers: Record<string, string>, sig: AbortSignal | undefined) => {
    throwIfAborted(sig);
    return fetchBounded(
      target,
      {
        ...options.init,
        headers: { ...(options.init?.headers as Record<string, string> | undefined), ...headers },
        refuseHtml: true,
      },
      { ...options, ...(sig ? { signal: sig } : {}) },
    );
  };
  const first = await request(url, { Range: 'bytes=0-0' }, signal);
  const res = first.response;
  if (res.status === 404 || res.status === 410) {
    await first.cancel();
    return undefined;
  }
  if (res.status === 206) {
    const m = /^bytes\s+0-0\/(\d+)$/i.exec(res.headers.get('content-range') ?? '');
    await first.cancel();
    if (!m) throw ioError(url, `206 response without a usable Content-Range (${res.headers.get('content-range')})`);
    const size = Number(m[1]);
    if (!Number.isSafeInteger(size)) throw ioError(url, `file size ${m[1]} is not a safe integer`);
    const target = first.url; // later reads skip the redirect
    return {
      name,
      size,
      async read(offset, length, sig) {
        checkRange({ name, size }, offset, length);
        if (length === 0) return new Uint8Array(0);
        const r = await request(target, { Range: `bytes=${offset}-${offset + length - 1}` }, sig ?? signal);
        if (r.response.status !== 206) {
          await r.cancel();
          throw ioError(
            url,
            `expected 206 for a Range request, got ${r.response.status}`,
            undefined,
            r.response.status,
          );
        }
        return r.readBody({ expected: length });
      },
      async close() {},
    };
  }
  if (res.status === 200) {
    const len = res.headers.get('content-length');
    const expected = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
    const body = await first.readBody({
      ...(expected === undefined ? {} : { expected }),
      onBytes: (n) => options.onBytes?.(n, expected ?? n),
    });
    return bytesSource(body, name);
  }
  await first.cancel();
  throw ioError(url, `HTTP ${res.status} ${res.statusText}`, undefined, res.status);
}

/** A folder at a URL prefix (`https://host/org/model/resolve/main/`); names are appended after validation. */
export function urlFolder(base: string, options: UrlSourceOptions = {}): ByteSourceFolder {
  const prefix = base.endsWith('/') ? base : `${base}/`;
  return {
    description: prefix,
    async open(name, signal, openOptions) {
      const cap = openOptions?.maxBytes;
      const o = cap === undefined ? options : { ...options, maxBytes: Math.min(cap, options.maxBytes ?? cap) };
      return openUrlSource(new URL(name, prefix).href, o, signal);
    },
    async exists(name, signal) {
      const url = new URL(name, prefix).href;
      throwIfAborted(signal);
      const r = await fetchBounded(
        url,
        { ...options.init, method: 'HEAD' },
        { ...options, ...(signal ? { signal } : {}) },
      );
      await r.cancel();
      const res = r.response;
      if (res.ok) return true;
      if (res.status === 404 || res.status === 410) return false;
      throw ioError(url, `HTTP ${res.status} ${res.statusText}`, undefined, res.status);
    },
  };
}

/** Reads a whole (small) source as UTF-8 text. */
export async function readText(source: ByteSource, limit: number, signal?: AbortSignal): Promise<string> {
  if (source.size > limit) {
    throw new CheckpointError(
      CheckpointErrorCode.INDEX_INVALID,
      `${source.name} is ${source.size} bytes; index files larger than ${limit} bytes are refused`,
    );
  }
  const bytes = await source.read(0, source.size, signal);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new CheckpointError(CheckpointErrorCode.INDEX_INVALID, `${source.name} is not valid UTF-8`, { cause: e });
  }
}
