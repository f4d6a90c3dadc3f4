/**
 * Crash-safe checkpoint folders (reliability checklist F1–F4, §7.4), on @owlet/checkpoint's
 * `writeFolderAtomic` (temporary sibling folder, lock, fsync, rename; an existing folder is moved
 * aside and restored if the swap is cut) plus a completion marker: the last file written lists
 * every file's size and SHA-256, so a folder is only a checkpoint when the marker says it is
 * complete and the files agree with it (a folder copied or cut by hand is ignored).
 *
 * File contents go through `CheckpointFs`, so tests can inject faults (ENOSPC, a kill after N
 * bytes). Node only.
 */
import { createHash } from 'node:crypto';
import * as nodeFs from 'node:fs/promises';
import { join } from 'node:path';

import { sweepStaleTemporaries, writeFolderAtomic } from '@owlet/checkpoint';
import { OwletError } from '@owlet/core';

/** Name of the completion marker inside a finished folder. */
export const COMPLETE_MARKER = 'checkpoint_complete.json';

/** The file operations the checkpoint files go through. */
export interface CheckpointFs {
  open(path: string, flags: string): Promise<FileHandleLike>;
  readdir(path: string): Promise<string[]>;
  stat(path: string): Promise<{ isDirectory(): boolean; isFile(): boolean; size: number }>;
  readFile(path: string): Promise<Uint8Array>;
  rm(path: string, options: { recursive: boolean; force: boolean }): Promise<void>;
}

export interface FileHandleLike {
  write(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export const NODE_FS: CheckpointFs = {
  open: (p, f) => nodeFs.open(p, f) as unknown as Promise<FileHandleLike>,
  readdir: (p) => nodeFs.readdir(p),
  stat: (p) => nodeFs.stat(p),
  readFile: (p) => nodeFs.readFile(p),
  rm: (p, o) => nodeFs.rm(p, o),
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

function ioError(path: string, what: string, e: unknown): OwletError {
  const code = (e as NodeJS.ErrnoException)?.code;
  return new OwletError(
    'CHECKPOINT_IO',
    `${path}: ${what} failed${code ? ` (${code})` : ''}: ${(e as Error)?.message ?? String(e)}`,
    { details: { path, code }, cause: e },
  );
}

type Chunks = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/** Writes the files of one folder under construction and keeps their manifest. */
export class CheckpointFileWriter {
  readonly files = new Map<string, ManifestEntry>();

  constructor(
    readonly dir: string,
    private readonly fs: CheckpointFs,
  ) {}

  /** Writes one file from bytes or a stream of chunks, fsynced. */
  async writeFile(name: string, data: Chunks): Promise<ManifestEntry> {
    if (name.includes('/') || name.includes('\\') || name === COMPLETE_MARKER || name.startsWith('.')) {
      throw new OwletError('INVALID_ARGUMENT', `invalid checkpoint file name ${JSON.stringify(name)}`);
    }
    const entry = await this.write(name, data);
    this.files.set(name, entry);
    return entry;
  }

  private async write(name: string, data: Chunks): Promise<ManifestEntry> {
    const path = join(this.dir, name);
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
    return { size, sha256: hash.digest('hex') };
  }

  /** The completion marker, written last. */
  async finish(): Promise<void> {
    const marker: CompletionMarker = { format: 'owlet-checkpoint', version: 1, files: Object.fromEntries(this.files) };
    await this.write(COMPLETE_MARKER, new TextEncoder().encode(`${JSON.stringify(marker, null, 2)}\n`));
  }
}

/**
 * Writes the checkpoint folder `dst` all or nothing: `build` writes the files, the completion
 * marker follows, then `writeFolderAtomic` makes the folder appear under its final name. An
 * existing `dst` is replaced whole (the old one is moved aside until the new one is in place).
 */
export async function writeCheckpointFolder<T>(
  dst: string,
  build: (w: CheckpointFileWriter) => Promise<T>,
  options: { fs?: CheckpointFs } = {},
): Promise<T> {
  return writeFolderAtomic(
    dst,
    async (tmp) => {
      const w = new CheckpointFileWriter(tmp, options.fs ?? NODE_FS);
      const r = await build(w);
      await w.finish();
      return r;
    },
    { force: true },
  );
}

const STALE_RE = /^\.(.+)\.owlet-(?:tmp-\d+-[0-9a-f]+|old-\d+-[0-9a-f]+|lock)$/;

/**
 * Cleans up after crashed writers in `parent`: for every folder name with leftovers (temporary
 * folders, moved-aside folders, locks), @owlet/checkpoint's sweep removes what dead processes left
 * and restores a folder whose replacement never arrived. Returns the names it looked at.
 */
export async function sweepStaleTemps(parent: string, fs: CheckpointFs = NODE_FS): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(parent);
  } catch {
    return [];
  }
  const targets = new Set<string>();
  for (const n of names) {
    const m = STALE_RE.exec(n);
    if (m?.[1]) targets.add(m[1]);
  }
  for (const t of targets) await sweepStaleTemporaries(join(parent, t));
  return [...targets];
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
