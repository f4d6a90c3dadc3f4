/**
 * Crash-safe checkpoint folders (reliability checklist F1–F4, §7.4).
 *
 * A folder is written under a temporary sibling name (`.checkpoint-12.tmp-<pid>-<rand>`); every
 * file is fsynced; a completion marker listing each file's size and SHA-256 is written last and
 * fsynced with the folder; then the folder is renamed onto its final name and the parent fsynced.
 * So a folder under a final name is always complete, and a kill at any point leaves either the
 * previous state or the new one, plus a temporary folder that the next `sweepStaleTemps` removes.
 * Replacing an existing folder moves it aside first (`.name.old-…`), so the old one is never
 * overwritten in place (F4) and is restored if the process dies between the two renames.
 *
 * All file-system calls go through `CheckpointFs`, so tests can inject faults (ENOSPC, a kill
 * after N bytes). Node only.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { OwletError } from '@owlet/core';

/** Name of the completion marker inside a finished folder. */
export const COMPLETE_MARKER = 'checkpoint_complete.json';

/** The subset of `node:fs/promises` the writer uses. */
export interface CheckpointFs {
  mkdir(path: string, options: { recursive: boolean }): Promise<unknown>;
  open(path: string, flags: string): Promise<FileHandleLike>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string, options: { recursive: boolean; force: boolean }): Promise<void>;
  readdir(path: string): Promise<string[]>;
  stat(path: string): Promise<{ isDirectory(): boolean; isFile(): boolean; size: number }>;
  readFile(path: string): Promise<Uint8Array>;
}

export interface FileHandleLike {
  write(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export const NODE_FS: CheckpointFs = {
  mkdir: (p, o) => nodeFs.mkdir(p, o),
  open: (p, f) => nodeFs.open(p, f) as unknown as Promise<FileHandleLike>,
  rename: (a, b) => nodeFs.rename(a, b),
  rm: (p, o) => nodeFs.rm(p, o),
  readdir: (p) => nodeFs.readdir(p),
  stat: (p) => nodeFs.stat(p),
  readFile: (p) => nodeFs.readFile(p),
};

export interface ManifestEntry {
  size: number;
  sha256: string;
}

export interface CompletionMarker {
  format: 'owlet-checkpoint';
  version: 1;
  files: Record<string, ManifestEntry>;
}

const TMP_RE = /^\.(.+)\.tmp-(\d+)-[0-9a-f]+$/;
const OLD_RE = /^\.(.+)\.old-(\d+)-[0-9a-f]+$/;

function ioError(path: string, what: string, e: unknown): OwletError {
  const code = (e as NodeJS.ErrnoException)?.code;
  return new OwletError(
    'CHECKPOINT_IO',
    `${path}: ${what} failed${code ? ` (${code})` : ''}: ${(e as Error)?.message ?? String(e)}`,
    { details: { path, code }, cause: e },
  );
}

async function fsyncDir(fs: CheckpointFs, dir: string): Promise<void> {
  let h: FileHandleLike | undefined;
  try {
    h = await fs.open(dir, 'r');
    await h.sync();
  } catch {
    // some platforms cannot fsync a directory; the rename itself is still atomic
  } finally {
    await h?.close().catch(() => {});
  }
}

type Chunks = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** A folder being written; `commit()` makes it appear under its final name, complete. */
export class AtomicFolderWriter {
  private readonly files = new Map<string, ManifestEntry>();
  private done = false;

  private constructor(
    readonly finalDir: string,
    readonly tempDir: string,
    private readonly fs: CheckpointFs,
  ) {}

  /** Creates the temporary sibling folder of `finalDir` (the parent is created if needed). */
  static async begin(finalDir: string, fs: CheckpointFs = NODE_FS): Promise<AtomicFolderWriter> {
    const parent = dirname(finalDir);
    const temp = join(parent, `.${basename(finalDir)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await fs.mkdir(parent, { recursive: true });
      await fs.mkdir(temp, { recursive: false } as { recursive: boolean });
    } catch (e) {
      throw ioError(temp, 'mkdir', e);
    }
    return new AtomicFolderWriter(finalDir, temp, fs);
  }

  /** Writes one file of the folder from bytes or a stream of chunks, then fsyncs it. */
  async writeFile(name: string, data: Chunks): Promise<ManifestEntry> {
    if (this.done) throw new OwletError('CHECKPOINT_IO', `${this.finalDir}: write after commit/abort`);
    if (name.includes('/') || name.includes('\\') || name === COMPLETE_MARKER || name.startsWith('.')) {
      throw new OwletError('INVALID_ARGUMENT', `invalid checkpoint file name ${JSON.stringify(name)}`);
    }
    const path = join(this.tempDir, name);
    const hash = createHash('sha256');
    let size = 0;
    let h: FileHandleLike;
    try {
      h = await this.fs.open(path, 'wx');
    } catch (e) {
      throw ioError(path, 'create', e);
    }
    try {
      const chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = data instanceof Uint8Array ? [data] : data;
      for await (const chunk of chunks) {
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await h.write(chunk, off, chunk.byteLength - off, size);
          if (bytesWritten <= 0) throw new Error('short write');
          off += bytesWritten;
          size += bytesWritten;
        }
        hash.update(chunk);
      }
      await h.sync();
    } catch (e) {
      await h.close().catch(() => {});
      throw e instanceof OwletError ? e : ioError(path, 'write', e);
    }
    try {
      await h.close();
    } catch (e) {
      throw ioError(path, 'close', e);
    }
    const entry = { size, sha256: hash.digest('hex') };
    this.files.set(name, entry);
    return entry;
  }

  /**
   * Writes the completion marker, fsyncs, and renames the folder onto its final name (moving an
   * existing folder of that name aside first, removed once the new one is in place).
   */
  async commit(): Promise<void> {
    if (this.done) throw new OwletError('CHECKPOINT_IO', `${this.finalDir}: already committed or aborted`);
    const marker: CompletionMarker = { format: 'owlet-checkpoint', version: 1, files: Object.fromEntries(this.files) };
    const markerPath = join(this.tempDir, COMPLETE_MARKER);
    try {
      const h = await this.fs.open(markerPath, 'wx');
      const bytes = new TextEncoder().encode(`${JSON.stringify(marker, null, 2)}\n`);
      try {
        let off = 0;
        while (off < bytes.byteLength) off += (await h.write(bytes, off, bytes.byteLength - off, off)).bytesWritten;
        await h.sync();
      } finally {
        await h.close();
      }
      await fsyncDir(this.fs, this.tempDir);
    } catch (e) {
      throw ioError(markerPath, 'write', e);
    }
    const parent = dirname(this.finalDir);
    let aside: string | null = null;
    try {
      const st = await this.fs.stat(this.finalDir).catch(() => null);
      if (st) {
        aside = join(parent, `.${basename(this.finalDir)}.old-${process.pid}-${randomBytes(4).toString('hex')}`);
        await this.fs.rename(this.finalDir, aside);
      }
      await this.fs.rename(this.tempDir, this.finalDir);
    } catch (e) {
      if (aside) await this.fs.rename(aside, this.finalDir).catch(() => {});
      throw ioError(this.finalDir, 'rename', e);
    }
    this.done = true;
    await fsyncDir(this.fs, parent);
    if (aside) await this.fs.rm(aside, { recursive: true, force: true }).catch(() => {});
  }

  /** Removes the temporary folder; the final name is untouched. */
  async abort(): Promise<void> {
    this.done = true;
    await this.fs.rm(this.tempDir, { recursive: true, force: true }).catch(() => {});
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Cleans up after crashed writers in `parent`: removes temporary folders of processes that are no
 * longer alive, and puts back a folder that was moved aside when its replacement never arrived.
 * Returns the names removed or restored.
 */
export async function sweepStaleTemps(
  parent: string,
  fs: CheckpointFs = NODE_FS,
): Promise<{ removed: string[]; restored: string[] }> {
  const removed: string[] = [];
  const restored: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(parent);
  } catch {
    return { removed, restored };
  }
  for (const name of names) {
    const tmp = TMP_RE.exec(name);
    if (tmp && !pidAlive(Number(tmp[2]))) {
      await fs.rm(join(parent, name), { recursive: true, force: true });
      removed.push(name);
      continue;
    }
    const old = OLD_RE.exec(name);
    if (old && !pidAlive(Number(old[2]))) {
      const target = join(parent, old[1] as string);
      const exists = await fs.stat(target).catch(() => null);
      if (exists) {
        await fs.rm(join(parent, name), { recursive: true, force: true });
        removed.push(name);
      } else {
        await fs.rename(join(parent, name), target);
        restored.push(name);
      }
    }
  }
  return { removed, restored };
}

export interface FolderCheck {
  ok: boolean;
  reason?: string;
  marker?: CompletionMarker;
}

/**
 * Whether `dir` is a complete folder: it has the completion marker and every listed file has
 * its size (and, with `verifyHashes`, its SHA-256).
 */
export async function checkCompleteFolder(
  dir: string,
  options: { verifyHashes?: boolean; fs?: CheckpointFs } = {},
): Promise<FolderCheck> {
  const fs = options.fs ?? NODE_FS;
  let marker: CompletionMarker;
  try {
    const bytes = await fs.readFile(join(dir, COMPLETE_MARKER));
    marker = JSON.parse(new TextDecoder().decode(bytes)) as CompletionMarker;
  } catch {
    return { ok: false, reason: `no completion marker (${COMPLETE_MARKER})` };
  }
  if (marker?.format !== 'owlet-checkpoint' || typeof marker.files !== 'object' || marker.files === null) {
    return { ok: false, reason: `${COMPLETE_MARKER} is not an owlet checkpoint marker` };
  }
  for (const [name, e] of Object.entries(marker.files)) {
    const st = await fs.stat(join(dir, name)).catch(() => null);
    if (!st?.isFile()) return { ok: false, reason: `${name} is missing` };
    if (st.size !== e.size) return { ok: false, reason: `${name} has ${st.size} bytes, the marker says ${e.size}` };
    if (options.verifyHashes) {
      const digest = createHash('sha256')
        .update(await fs.readFile(join(dir, name)))
        .digest('hex');
      if (digest !== e.sha256) return { ok: false, reason: `${name} does not match its SHA-256` };
    }
  }
  return { ok: true, marker };
}
