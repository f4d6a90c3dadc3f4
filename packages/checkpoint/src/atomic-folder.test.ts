import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { CheckpointError } from './errors.js';
import { sweepStaleTemporaries, writeFolderAtomic } from './node-api.js';

const root = mkdtempSync(join(tmpdir(), 'owlet-atomic-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(root, `case${n++}`);
const here = dirname(fileURLToPath(import.meta.url));

/** A pid that ran and exited (so no live process owns it now). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    return (e as CheckpointError).code;
  }
}

describe('writeFolderAtomic', () => {
  it('builds in a temporary sibling and renames it into place; nothing else stays beside it', async () => {
    const dst = join(fresh(), 'out');
    let seenTmp = '';
    const r = await writeFolderAtomic(dst, async (tmp) => {
      seenTmp = tmp;
      expect(existsSync(dst)).toBe(false); // the final name appears only when complete
      expect(dirname(tmp)).toBe(dirname(dst));
      await writeFile(join(tmp, 'a.txt'), 'A');
      mkdirSync(join(tmp, 'sub'));
      await writeFile(join(tmp, 'sub', 'b.txt'), 'B');
      return 42;
    });
    expect(r).toBe(42);
    expect(readFileSync(join(dst, 'a.txt'), 'utf8')).toBe('A');
    expect(readFileSync(join(dst, 'sub', 'b.txt'), 'utf8')).toBe('B');
    expect(existsSync(seenTmp)).toBe(false);
    expect(readdirSync(dirname(dst))).toEqual(['out']);
  });

  it('refuses a non-empty destination unless force, and force replaces it whole', async () => {
    const dst = fresh();
    mkdirSync(dst);
    writeFileSync(join(dst, 'stale-shard.safetensors'), 'old');
    expect(await codeOf(writeFolderAtomic(dst, async () => {}))).toBe('DESTINATION_NOT_EMPTY');
    expect(readdirSync(dst)).toEqual(['stale-shard.safetensors']);
    await writeFolderAtomic(dst, async (tmp) => writeFile(join(tmp, 'new.txt'), 'N'), { force: true });
    expect(readdirSync(dst)).toEqual(['new.txt']); // no stale shard of the older checkpoint survives
    expect(readdirSync(dirname(dst)).filter((e) => e.includes('owlet'))).toEqual([]);
    // an empty existing folder is fine without force
    const empty = fresh();
    mkdirSync(empty);
    await writeFolderAtomic(empty, async (tmp) => writeFile(join(tmp, 'x'), 'x'));
    expect(readdirSync(empty)).toEqual(['x']);
    // a file in the way is refused
    const file = fresh();
    writeFileSync(file, 'f');
    expect(await codeOf(writeFolderAtomic(file, async () => {}, { force: true }))).toBe('DESTINATION_NOT_EMPTY');
  });

  it('an error or abort midway leaves the previous folder untouched and no temporary', async () => {
    const dst = fresh();
    await writeFolderAtomic(dst, async (tmp) => writeFile(join(tmp, 'v1'), '1'));
    await expect(
      writeFolderAtomic(
        dst,
        async (tmp) => {
          await writeFile(join(tmp, 'v2'), '2');
          throw new Error('disk full (simulated)');
        },
        { force: true },
      ),
    ).rejects.toThrow('disk full');
    expect(readdirSync(dst)).toEqual(['v1']);
    const ac = new AbortController();
    expect(
      await codeOf(
        writeFolderAtomic(
          dst,
          async (tmp) => {
            await writeFile(join(tmp, 'v3'), '3');
            ac.abort();
          },
          { force: true, signal: ac.signal },
        ),
      ),
    ).toBe('ABORTED');
    expect(readdirSync(dst)).toEqual(['v1']);
    expect(readdirSync(dirname(dst)).filter((e) => e.includes('owlet'))).toEqual([]);
  });

  it('a second concurrent writer to the same folder is refused with DESTINATION_LOCKED', async () => {
    const dst = fresh();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const first = writeFolderAtomic(dst, async (tmp) => {
      await gate;
      await writeFile(join(tmp, 'first'), '1');
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(await codeOf(writeFolderAtomic(dst, async () => {}))).toBe('DESTINATION_LOCKED');
    release();
    await first;
    expect(readdirSync(dst)).toEqual(['first']);
  });

  it('sweeps temporaries and locks of dead writers, and restores a swap cut between its renames', async () => {
    const parent = fresh();
    mkdirSync(parent);
    const dst = join(parent, 'model');
    const dead = deadPid();
    mkdirSync(join(parent, `.model.owlet-tmp-${dead}-abcd1234`));
    writeFileSync(join(parent, `.model.owlet-tmp-${dead}-abcd1234`, 'big.tmp'), 'x'.repeat(1000));
    writeFileSync(join(parent, '.model.owlet-lock'), JSON.stringify({ pid: dead }));
    // the previous folder was moved aside, then the writer died before renaming the new one in
    mkdirSync(join(parent, `.model.owlet-old-${dead}-00ff00ff`));
    writeFileSync(join(parent, `.model.owlet-old-${dead}-00ff00ff`, 'kept'), 'k');
    // a live writer's temporary is left alone
    mkdirSync(join(parent, `.model.owlet-tmp-${process.pid}-11111111`));
    await sweepStaleTemporaries(dst);
    expect(readdirSync(parent).sort()).toEqual([`.model.owlet-tmp-${process.pid}-11111111`, 'model']);
    expect(readdirSync(dst)).toEqual(['kept']);
  });

  it('SIGKILL of a writer midway leaves nothing loadable under the final name; the next writer cleans up', async () => {
    const dst = join(fresh(), 'out');
    const script = `
      import { writeFolderAtomic } from ${JSON.stringify(join(here, 'node-api.ts'))};
      import { writeFile } from 'node:fs/promises';
      await writeFolderAtomic(${JSON.stringify(dst)}, async (tmp) => {
        await writeFile(tmp + '/part', 'p');
        process.stdout.write('building\\n');
        await new Promise(() => {}); // never completes
      });`;
    const scriptPath = join(root, `writer-${n++}.mts`);
    writeFileSync(scriptPath, script);
    // one process (node with tsx's loader), so SIGKILL hits the writer itself
    const child = spawn(process.execPath, ['--import', 'tsx', scriptPath], {
      cwd: join(here, '..'),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((res, rej) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('building') && res());
      child.on('exit', (code) => rej(new Error(`child exited early (${code})`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    expect(existsSync(dst)).toBe(false);
    const leftovers = readdirSync(dirname(dst));
    expect(leftovers.some((e) => e.includes('owlet-tmp'))).toBe(true);
    await writeFolderAtomic(dst, async (tmp) => writeFile(join(tmp, 'done'), 'd'));
    expect(readdirSync(dirname(dst))).toEqual(['out']);
    expect(readdirSync(dst)).toEqual(['done']);
  });
});
