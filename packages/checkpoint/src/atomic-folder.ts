/**
 * All-or-nothing folder output (Node only). A folder owlet writes — a converted checkpoint, an
 * exported model, a training checkpoint — is built in a temporary sibling folder, every file is
 * fsynced, and the folder is renamed onto its final name only when complete. So a crash, a kill,
 * a full disk or an error at any point leaves either the previous folder or nothing under the
 * final name, never a mix. Loaded through node-api.ts (dynamic import), like node.ts.
 *
 * Names beside the destination `<parent>/<name>`:
 * - `.<name>.owlet-lock`       — held while one writer works (exclusive create; holds pid + host);
 * - `.<name>.owlet-tmp-<pid>-<hex>` — the folder being built;
 * - `.<name>.owlet-old-<pid>-<hex>` — the previous folder while `force` swaps it out.
 * A writer sweeps temporaries and locks left by processes that no longer run (a SIGKILL), and
 * restores an `owlet-old` folder whose swap was cut between its two renames.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import { CheckpointError, CheckpointErrorCode } from './errors.js';

export interface AtomicFolderOptions {
  /** Replace a destination that exists and is not empty (default false: refuse). */
  force?: boolean;
  /** Checked before the build and before the final rename; an abort removes the temporary folder. */
  signal?: AbortSignal;
}

const LOCK_SUFFIX = '.owlet-lock';
const TMP_MARK = '.owlet-tmp-';
const OLD_MARK = '.owlet-old-';

const ioError = (path: string, what: string, e: unknown) =>
  new CheckpointError(
    CheckpointErrorCode.CHECKPOINT_IO,
    `${path}: ${what} failed: ${(e as Error)?.message ?? String(e)}`,
    { details: { path, code: (e as NodeJS.ErrnoException)?.code }, cause: e },
  );

function aborted(signal: AbortSignal | undefined, path: string): void {
  if (signal?.aborted) {
    throw new CheckpointError(CheckpointErrorCode.ABORTED, `writing ${path} was aborted`, { cause: signal.reason });
  }
}

/** True when a process with this pid runs on this host (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** `<pid>` of a `.<name>.owlet-tmp-<pid>-<hex>` / `owlet-old` entry, or undefined. */
function ownerPid(entry: string, prefix: string): number | undefined {
  if (!entry.startsWith(prefix)) return undefined;
  const m = /^(\d+)-[0-9a-f]+$/.exec(entry.slice(prefix.length));
  return m ? Number(m[1]) : undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw ioError(path, 'stat', e);
  }
}

async function fsyncPath(path: string, flags: 'r' | 'r+' = 'r'): Promise<void> {
  let h: FileHandle | undefined;
  try {
    h = await open(path, flags);
    await h.sync();
  } catch (e) {
    // Directories cannot be fsynced on every platform (EISDIR/EINVAL/EPERM on Windows): best effort there.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw ioError(path, 'fsync', e);
  } finally {
    await h?.close().catch(() => {});
  }
}

/** fsyncs every regular file under `dir` (recursively), then the folders themselves. */
async function fsyncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) await fsyncTree(p);
    else if (entry.isFile()) await fsyncPath(p);
  }
  await fsyncPath(dir);
}

interface Lock {
  release(): Promise<void>;
}

/** Takes `.<name>.owlet-lock` exclusively; a lock whose owner no longer runs on this host is stale and retaken. */
async function takeLock(parent: string, name: string, dst: string): Promise<Lock> {
  const lockPath = join(parent, `.${name}${LOCK_SUFFIX}`);
  const host = hostname();
  for (let attempt = 0; attempt < 2; attempt++) {
    // The lock appears with its content in one step (written beside it, then hard-linked onto its
    // name, which fails if it exists): a reader never sees an empty lock of a live writer.
    const staged = `${lockPath}.${process.pid}.${randomBytes(4).toString('hex')}`;
    try {
      const h = await open(staged, 'wx');
      try {
        await h.writeFile(JSON.stringify({ pid: process.pid, host, since: new Date().toISOString() }));
        await h.sync();
      } finally {
        await h.close();
      }
      await link(staged, lockPath);
      return { release: () => rm(lockPath, { force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(lockPath, 'create lock', e);
    } finally {
      await rm(staged, { force: true }).catch(() => {});
    }
    let owner: { pid?: unknown; host?: unknown } = {};
    try {
      owner = JSON.parse(await readFile(lockPath, 'utf8')) as typeof owner;
    } catch {
      // unreadable: not written by this code (locks appear whole); treated as stale when no pid is known
    }
    const pid = typeof owner.pid === 'number' ? owner.pid : Number.NaN;
    const sameHost = owner.host === undefined || owner.host === host;
    if (sameHost && !processAlive(pid)) {
      await rm(lockPath, { force: true });
      continue;
    }
    throw new CheckpointError(
      CheckpointErrorCode.DESTINATION_LOCKED,
      `${dst} is being written by another process (pid ${Number.isNaN(pid) ? '?' : pid}${sameHost ? '' : ` on ${String(owner.host)}`}); lock ${lockPath}`,
      { details: { path: dst, lock: lockPath, pid } },
    );
  }
  throw new CheckpointError(CheckpointErrorCode.DESTINATION_LOCKED, `${dst}: could not take the lock ${lockPath}`, {
    details: { path: dst, lock: lockPath },
  });
}

/**
 * Removes temporaries of dead writers beside `<parent>/<name>`; restores an interrupted `force`
 * swap (the old folder exists, the destination does not). Call with the lock held.
 */
async function sweep(parent: string, name: string, dst: string): Promise<void> {
  const tmpPrefix = `.${name}${TMP_MARK}`;
  const oldPrefix = `.${name}${OLD_MARK}`;
  let entries: string[];
  try {
    entries = await readdir(parent);
  } catch (e) {
    throw ioError(parent, 'list', e);
  }
  const stagedLock = new RegExp(
    `^${`.${name}${LOCK_SUFFIX}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)\\.[0-9a-f]+$`,
  );
  for (const entry of entries) {
    const staged = stagedLock.exec(entry);
    if (staged && !processAlive(Number(staged[1]))) {
      await rm(join(parent, entry), { force: true });
      continue;
    }
    const tmpPid = ownerPid(entry, tmpPrefix);
    if (tmpPid !== undefined && !processAlive(tmpPid)) {
      await rm(join(parent, entry), { recursive: true, force: true });
      continue;
    }
    const oldPid = ownerPid(entry, oldPrefix);
    if (oldPid !== undefined && !processAlive(oldPid)) {
      const old = join(parent, entry);
      if (await exists(dst)) await rm(old, { recursive: true, force: true });
      else await rename(old, dst).catch((e: unknown) => Promise.reject(ioError(old, `restore to ${dst}`, e)));
    }
  }
}

/**
 * Refuses early (before any expensive work) a destination that `writeFolderAtomic` would refuse:
 * one that is not a folder, or a non-empty folder without `force`. writeFolderAtomic checks again
 * under its lock.
 */
export async function checkDestination(dst: string, options: { force?: boolean } = {}): Promise<void> {
  const finalPath = resolve(dst);
  let entries: string[];
  try {
    const st = await stat(finalPath);
    if (!st.isDirectory()) {
      throw new CheckpointError(
        CheckpointErrorCode.DESTINATION_NOT_EMPTY,
        `${finalPath} exists and is not a folder; choose another destination`,
        { details: { path: finalPath } },
      );
    }
    entries = await readdir(finalPath);
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw ioError(finalPath, 'stat', e);
  }
  if (entries.length > 0 && !options.force) throw notEmpty(finalPath, entries.length);
}

const notEmpty = (finalPath: string, n: number) =>
  new CheckpointError(
    CheckpointErrorCode.DESTINATION_NOT_EMPTY,
    `${finalPath} is not empty (${n} entr${n === 1 ? 'y' : 'ies'}); choose an empty or new folder, or pass force to replace it`,
    { details: { path: finalPath, entries: n } },
  );

/**
 * Builds the folder `dst` all-or-nothing: `build(tmpDir)` writes every file into a fresh temporary
 * sibling folder; when it resolves, every file is fsynced and the folder renamed onto `dst`.
 * A non-empty `dst` is refused (`DESTINATION_NOT_EMPTY`) unless `force`; a second concurrent writer
 * gets `DESTINATION_LOCKED`. On any error or abort the temporary folder is removed and `dst` is
 * untouched. Returns what `build` returned.
 */
export async function writeFolderAtomic<T>(
  dst: string,
  build: (tmpDir: string) => Promise<T>,
  options: AtomicFolderOptions = {},
): Promise<T> {
  const finalPath = resolve(dst);
  const parent = dirname(finalPath);
  const name = basename(finalPath);
  aborted(options.signal, finalPath);
  await mkdir(parent, { recursive: true }).catch((e: unknown) => Promise.reject(ioError(parent, 'create folder', e)));
  const lock = await takeLock(parent, name, finalPath);
  const suffix = () => `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(parent, `.${name}${TMP_MARK}${suffix()}`);
  try {
    await sweep(parent, name, finalPath);
    let replace = false;
    try {
      const st = await stat(finalPath);
      if (!st.isDirectory()) {
        throw new CheckpointError(
          CheckpointErrorCode.DESTINATION_NOT_EMPTY,
          `${finalPath} exists and is not a folder; choose another destination`,
          { details: { path: finalPath } },
        );
      }
      const entries = await readdir(finalPath);
      if (entries.length > 0) {
        if (!options.force) throw notEmpty(finalPath, entries.length);
        replace = true;
      }
    } catch (e) {
      if (e instanceof CheckpointError) throw e;
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(finalPath, 'stat', e);
    }
    await mkdir(tmp).catch((e: unknown) => Promise.reject(ioError(tmp, 'create folder', e)));
    const result = await build(tmp);
    aborted(options.signal, finalPath);
    await fsyncTree(tmp);
    if (replace) {
      // Linux has no atomic swap of two folders from Node: move the old one aside first. A crash
      // between the two renames is repaired by the next writer's sweep (it restores the old folder).
      const old = join(parent, `.${name}${OLD_MARK}${suffix()}`);
      await rename(finalPath, old).catch((e: unknown) => Promise.reject(ioError(finalPath, 'move aside', e)));
      try {
        await rename(tmp, finalPath);
      } catch (e) {
        await rename(old, finalPath).catch(() => {});
        throw ioError(tmp, `rename to ${finalPath}`, e);
      }
      await rm(old, { recursive: true, force: true });
    } else {
      // An empty destination folder exists: rename() onto an empty directory replaces it on POSIX.
      await rename(tmp, finalPath).catch((e: unknown) => Promise.reject(ioError(tmp, `rename to ${finalPath}`, e)));
    }
    await fsyncPath(parent);
    return result;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  } finally {
    await lock.release().catch(() => {});
  }
}

/** Removes stale temporaries and locks of dead writers beside `dst` (what every writer does first). */
export async function sweepStaleTemporaries(dst: string): Promise<void> {
  const finalPath = resolve(dst);
  const parent = dirname(finalPath);
  const name = basename(finalPath);
  if (!(await exists(parent))) return;
  const lock = await takeLock(parent, name, finalPath);
  try {
    await sweep(parent, name, finalPath);
  } finally {
    await lock.release().catch(() => {});
  }
}
