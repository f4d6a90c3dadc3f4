/**
 * Random-access byte sources for checkpoint files: in-memory bytes, a Blob/File, a URL (HTTP Range
 * requests where the server honours them) and, in `node.ts`, a file handle with positional reads.
 * Nothing here imports Node modules, so browsers can load it.
 */
import { CheckpointError, CheckpointErrorCode } from './errors.js';

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
  /** Opens `name` (already validated as a plain file name); undefined if it does not exist. */
  open(name: string, signal?: AbortSignal): Promise<ByteSource | undefined>;
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

/** Options of URL sources. */
export interface UrlSourceOptions {
  /** The fetch to use (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Extra request init (headers such as Authorization for private repos; credentials policy). */
  init?: RequestInit;
  /** Called as bytes arrive for downloads without Range support. */
  onBytes?: (loaded: number, total: number) => void;
}

function ioError(url: string, message: string, cause?: unknown, status?: number): CheckpointError {
  return new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${url}: ${message}`, {
    details: { url, ...(status === undefined ? {} : { status }) },
    cause,
  });
}

async function readBody(
  res: Response,
  url: string,
  expected: number | undefined,
  signal?: AbortSignal,
  onBytes?: (n: number) => void,
): Promise<Uint8Array> {
  if (!res.body) {
    const buf = new Uint8Array(await res.arrayBuffer());
    onBytes?.(buf.byteLength);
    return buf;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  let out: Uint8Array | undefined = expected !== undefined ? new Uint8Array(expected) : undefined;
  for (;;) {
    if (signal?.aborted) {
      await reader.cancel().catch(() => {});
      throwIfAborted(signal);
    }
    const { done, value } = await reader.read();
    if (done) break;
    if (out) {
      if (loaded + value.byteLength > out.byteLength) {
        await reader.cancel().catch(() => {});
        throw ioError(url, `server sent more than the ${out.byteLength} bytes it announced`);
      }
      out.set(value, loaded);
    } else {
      chunks.push(value);
    }
    loaded += value.byteLength;
    onBytes?.(loaded);
  }
  if (out) {
    if (loaded !== out.byteLength) throw ioError(url, `truncated response: ${loaded} of ${out.byteLength} bytes`);
    return out;
  }
  out = new Uint8Array(loaded);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

/**
 * Opens a URL as a ByteSource. It first asks for `bytes=0-0`: a `206` with `Content-Range: bytes
 * 0-0/SIZE` means every later read is its own Range request (only the bytes needed travel); a `200`
 * means the server ignores Range, and the whole body is downloaded once into memory (with
 * `onBytes` progress). A 404 gives `undefined`; any other failure a CHECKPOINT_IO error.
 */
export async function openUrlSource(
  url: string,
  options: UrlSourceOptions = {},
  signal?: AbortSignal,
): Promise<ByteSource | undefined> {
  const f = options.fetch ?? globalThis.fetch;
  if (typeof f !== 'function') throw ioError(url, 'no fetch implementation is available');
  const name = decodeURIComponent(new URL(url).pathname.split('/').pop() ?? url);
  const request = async (headers: Record<string, string>) => {
    throwIfAborted(signal);
    const init: RequestInit = {
      ...options.init,
      headers: { ...(options.init?.headers as Record<string, string> | undefined), ...headers },
    };
    if (signal) init.signal = signal;
    try {
      return await f(url, init);
    } catch (e) {
      throwIfAborted(signal);
      throw ioError(url, `fetch failed: ${String(e)}`, e);
    }
  };
  const first = await request({ Range: 'bytes=0-0' });
  if (first.status === 404 || first.status === 410) {
    await first.body?.cancel().catch(() => {});
    return undefined;
  }
  if (first.status === 206) {
    const m = /^bytes\s+0-0\/(\d+)$/i.exec(first.headers.get('content-range') ?? '');
    await first.body?.cancel().catch(() => {});
    if (!m) throw ioError(url, `206 response without a usable Content-Range (${first.headers.get('content-range')})`);
    const size = Number(m[1]);
    if (!Number.isSafeInteger(size)) throw ioError(url, `file size ${m[1]} is not a safe integer`);
    return {
      name,
      size,
      async read(offset, length, sig) {
        checkRange({ name, size }, offset, length);
        if (length === 0) return new Uint8Array(0);
        const res = await (async () => {
          throwIfAborted(sig);
          const init: RequestInit = {
            ...options.init,
            headers: {
              ...(options.init?.headers as Record<string, string> | undefined),
              Range: `bytes=${offset}-${offset + length - 1}`,
            },
          };
          const s = sig ?? signal;
          if (s) init.signal = s;
          try {
            return await f(url, init);
          } catch (e) {
            throwIfAborted(s);
            throw ioError(url, `fetch failed: ${String(e)}`, e);
          }
        })();
        if (res.status !== 206) {
          await res.body?.cancel().catch(() => {});
          throw ioError(url, `expected 206 for a Range request, got ${res.status}`, undefined, res.status);
        }
        return readBody(res, url, length, sig ?? signal);
      },
      async close() {},
    };
  }
  if (first.status === 200) {
    const len = first.headers.get('content-length');
    const expected = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
    const body = await readBody(first, url, expected, signal, (n) => options.onBytes?.(n, expected ?? n));
    return bytesSource(body, name);
  }
  await first.body?.cancel().catch(() => {});
  throw ioError(url, `HTTP ${first.status} ${first.statusText}`, undefined, first.status);
}

/** A folder at a URL prefix (`https://host/org/model/resolve/main/`); names are appended after validation. */
export function urlFolder(base: string, options: UrlSourceOptions = {}): ByteSourceFolder {
  const prefix = base.endsWith('/') ? base : `${base}/`;
  return {
    description: prefix,
    async open(name, signal) {
      return openUrlSource(new URL(name, prefix).href, options, signal);
    },
    async exists(name, signal) {
      const f = options.fetch ?? globalThis.fetch;
      const url = new URL(name, prefix).href;
      throwIfAborted(signal);
      const init: RequestInit = { ...options.init, method: 'HEAD' };
      if (signal) init.signal = signal;
      let res: Response;
      try {
        res = await f(url, init);
      } catch (e) {
        throwIfAborted(signal);
        throw ioError(url, `fetch failed: ${String(e)}`, e);
      }
      await res.body?.cancel().catch(() => {});
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
