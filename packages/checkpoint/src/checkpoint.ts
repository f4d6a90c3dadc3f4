/**
 * The unified checkpoint reader: one API over a single or sharded safetensors checkpoint and a
 * single or sharded PyTorch `.bin` checkpoint, from a Node path, a URL, Blobs/Files or bytes. Opening
 * reads and validates every header (and the index) first, so keys and shapes are known before any
 * tensor is read; tensors are then streamed one by one (peak memory near the largest tensor).
 */
import type * as tf from '@tensorflow/tfjs-core';

import { CheckpointError, CheckpointErrorCode } from './errors.js';
import { DTYPE_SIZE, alignedCopy, decodeToArray, type SafetensorsDType } from './dtypes.js';
import { arrayToTensor, parseSafetensorsHeader, readHeaderLength, type SafetensorsHeader } from './safetensors.js';
import {
  MAX_INDEX_BYTES,
  PYTORCH_INDEX_NAME,
  PYTORCH_SINGLE_NAME,
  SAFETENSORS_INDEX_NAME,
  SAFETENSORS_SINGLE_NAME,
  parseShardIndex,
  type ShardIndex,
} from './sharded.js';
import {
  blobFolder,
  blobSource,
  bytesSource,
  readText,
  throwIfAborted,
  urlFolder,
  type ByteSource,
  type ByteSourceFolder,
  type UrlSourceOptions,
} from './sources.js';
import { TorchBinFile } from './torch-bin.js';
import type { TorchTensorRef } from './pickle/index.js';

/** Progress events in the shape transformers.js users know (`progress_callback`). */
export type CheckpointProgress =
  | { status: 'initiate'; name: string; file: string }
  | { status: 'download'; name: string; file: string }
  | { status: 'progress'; name: string; file: string; loaded: number; total: number; progress: number }
  | { status: 'done'; name: string; file: string }
  | { status: 'ready'; name: string };

export type CheckpointFormat = 'safetensors' | 'pytorch';

/** One tensor of a checkpoint: where it is and what it is. */
export interface CheckpointEntry {
  key: string;
  /** Stored dtype (a `.bin` storage type maps to the same names: HalfStorage → F16, …). */
  dtype: SafetensorsDType;
  shape: number[];
  /** Bytes of the stored values (numel × dtype size). */
  byteLength: number;
  /** The file (shard) holding it. */
  file: string;
}

/**
 * Anything `openCheckpoint` accepts: a Node path (file or folder), an http(s) URL (file or folder
 * ending in `/`), a `URL`, a `Blob`/`File`, bytes, several `File`s (a picked folder) or a Map of
 * name → Blob/bytes, or your own ByteSource / ByteSourceFolder.
 */
export type CheckpointSource =
  | string
  | URL
  | Blob
  | ArrayBuffer
  | Uint8Array
  | Iterable<File>
  | Map<string, Blob | ArrayBuffer | Uint8Array>
  | ByteSource
  | ByteSourceFolder;

export interface OpenCheckpointOptions extends UrlSourceOptions {
  /** Receives `initiate`, `download`, `progress`, `done` per file (and `ready` from loadCheckpointInto). */
  onProgress?: (event: CheckpointProgress) => void;
  /** Aborts opening and streaming with a CheckpointError('ABORTED'). */
  signal?: AbortSignal;
  /** Check an index's `metadata.total_size` against the tensors (default true). */
  checkTotalSize?: boolean;
}

export interface ReadTensorsOptions {
  /** Only these keys (default: every tensor). */
  keys?: Iterable<string>;
  signal?: AbortSignal;
}

/** Streaming reads are grouped into reads of at most this many bytes (a larger tensor is read alone). */
const COALESCE_BYTES = 16 * 1024 * 1024;

interface Shard {
  format: CheckpointFormat;
  file: string;
  source: ByteSource;
  entries: CheckpointEntry[];
  /** Contiguous little-endian bytes for the given entries, in order, reading in coalesced groups. */
  readRaw(entries: CheckpointEntry[], signal?: AbortSignal): AsyncGenerator<[CheckpointEntry, Uint8Array]>;
  /** One tensor's bytes in pieces of at most `chunkBytes` (in order; they join to readRaw's bytes). */
  readChunks(entry: CheckpointEntry, chunkBytes: number, signal?: AbortSignal): AsyncGenerator<Uint8Array>;
}

/** A shard asked for a tensor it does not hold. */
function notInShard(file: string, key: string): CheckpointError {
  return new CheckpointError(
    CheckpointErrorCode.SAFETENSORS_TENSOR_NOT_FOUND,
    `${file} has no tensor ${JSON.stringify(key)}`,
    { details: { file, key } },
  );
}

async function openSafetensorsShard(source: ByteSource, signal?: AbortSignal): Promise<Shard> {
  const first = await source.read(0, Math.min(8, source.size), signal);
  const n = readHeaderLength(first, source.size);
  const header: SafetensorsHeader = parseSafetensorsHeader(await source.read(8, n, signal), source.size);
  const entries: CheckpointEntry[] = [...header.tensors.entries()]
    .sort((a, b) => a[1].begin - b[1].begin)
    .map(([key, e]) => ({ key, dtype: e.dtype, shape: e.shape, byteLength: e.byteLength, file: source.name }));
  return {
    format: 'safetensors',
    file: source.name,
    source,
    entries,
    async *readRaw(wanted, sig) {
      const located = [...wanted].map((entry) => {
        const t = header.tensors.get(entry.key);
        if (!t) throw notInShard(source.name, entry.key);
        return { entry, begin: t.begin, end: t.end };
      });
      located.sort((a, b) => a.begin - b.begin);
      // group tensors that follow each other in the file, up to COALESCE_BYTES
      const groups: { start: number; end: number; items: typeof located }[] = [];
      let group: (typeof groups)[number] | undefined;
      for (const l of located) {
        if (group && l.begin === group.end && l.end - group.start <= COALESCE_BYTES) {
          group.items.push(l);
          group.end = l.end;
        } else {
          group = { start: l.begin, end: l.end, items: [l] };
          groups.push(group);
        }
      }
      for (const { start, end, items } of groups) {
        throwIfAborted(sig);
        const block = await source.read(header.dataOffset + start, end - start, sig);
        for (const l of items) {
          throwIfAborted(sig);
          yield [l.entry, block.subarray(l.begin - start, l.end - start)];
        }
      }
    },
    async *readChunks(entry, chunkBytes, sig) {
      const e = header.tensors.get(entry.key);
      if (!e) throw notInShard(source.name, entry.key);
      for (let o = e.begin; o < e.end || (o === e.begin && e.end === e.begin); o += chunkBytes) {
        throwIfAborted(sig);
        if (e.end === e.begin) {
          yield new Uint8Array(0);
          return;
        }
        yield await source.read(header.dataOffset + o, Math.min(chunkBytes, e.end - o), sig);
      }
    },
  };
}

async function openTorchShard(source: ByteSource, signal?: AbortSignal): Promise<Shard> {
  const bin = await TorchBinFile.open(source, signal);
  const refs = new Map<string, TorchTensorRef>();
  const entries: CheckpointEntry[] = [];
  for (const t of bin.tensors) {
    refs.set(t.key, t);
    let n = 1;
    for (const d of t.shape) n *= d;
    entries.push({
      key: t.key,
      dtype: t.dtype,
      shape: [...t.shape],
      byteLength: n * DTYPE_SIZE[t.dtype],
      file: source.name,
    });
  }
  return {
    format: 'pytorch',
    file: source.name,
    source,
    entries,
    async *readRaw(wanted, sig) {
      for (const e of wanted) {
        throwIfAborted(sig);
        const ref = refs.get(e.key);
        if (!ref) throw notInShard(source.name, e.key);
        yield [e, await bin.readContiguous(ref, sig)];
      }
    },
    readChunks(entry, chunkBytes, sig) {
      const ref = refs.get(entry.key);
      if (!ref) throw notInShard(source.name, entry.key);
      return bin.readContiguousChunks(ref, chunkBytes, sig);
    },
  };
}

async function openShard(source: ByteSource, signal?: AbortSignal): Promise<Shard> {
  const magic = source.size >= 4 ? await source.read(0, 4, signal) : new Uint8Array(0);
  const isZip = magic[0] === 0x50 && magic[1] === 0x4b && magic[2] === 0x03 && magic[3] === 0x04;
  const isLegacyTorch = magic[0] === 0x80 && magic[1] !== undefined && magic[1] <= 5 && source.name.endsWith('.bin');
  if (isZip || isLegacyTorch) return openTorchShard(source, signal);
  return openSafetensorsShard(source, signal);
}

/** A checkpoint opened by `openCheckpoint`: every key, dtype and shape is known; tensors stream on demand. */
export class Checkpoint {
  private readonly byKey = new Map<string, { entry: CheckpointEntry; shard: Shard }>();
  private closed = false;

  /** @internal use openCheckpoint */
  constructor(
    /** A name for the checkpoint (folder, URL or file) used in progress events. */
    readonly name: string,
    readonly format: CheckpointFormat,
    private readonly shards: Shard[],
    /** The index, for sharded checkpoints. */
    readonly index: ShardIndex | undefined,
    private readonly onProgress?: (event: CheckpointProgress) => void,
  ) {
    for (const s of shards) for (const e of s.entries) this.byKey.set(e.key, { entry: e, shard: s });
  }

  /** Shard file names in reading order. */
  get files(): string[] {
    return this.shards.map((s) => s.file);
  }

  /** Every tensor (shard order, then file order). */
  entries(): CheckpointEntry[] {
    return this.shards.flatMap((s) => s.entries.map((e) => ({ ...e, shape: [...e.shape] })));
  }

  /** `[key, shape]` pairs for `Module.checkStateDict`. */
  shapes(): [string, number[]][] {
    return this.entries().map((e) => [e.key, e.shape]);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  info(key: string): CheckpointEntry {
    const hit = this.byKey.get(key);
    if (!hit) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_TENSOR_NOT_FOUND,
        `checkpoint ${this.name} has no tensor ${JSON.stringify(key)}`,
        {
          details: { key },
        },
      );
    }
    return { ...hit.entry, shape: [...hit.entry.shape] };
  }

  /** Total bytes of stored tensor values. */
  get totalBytes(): number {
    let n = 0;
    for (const { entry } of this.byKey.values()) n += entry.byteLength;
    return n;
  }

  /**
   * Streams each tensor's stored bytes (contiguous, little-endian, its own dtype: bit-exact), shard
   * by shard. The bytes may be views into a read buffer: copy them to keep them past the next step.
   */
  async *raw(options: ReadTensorsOptions = {}): AsyncGenerator<[CheckpointEntry, Uint8Array]> {
    this.assertOpen();
    const only = options.keys ? new Set(options.keys) : undefined;
    if (only) for (const k of only) this.info(k);
    for (const shard of this.shards) {
      const wanted = only ? shard.entries.filter((e) => only.has(e.key)) : shard.entries;
      if (wanted.length === 0) continue;
      const total = wanted.reduce((a, e) => a + e.byteLength, 0);
      let loaded = 0;
      for await (const [e, bytes] of shard.readRaw(wanted, options.signal)) {
        loaded += e.byteLength;
        this.onProgress?.({
          status: 'progress',
          name: this.name,
          file: shard.file,
          loaded,
          total,
          progress: total ? (100 * loaded) / total : 100,
        });
        yield [{ ...e, shape: [...e.shape] }, bytes];
      }
      this.onProgress?.({ status: 'done', name: this.name, file: shard.file });
    }
  }

  /**
   * Streams every tensor's raw bytes in pieces of at most `chunkBytes` (default 8 MiB): yields
   * `[entry, piece, last]`, the pieces of one tensor in order. Memory stays near one piece however
   * large a tensor is (a strided or deflated `.bin` tensor comes whole). For copying tensors to
   * a file (conversion); progress events as {@link raw}.
   */
  async *rawChunks(
    options: ReadTensorsOptions & { chunkBytes?: number } = {},
  ): AsyncGenerator<[CheckpointEntry, Uint8Array, boolean]> {
    this.assertOpen();
    const chunkBytes = options.chunkBytes ?? 8 * 1024 * 1024;
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1)
      throw new CheckpointError(
        CheckpointErrorCode.CHECKPOINT_IO,
        `chunkBytes must be a positive integer, got ${chunkBytes}`,
      );
    const only = options.keys ? new Set(options.keys) : undefined;
    if (only) for (const k of only) this.info(k);
    for (const shard of this.shards) {
      const wanted = only ? shard.entries.filter((e) => only.has(e.key)) : shard.entries;
      if (wanted.length === 0) continue;
      const total = wanted.reduce((a, e) => a + e.byteLength, 0);
      let loaded = 0;
      for (const e of wanted) {
        const entry = { ...e, shape: [...e.shape] };
        let got = 0;
        for await (const piece of shard.readChunks(e, chunkBytes, options.signal)) {
          got += piece.byteLength;
          if (got === e.byteLength) {
            loaded += e.byteLength;
            this.onProgress?.({
              status: 'progress',
              name: this.name,
              file: shard.file,
              loaded,
              total,
              progress: total ? (100 * loaded) / total : 100,
            });
          }
          yield [entry, piece, got === e.byteLength];
        }
      }
      this.onProgress?.({ status: 'done', name: this.name, file: shard.file });
    }
  }

  /** Streams decoded arrays: Float32Array for float dtypes (F16/BF16/F64 widened), Int32Array otherwise. */
  async *arrays(
    options: ReadTensorsOptions = {},
  ): AsyncGenerator<[string, Float32Array | Int32Array, CheckpointEntry]> {
    for await (const [e, bytes] of this.raw(options)) yield [e.key, decodeToArray(e.dtype, bytes, e.key), e];
  }

  /** Streams `[key, tf.Tensor]` (float32 or int32). Each tensor belongs to the caller, who disposes it. */
  async *tensors(options: ReadTensorsOptions = {}): AsyncGenerator<[string, tf.Tensor]> {
    for await (const [key, values, e] of this.arrays(options)) yield [key, arrayToTensor(values, e.shape)];
  }

  /** Reads one tensor's stored bytes (a copy). */
  async readRaw(key: string, signal?: AbortSignal): Promise<Uint8Array> {
    this.assertOpen();
    const e = this.info(key); // throws SAFETENSORS_TENSOR_NOT_FOUND for a key the checkpoint lacks
    const shard = this.byKey.get(key)?.shard;
    if (shard) for await (const [, bytes] of shard.readRaw([e], signal)) return new Uint8Array(alignedCopy(bytes));
    throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${key}: no data was read`);
  }

  /** Reads one tensor as float32/int32 values. */
  async array(key: string, signal?: AbortSignal): Promise<Float32Array | Int32Array> {
    const e = this.info(key);
    return decodeToArray(e.dtype, await this.readRaw(key, signal), key);
  }

  /** Reads one tensor as a tf.Tensor the caller owns. */
  async tensor(key: string, signal?: AbortSignal): Promise<tf.Tensor> {
    return arrayToTensor(await this.array(key, signal), this.info(key).shape);
  }

  /** Closes every file handle. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.shards.map((s) => s.source.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `checkpoint ${this.name} is closed`);
  }
}

function isByteSource(v: unknown): v is ByteSource {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as ByteSource).read === 'function' &&
    typeof (v as ByteSource).size === 'number'
  );
}
function isFolder(v: unknown): v is ByteSourceFolder {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as ByteSourceFolder).open === 'function' &&
    typeof (v as ByteSourceFolder).exists === 'function'
  );
}
const isUrl = (s: string) => /^https?:\/\//i.test(s);

interface Resolved {
  name: string;
  folder?: ByteSourceFolder;
  /** A file inside the folder, when the source named one. */
  file?: string;
  /** A single file without a folder (Blob, bytes, ByteSource). */
  single?: ByteSource;
}

async function resolveSource(source: CheckpointSource, options: OpenCheckpointOptions): Promise<Resolved> {
  if (typeof source === 'string' || source instanceof URL) {
    const s = source instanceof URL ? source.href : source;
    if (isUrl(s)) {
      const u = new URL(s);
      if (u.pathname.endsWith('/')) return { name: s, folder: urlFolder(s, options) };
      const last = decodeURIComponent(u.pathname.split('/').pop() ?? '');
      if (/\.(safetensors|bin|json)$/.test(last)) {
        return { name: s, folder: urlFolder(new URL('.', u).href, options), file: last };
      }
      return { name: s, folder: urlFolder(`${s}/`, options) };
    }
    if (source instanceof URL && source.protocol !== 'file:') {
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_NOT_FOUND, `unsupported URL scheme ${source.protocol}`);
    }
    const node = await loadNode();
    return node.resolvePath(source instanceof URL ? node.fileURLToPathSafe(source) : s);
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const src = blobSource(source);
    return { name: src.name, single: src };
  }
  if (source instanceof ArrayBuffer || source instanceof Uint8Array) {
    return { name: 'memory', single: bytesSource(source, 'memory') };
  }
  if (isByteSource(source)) return { name: source.name, single: source };
  if (isFolder(source)) return { name: source.description, folder: source };
  if (source instanceof Map || typeof (source as Iterable<File>)[Symbol.iterator] === 'function') {
    const folder = blobFolder(source as Iterable<File>);
    return { name: folder.description, folder };
  }
  throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_NOT_FOUND, 'openCheckpoint: unsupported source type');
}

/**
 * The folder a checkpoint source names (a directory path, a URL prefix, a set of Files or a
 * ByteSourceFolder), for reading the files beside the weights (config.json, tokenizer.model, …).
 * Sources that are a single file (a Blob, bytes) have no folder: a CHECKPOINT_NOT_FOUND error.
 */
export async function openCheckpointFolder(
  source: CheckpointSource,
  options: OpenCheckpointOptions = {},
): Promise<ByteSourceFolder> {
  const r = await resolveSource(source, options);
  if (!r.folder) {
    throw new CheckpointError(
      CheckpointErrorCode.CHECKPOINT_NOT_FOUND,
      `${r.name} is a single file; a model needs a folder (a directory, a URL prefix or a set of files) with config.json beside the weights`,
    );
  }
  return r.folder;
}

/** Loads the Node-only module (file handles, folders); never reached in browsers. */
export async function loadNode(): Promise<typeof import('./node.js')> {
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  if (!isNode) {
    throw new CheckpointError(
      CheckpointErrorCode.NODE_ONLY,
      'file paths need Node.js; in a browser pass a URL, File, Blob or ArrayBuffer',
    );
  }
  return import('./node.js');
}

const CANDIDATES = [SAFETENSORS_INDEX_NAME, SAFETENSORS_SINGLE_NAME, PYTORCH_INDEX_NAME, PYTORCH_SINGLE_NAME];

/**
 * Opens a checkpoint: a folder (or URL prefix) holding `model.safetensors.index.json`,
 * `model.safetensors`, `pytorch_model.bin.index.json` or `pytorch_model.bin` (tried in that order),
 * a single file or index file, a Blob/File, bytes or several Files. Every header (and the index
 * against its shards, B15/B16) is validated before this resolves; no tensor data is read yet.
 */
export async function openCheckpoint(
  source: CheckpointSource,
  options: OpenCheckpointOptions = {},
): Promise<Checkpoint> {
  const { signal, onProgress } = options;
  throwIfAborted(signal);
  const r = await resolveSource(source, options);
  const opened: ByteSource[] = [];
  const openShardFile = async (folder: ByteSourceFolder, name: string): Promise<ByteSource | undefined> => {
    onProgress?.({ status: 'initiate', name: r.name, file: name });
    if (folder.description.startsWith('http')) onProgress?.({ status: 'download', name: r.name, file: name });
    const s = await folder.open(name, signal);
    if (s) opened.push(s);
    return s;
  };
  try {
    if (r.single) {
      onProgress?.({ status: 'initiate', name: r.name, file: r.single.name });
      opened.push(r.single);
      const shard = await openShard(r.single, signal);
      return new Checkpoint(r.name, shard.format, [shard], undefined, onProgress);
    }
    const folder = r.folder;
    if (!folder) {
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_NOT_FOUND, `no checkpoint folder or file at ${r.name}`);
    }
    let file = r.file;
    if (file === undefined) {
      for (const c of CANDIDATES) {
        if (await folder.exists(c, signal)) {
          file = c;
          break;
        }
      }
      if (file === undefined) {
        throw new CheckpointError(
          CheckpointErrorCode.CHECKPOINT_NOT_FOUND,
          `no checkpoint in ${folder.description}: none of ${CANDIDATES.join(', ')} exists`,
          { details: { folder: folder.description, tried: CANDIDATES } },
        );
      }
    }
    if (file.endsWith('.index.json')) {
      const idxSrc = await folder.open(file, signal);
      if (!idxSrc)
        throw new CheckpointError(
          CheckpointErrorCode.CHECKPOINT_NOT_FOUND,
          `${file} not found in ${folder.description}`,
        );
      const text = await readText(idxSrc, MAX_INDEX_BYTES, signal).finally(() => idxSrc.close());
      const index = parseShardIndex(text, file); // validates every shard name before any shard is opened
      const shards: Shard[] = [];
      for (const name of index.shards) {
        const s = await openShardFile(folder, name);
        if (!s) {
          const example = [...index.weightMap].find(([, v]) => v === name)?.[0] ?? '(no tensor)';
          throw new CheckpointError(
            CheckpointErrorCode.INDEX_SHARD_MISSING,
            `${file}: shard ${name} (holding ${example}, …) is not in ${folder.description}`,
            {
              details: { index: file, shard: name, key: example },
            },
          );
        }
        shards.push(await openShard(s, signal));
      }
      checkIndexAgainstShards(index, shards, options.checkTotalSize ?? true);
      const formats = new Set(shards.map((x) => x.format));
      const [format] = formats;
      if (formats.size !== 1 || !format) {
        throw new CheckpointError(
          CheckpointErrorCode.INDEX_INVALID,
          formats.size > 1 ? `${file}: shards mix safetensors and .bin files` : `${file}: lists no shards`,
        );
      }
      return new Checkpoint(r.name, format, shards, index, onProgress);
    }
    const s = await openShardFile(folder, file);
    if (!s)
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_NOT_FOUND, `${file} not found in ${folder.description}`);
    const shard = await openShard(s, signal);
    return new Checkpoint(r.name, shard.format, [shard], undefined, onProgress);
  } catch (e) {
    await Promise.all(opened.map((s) => s.close().catch(() => {})));
    throw e;
  }
}

/** B16: every indexed tensor is in its shard, no tensor is in two shards or unlisted, total_size agrees. */
export function checkIndexAgainstShards(
  index: ShardIndex,
  shards: readonly Pick<Shard, 'file' | 'entries'>[],
  checkTotalSize = true,
): void {
  const seen = new Map<string, string>();
  let total = 0;
  for (const shard of shards) {
    for (const e of shard.entries) {
      const prev = seen.get(e.key);
      if (prev !== undefined) {
        throw new CheckpointError(
          CheckpointErrorCode.INDEX_TENSOR_DUPLICATED,
          `${e.key} is in two shards: ${prev} and ${shard.file}`,
          {
            details: { key: e.key, shards: [prev, shard.file] },
          },
        );
      }
      seen.set(e.key, shard.file);
      const assigned = index.weightMap.get(e.key);
      if (assigned === undefined) {
        throw new CheckpointError(
          CheckpointErrorCode.INDEX_TENSOR_UNLISTED,
          `${shard.file} holds ${e.key}, which ${index.name} does not list`,
          {
            details: { key: e.key, shard: shard.file },
          },
        );
      }
      if (assigned !== shard.file) {
        throw new CheckpointError(
          CheckpointErrorCode.INDEX_TENSOR_DUPLICATED,
          `${e.key} is in ${shard.file}, but ${index.name} assigns it to ${assigned}`,
          { details: { key: e.key, shard: shard.file, assigned } },
        );
      }
      total += e.byteLength;
    }
  }
  for (const [key, shard] of index.weightMap) {
    if (!seen.has(key)) {
      throw new CheckpointError(
        CheckpointErrorCode.INDEX_TENSOR_MISSING,
        `${index.name} lists ${key} in ${shard}, but ${shard} does not hold it`,
        {
          details: { key, shard },
        },
      );
    }
  }
  if (checkTotalSize && index.totalSize !== undefined && index.totalSize !== total) {
    throw new CheckpointError(
      CheckpointErrorCode.INDEX_TOTAL_SIZE_MISMATCH,
      `${index.name}: metadata.total_size is ${index.totalSize}, the shards' tensors total ${total} bytes`,
      { details: { expected: index.totalSize, actual: total } },
    );
  }
}
