/**
 * Files are what they claim (issue 23 item 6, checklist B15/B30): a FIFO named as a shard never
 * hangs, a symlink that leaves the model folder is refused before it is read, and no error echoes
 * the bytes of a file that is not a checkpoint.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { openCheckpoint, openCheckpointFolder } from './checkpoint.js';
import { CheckpointError } from './errors.js';
import { writeSafetensors } from './writer.js';

const root = mkdtempSync(join(tmpdir(), 'owlet-files-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = join(root, `m${n++}`);
  mkdirSync(d);
  return d;
};

const SECRET = 'root:x:0:0:root:/root:/bin/bash\n';
// The number the first 8 bytes of SECRET make as a little-endian u64 (what a header-length error printed).
const SECRET_AS_U64 = new DataView(new TextEncoder().encode(SECRET).buffer).getBigUint64(0, true).toString();

const shard = (data: number[]) => writeSafetensors({ w: { dtype: 'F32', shape: [data.length], data } });

function indexFor(dir: string, shards: Record<string, string>): void {
  writeFileSync(
    join(dir, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: {}, weight_map: Object.fromEntries(Object.entries(shards)) }),
  );
}

async function failure(p: Promise<unknown>): Promise<CheckpointError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e, 'expected a CheckpointError').toBeInstanceOf(CheckpointError);
  return e as CheckpointError;
}

function expectNoEcho(e: Error): void {
  expect(e.message).not.toContain('root:x');
  expect(e.message).not.toContain(SECRET_AS_U64);
  expect(JSON.stringify((e as CheckpointError).details ?? {})).not.toContain(SECRET_AS_U64);
}

describe('a FIFO is not a file', () => {
  it('named as a shard in the index: a typed error, no hang', async () => {
    const dir = fresh();
    execFileSync('mkfifo', [join(dir, 'model-00001-of-00001.safetensors')]);
    indexFor(dir, { w: 'model-00001-of-00001.safetensors' });
    const e = await failure(openCheckpoint(dir));
    expect(e.message).toMatch(/not a regular file/);
  });

  it('given as the checkpoint path itself: a typed error, no hang', async () => {
    const dir = fresh();
    const fifo = join(dir, 'model.safetensors');
    execFileSync('mkfifo', [fifo]);
    const e = await failure(openCheckpoint(fifo));
    expect(e.message).toMatch(/not a regular file/);
  });

  it('as a side file (config.json) of a folder', async () => {
    const dir = fresh();
    execFileSync('mkfifo', [join(dir, 'config.json')]);
    const folder = await openCheckpointFolder(dir);
    const e = await failure(folder.open('config.json'));
    expect(e.message).toMatch(/not a regular file/);
  });
});

describe('symlinks stay inside the model folder', () => {
  const outside = join(root, 'passwd');
  writeFileSync(outside, SECRET.repeat(40));

  it('a shard symlinked outside the folder is refused before it is read, and its bytes are not echoed', async () => {
    const dir = fresh();
    symlinkSync(outside, join(dir, 'model-00001-of-00001.safetensors'));
    indexFor(dir, { w: 'model-00001-of-00001.safetensors' });
    const e = await failure(openCheckpoint(dir));
    expect(e.code).toBe('INDEX_UNSAFE_SHARD_NAME');
    expect(e.message).toMatch(/outside/);
    expectNoEcho(e);
  });

  it('a single model.safetensors symlinked outside, and a side file symlinked outside', async () => {
    const dir = fresh();
    symlinkSync(outside, join(dir, 'model.safetensors'));
    symlinkSync(outside, join(dir, 'config.json'));
    expectNoEcho(await failure(openCheckpoint(dir)));
    const folder = await openCheckpointFolder(dir);
    const e = await failure(folder.open('config.json'));
    expect(e.code).toBe('INDEX_UNSAFE_SHARD_NAME');
  });

  it('symlinks within the folder, and the Hugging Face cache layout (snapshots → blobs), load', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'real.safetensors'), shard([1, 2, 3]));
    symlinkSync('real.safetensors', join(dir, 'model.safetensors'));
    const a = await openCheckpoint(dir);
    expect(a.entries().map((x) => x.key)).toEqual(['w']);
    await a.close();

    const repo = join(fresh(), 'models--org--owl');
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(join(repo, 'snapshots', 'abc123'), { recursive: true });
    writeFileSync(join(repo, 'blobs', 'f00d'), shard([4, 5]));
    symlinkSync('../../blobs/f00d', join(repo, 'snapshots', 'abc123', 'model.safetensors'));
    const b = await openCheckpoint(join(repo, 'snapshots', 'abc123'));
    expect(b.entries()[0]?.shape).toEqual([2]);
    await b.close();
  });
});

describe('errors never echo what a non-checkpoint file holds', () => {
  it('a text file named model.safetensors: the header-length error does not print its first bytes', async () => {
    const dir = fresh();
    writeFileSync(join(dir, 'model.safetensors'), readFileSync(join(root, 'passwd')));
    const e = await failure(openCheckpoint(dir));
    expect(e.code).toBe('SAFETENSORS_HEADER_TOO_LARGE');
    expectNoEcho(e);
  });
});
