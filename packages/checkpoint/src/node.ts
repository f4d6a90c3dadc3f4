/**
 * Node-only checkpoint I/O: file sources with positional reads (a tensor is read from its offset,
 * the file is never loaded whole), folders, the streaming atomic safetensors file writer and the
 * `.bin` → safetensors conversion. Loaded only through dynamic `import()` (see `loadNode` in
 * checkpoint.ts and the wrappers in index.ts), so browser bundles never evaluate `node:` imports.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { copyFile, open, readdir, realpath, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { checkDestination, processAlive, writeFolderAtomic } from './atomic-folder.js';
import { CheckpointError, CheckpointErrorCode } from './errors.js';
import { openCheckpoint, type CheckpointProgress } from './checkpoint.js';
import { compareShardNames, SAFETENSORS_INDEX_NAME } from './sharded.js';
import { checkRange, throwIfAborted, type ByteSource, type ByteSourceFolder } from './sources.js';
import type { ConvertOptions, ConvertResult } from './node-api.js';
import { resolveTensorToWrite, safetensorsLayout, type SafetensorsTensorSpec, type TensorToWrite } from './writer.js';

const ioError = (path: string, what: string, e: unknown) =>
  new CheckpointError(
    CheckpointErrorCode.CHECKPOINT_IO,
    `${path}: ${what} failed: ${(e as Error)?.message ?? String(e)}`,
    {
      details: { path, code: (e as NodeJS.ErrnoException)?.code },
      cause: e,
    },
  );

/** Largest single read handed to the OS (reads of larger tensors loop). */
const MAX_READ = 1 << 30;

/** O_NONBLOCK where the platform has it: opening a FIFO for reading must not wait for a writer. */
const OPEN_READ_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0);

function kindOf(st: import('node:fs').Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isDirectory()) return 'a folder';
  return 'not a plain file';
}

/**
 * Opens a regular file for positional reads; undefined if it does not exist. Anything else (a
 * FIFO, a device, a socket, a folder) is a CHECKPOINT_IO error; the open never blocks on a FIFO.
 */
export async function openFileSource(path: string, name = basename(path)): Promise<ByteSource | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, OPEN_READ_FLAGS);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if ((e as NodeJS.ErrnoException).code === 'EISDIR') {
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${path} is not a regular file (a folder)`, {
        details: { path },
      });
    }
    throw ioError(path, 'open', e);
  }
  let size: number;
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      await handle.close();
      throw new CheckpointError(
        CheckpointErrorCode.CHECKPOINT_IO,
        `${path} is not a regular file (${kindOf(st)}); a checkpoint file must be a plain file`,
        { details: { path } },
      );
    }
    size = st.size;
  } catch (e) {
    await handle.close().catch(() => {});
    if (e instanceof CheckpointError) throw e;
    throw ioError(path, 'stat', e);
  }
  let closed = false;
  return {
    name,
    size,
    async read(offset, length, signal) {
      throwIfAborted(signal);
      if (closed) throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${path}: read after close`);
      checkRange({ name, size }, offset, length);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        let n: number;
        try {
          ({ bytesRead: n } = await handle.read(out, done, Math.min(length - done, MAX_READ), offset + done));
        } catch (e) {
          throw ioError(path, `read of ${length} bytes at ${offset}`, e);
        }
        if (n === 0) {
          throw new CheckpointError(
            CheckpointErrorCode.CHECKPOINT_IO,
            `${path}: short read, ${done} of ${length} bytes at ${offset} (file changed?)`,
          );
        }
        done += n;
      }
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
      await handle.close().catch(() => {});
    },
  };
}

/** True when `p` is `root` or inside it. */
function within(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Where files of the folder `realRoot` may resolve to: the folder itself, or — for a Hugging Face
 * cache snapshot (`…/models--org--name/snapshots/<revision>`, whose files are symlinks to
 * `../../blobs/<hash>`) — the cached repository `…/models--org--name`.
 */
function confinementRoot(realRoot: string): string {
  const parts = realRoot.split(sep);
  const n = parts.length;
  if (n >= 3 && parts[n - 2] === 'snapshots' && /^(models|datasets|spaces)--/.test(parts[n - 3] ?? '')) {
    return parts.slice(0, n - 2).join(sep);
  }
  return realRoot;
}

/**
 * A directory as a ByteSourceFolder; names are joined only after validation by the caller. Every
 * file must resolve (symlinks followed) inside the folder — or the Hugging Face cache repository a
 * snapshot folder belongs to — else INDEX_UNSAFE_SHARD_NAME, before anything is read. `trusted`
 * names a file the caller chose explicitly (a path given to openCheckpoint), which may be a
 * symlink to anywhere.
 */
export function dirFolder(dir: string, options: { trusted?: string } = {}): ByteSourceFolder {
  const root = resolve(dir);
  const inside = (name: string) => {
    const p = resolve(root, name);
    if (dirname(p) !== root) {
      throw new CheckpointError(
        CheckpointErrorCode.INDEX_UNSAFE_SHARD_NAME,
        `${JSON.stringify(name)} is not a file directly in ${root}`,
      );
    }
    return p;
  };
  let allowed: Promise<string> | undefined;
  /** The path to open; throws when a symlink leads outside. undefined: absent. */
  const confined = async (name: string): Promise<string | undefined> => {
    const p = inside(name);
    if (name === options.trusted) return p;
    let real: string;
    try {
      real = await realpath(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw ioError(p, 'resolve', e);
    }
    allowed ??= realpath(root).then(confinementRoot, () => root);
    const base = await allowed;
    if (!within(real, base)) {
      throw new CheckpointError(
        CheckpointErrorCode.INDEX_UNSAFE_SHARD_NAME,
        `${name} in ${root} is a symlink that leads outside the model folder; copy the file into the folder instead`,
        { details: { name, folder: root } },
      );
    }
    return real;
  };
  return {
    description: root,
    async open(name) {
      const p = await confined(name);
      return p === undefined ? undefined : openFileSource(p, name);
    },
    async exists(name) {
      try {
        return (await stat(inside(name))).isFile();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR')
          return false;
        throw ioError(name, 'stat', e);
      }
    },
  };
}

/** Resolves a path to a folder (directory) or to a file inside its folder. */
export async function resolvePath(path: string): Promise<{ name: string; folder: ByteSourceFolder; file?: string }> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_NOT_FOUND, `${path} does not exist`, {
        details: { path },
      });
    }
    throw ioError(path, 'stat', e);
  }
  if (st.isDirectory()) return { name: path, folder: dirFolder(path) };
  return { name: path, folder: dirFolder(dirname(resolve(path)), { trusted: basename(path) }), file: basename(path) };
}

export function fileURLToPathSafe(u: URL): string {
  return fileURLToPath(u);
}

/** `<final>.<pid>.<hex>.tmp`: the temporary a single-file write goes through. */
function tempNameFor(finalPath: string): string {
  return `${finalPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Removes temporaries of `finalPath` (`<name>.<pid>.<hex>.tmp`) left by writers that no longer run
 * (a SIGKILL mid-write); called before every single-file write. Best effort.
 */
export async function sweepStaleFileTemporaries(finalPath: string): Promise<string[]> {
  const dir = dirname(finalPath);
  const re = new RegExp(`^${escapeRegExp(basename(finalPath))}\\.(\\d+)\\.[0-9a-f]+\\.tmp$`);
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return removed;
  }
  for (const e of entries) {
    const m = re.exec(e);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) {
      await rm(join(dir, e), { force: true }).catch(() => {});
      removed.push(e);
    }
  }
  return removed;
}

async function fsyncDir(dir: string): Promise<void> {
  // best effort: makes the rename durable on POSIX file systems
  try {
    const h = await open(dir, fsConstants.O_RDONLY);
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* not supported on this platform */
  }
}

/**
 * Streams a safetensors file to disk: the header is written first from the declared specs, then
 * each tensor's bytes in spec order. Everything goes to a temporary file beside the target that
 * `commit()` fsyncs and renames onto the final name, so a crash or error never leaves a partial
 * file under the final name; `abort()` removes the temporary file.
 */
export class SafetensorsFileWriter {
  private next = 0;
  private position: number;
  private finished = false;
  /** Bytes of the current tensor already written by writeChunk. */
  private partial = 0;

  private constructor(
    readonly path: string,
    private readonly tempPath: string,
    private readonly handle: FileHandle,
    private readonly specs: readonly SafetensorsTensorSpec[],
    private readonly offsets: Map<string, [number, number]>,
    headerSize: number,
    /** Size the finished file will have. */
    readonly fileSize: number,
  ) {
    this.position = headerSize;
  }

  /** Creates the temporary file and writes the header. */
  static async create(
    path: string,
    specs: readonly SafetensorsTensorSpec[],
    metadata: Record<string, string> = {},
  ): Promise<SafetensorsFileWriter> {
    const layout = safetensorsLayout(specs, metadata);
    const finalPath = resolve(path);
    await sweepStaleFileTemporaries(finalPath);
    const tempPath = tempNameFor(finalPath);
    let handle: FileHandle;
    try {
      handle = await open(tempPath, 'wx');
    } catch (e) {
      throw ioError(tempPath, 'create', e);
    }
    const w = new SafetensorsFileWriter(
      finalPath,
      tempPath,
      handle,
      specs,
      layout.offsets,
      layout.header.byteLength,
      layout.fileSize,
    );
    try {
      await w.writeAt(layout.header, 0);
    } catch (e) {
      await w.abort();
      throw e;
    }
    return w;
  }

  private async writeAt(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      let n: number;
      try {
        ({ bytesWritten: n } = await this.handle.write(
          bytes,
          done,
          Math.min(bytes.byteLength - done, MAX_READ),
          position + done,
        ));
      } catch (e) {
        throw ioError(this.tempPath, 'write', e);
      }
      done += n;
    }
  }

  /** Writes the next tensor's little-endian bytes; keys must come in spec order. */
  async write(key: string, bytes: Uint8Array): Promise<void> {
    if (this.finished)
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${this.path}: write after commit/abort`);
    const spec = this.specs[this.next];
    const range = this.offsets.get(key);
    if (!spec || spec.key !== key || !range) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_TENSOR_DATA,
        `${this.path}: expected tensor ${spec ? JSON.stringify(spec.key) : '(none: all written)'} next, got ${JSON.stringify(key)}`,
      );
    }
    const [b, e] = range;
    if (bytes.byteLength !== e - b) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_TENSOR_DATA,
        `${key}: ${spec.dtype} [${spec.shape.join(', ')}] needs ${e - b} bytes, got ${bytes.byteLength}`,
        { details: { key } },
      );
    }
    await this.writeAt(bytes, this.position);
    this.position += bytes.byteLength;
    this.next++;
  }

  /**
   * Writes the next piece of the current tensor (keys in spec order, pieces in order); the tensor
   * is complete when its byte length has been written. Lets a copy stream through a small buffer.
   */
  async writeChunk(key: string, bytes: Uint8Array): Promise<void> {
    if (this.finished)
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${this.path}: write after commit/abort`);
    const spec = this.specs[this.next];
    if (!spec || spec.key !== key) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_TENSOR_DATA,
        `${this.path}: expected tensor ${spec ? JSON.stringify(spec.key) : '(none: all written)'} next, got ${JSON.stringify(key)}`,
      );
    }
    const [b, e] = this.offsets.get(key) as [number, number];
    if (this.partial + bytes.byteLength > e - b) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_TENSOR_DATA,
        `${key}: ${spec.dtype} [${spec.shape.join(', ')}] needs ${e - b} bytes, got ${this.partial + bytes.byteLength}`,
        { details: { key } },
      );
    }
    await this.writeAt(bytes, this.position);
    this.position += bytes.byteLength;
    this.partial += bytes.byteLength;
    if (this.partial === e - b) {
      this.partial = 0;
      this.next++;
    }
  }

  /** Checks every tensor was written, fsyncs, and renames the temporary file onto the final name. */
  async commit(): Promise<void> {
    if (this.finished)
      throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${this.path}: already committed or aborted`);
    if (this.next !== this.specs.length) {
      const missing = this.specs[this.next]?.key;
      await this.abort();
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_TENSOR_DATA,
        `${this.path}: ${this.specs.length - this.next} tensor(s) not written (first: ${missing}); nothing was saved`,
      );
    }
    this.finished = true;
    try {
      await this.handle.sync();
      await this.handle.close();
      await rename(this.tempPath, this.path);
    } catch (e) {
      await this.handle.close().catch(() => {});
      await rm(this.tempPath, { force: true }).catch(() => {});
      throw ioError(this.path, 'commit', e);
    }
    await fsyncDir(dirname(this.path));
  }

  /** Discards the temporary file; the final name is untouched. */
  async abort(): Promise<void> {
    this.finished = true;
    await this.handle.close().catch(() => {});
    await rm(this.tempPath, { force: true }).catch(() => {});
  }
}

/** Writes tensors to a safetensors file atomically (temporary file + rename). */
export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, TensorToWrite> | Iterable<readonly [string, TensorToWrite]>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const resolved = [...tensors].map(([k, t]) => resolveTensorToWrite(k, t));
  const w = await SafetensorsFileWriter.create(
    path,
    resolved.map((r) => r.spec),
    metadata,
  );
  try {
    for (const r of resolved) await w.write(r.spec.key, r.bytes);
  } catch (e) {
    await w.abort();
    throw e;
  }
  await w.commit();
}

/**
 * Writes a file atomically: a temporary sibling, fsync, rename onto the final name (then the folder
 * is fsynced). A crash leaves the previous file or the new one, never a partial one; temporaries
 * of killed writers are swept first.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const finalPath = resolve(path);
  await sweepStaleFileTemporaries(finalPath);
  const tmp = tempNameFor(finalPath);
  const h = await open(tmp, 'wx').catch((e: unknown) => {
    throw ioError(tmp, 'create', e);
  });
  try {
    await h.writeFile(data);
    await h.sync();
    await h.close();
    await rename(tmp, finalPath);
  } catch (e) {
    await h.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw ioError(finalPath, 'write', e);
  }
  await fsyncDir(dirname(finalPath));
}

/** Writes a small text file atomically (see {@link writeFileAtomic}). */
export async function writeTextFileAtomic(path: string, text: string): Promise<void> {
  return writeFileAtomic(path, text);
}

/** The files beside the weights that make a model folder (config, tokenizer, notes), copied by conversion. */
const SIDE_FILE = /\.(json|model|txt|md)$/;
const WEIGHT_FILE = /^pytorch_model.*\.bin(\.index\.json)?$/;

/** `pytorch_model-00001-of-00033.bin` → `model-00001-of-00033.safetensors`; `pytorch_model.bin` → `model.safetensors`. */
export function safetensorsNameFor(binName: string): string {
  return binName.replace(/^pytorch_model/, 'model').replace(/\.bin$/, '.safetensors');
}

/**
 * Converts a PyTorch `.bin` checkpoint (a folder with `pytorch_model.bin` or
 * `pytorch_model.bin.index.json` + shards, or one `.bin` file) to safetensors in `dstDir`, sharded
 * like the input, values bit-exact in their stored dtype. Streams tensor by tensor; each output
 * file is written to a temporary name and renamed when complete; for sharded input the index
 * `model.safetensors.index.json` is written last, so its presence marks a complete conversion.
 */
export async function convertBinToSafetensors(
  srcDir: string,
  dstDir: string,
  options: ConvertOptions = {},
): Promise<ConvertResult> {
  const openOpts: { onProgress?: (e: CheckpointProgress) => void; signal?: AbortSignal } = {};
  if (options.onProgress) openOpts.onProgress = options.onProgress;
  if (options.signal) openOpts.signal = options.signal;
  // A destination that would be refused fails first; then the source is opened and checked
  // before the destination is touched.
  await checkDestination(dstDir, { force: options.force === true });
  const ckpt = await openCheckpoint(srcDir, openOpts);
  try {
    if (ckpt.format !== 'pytorch') {
      throw new CheckpointError(
        CheckpointErrorCode.CHECKPOINT_NOT_FOUND,
        `${srcDir} is a ${ckpt.format} checkpoint, not PyTorch .bin`,
      );
    }
    const entries = ckpt.entries();
    const byFile = new Map<string, SafetensorsTensorSpec[]>();
    for (const e of entries) {
      const list = byFile.get(e.file) ?? [];
      list.push({ key: e.key, dtype: e.dtype, shape: e.shape });
      byFile.set(e.file, list);
    }
    const outName = new Map<string, string>();
    for (const f of ckpt.files) {
      const n = safetensorsNameFor(f);
      if ([...outName.values()].includes(n))
        throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${n}: two shards map to it`);
      outName.set(f, n);
    }
    const sideFiles = options.copySideFiles ? await listSideFiles(srcDir) : [];
    // All-or-nothing: everything is written into a temporary sibling of dstDir, which replaces
    // dstDir only once complete (a non-empty dstDir is refused unless force).
    const outputName = (file: string | undefined): string => {
      const n = file === undefined ? undefined : outName.get(file);
      if (n === undefined)
        throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${file} is not a shard of the checkpoint`);
      return n;
    };
    return await writeFolderAtomic(
      dstDir,
      async (tmp) => {
        const files: string[] = [];
        let writer: SafetensorsFileWriter | undefined;
        let writerFile: string | undefined;
        let bytes = 0;
        try {
          const readOpts: { signal?: AbortSignal } = {};
          if (options.signal) readOpts.signal = options.signal;
          // Pieces of at most 8 MiB: memory stays near one piece, not one (possibly 262 MB) tensor.
          for await (const [e, raw] of ckpt.rawChunks(readOpts)) {
            if (e.file !== writerFile || !writer) {
              if (writer) {
                await writer.commit();
                files.push(outputName(writerFile));
              }
              writerFile = e.file;
              writer = await SafetensorsFileWriter.create(join(tmp, outputName(e.file)), byFile.get(e.file) ?? [], {
                format: 'pt',
              });
            }
            await writer.writeChunk(e.key, raw);
            bytes += raw.byteLength;
          }
          if (writer) {
            await writer.commit();
            files.push(outputName(writerFile));
            writer = undefined;
          }
        } catch (e) {
          await writer?.abort();
          throw e;
        }
        const result: ConvertResult = { files, tensors: entries.length, bytes, copied: [] };
        if (ckpt.index) {
          const weightMap = Object.create(null) as Record<string, string>;
          for (const e of [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)))
            weightMap[e.key] = outputName(e.file);
          const text = `${JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2)}\n`;
          await writeTextFileAtomic(join(tmp, SAFETENSORS_INDEX_NAME), text);
          result.index = SAFETENSORS_INDEX_NAME;
        }
        for (const name of sideFiles) {
          throwIfAborted(options.signal);
          await copyFile(join(srcDir, name), join(tmp, name)).catch((e: unknown) => {
            throw ioError(join(srcDir, name), 'copy', e);
          });
          result.copied.push(name);
        }
        files.sort(compareShardNames);
        return result;
      },
      { ...(options.force ? { force: true } : {}), ...(options.signal ? { signal: options.signal } : {}) },
    );
  } finally {
    await ckpt.close();
  }
}

/** The regular side files of a source folder (config.json, tokenizer.model, …), not the weights or their index. */
async function listSideFiles(srcDir: string): Promise<string[]> {
  let st: import('node:fs').Stats;
  try {
    st = await stat(srcDir);
  } catch (e) {
    throw ioError(srcDir, 'stat', e);
  }
  if (!st.isDirectory()) return [];
  const out: string[] = [];
  for (const name of (await readdir(srcDir)).sort()) {
    if (!SIDE_FILE.test(name) || WEIGHT_FILE.test(name)) continue;
    const p = join(srcDir, name);
    const real = await realpath(p).catch(() => undefined);
    if (!real || !(await stat(real)).isFile()) continue;
    out.push(name);
  }
  return out;
}
