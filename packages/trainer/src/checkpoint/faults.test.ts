/**
 * Faults survived by checkpoints (reliability checklist F1, F2, F4): a writer killed with SIGKILL at
 * many byte offsets and at the renames, and a disk that fills up. After each, the previous
 * checkpoint loads and validates, no partial folder carries a final name, and the next start
 * sweeps what the dead writer left.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { isOwletError } from '@owlet/core';
import { REPO_ROOT, useBackend } from '@owlet/test-utils';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Trainer, inMemoryDataset, listCheckpoints } from '../index.js';
import { colourDataset, tinyOwl2 } from '../testing.testutil.js';
import { NODE_FS, checkCompleteFolder, sweepStaleTemps, type CheckpointFs } from './atomic-folder.js';

const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'owlet-faults-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const options = (dir: string) => ({
  recipe: 'mplug_owl2_stage1' as const,
  learning_rate: 1e-2,
  max_steps: 10,
  save_steps: 5,
  per_device_train_batch_size: 4,
  output_dir: dir,
  max_shard_size: 20_000,
});

let child = '';
let base = '';
let next = '';
let totalBytes = 0;

beforeAll(async () => {
  await useBackend('cpu');
  // Real checkpoints: checkpoint-5 (the one that must survive) and the bytes of checkpoint-10.
  const dir = join(tmp, 'source');
  const model = tinyOwl2(9);
  const t = new Trainer(model, options(dir));
  await t.train(inMemoryDataset(colourDataset(32, 3)));
  t.dispose();
  model.dispose();
  base = join(dir, 'checkpoint-5');
  next = join(dir, 'checkpoint-10');
  totalBytes = readdirSync(next)
    .filter((f) => f !== 'checkpoint_complete.json')
    .reduce((a, f) => a + statSync(join(next, f)).size, 0);
  // The child is the real writer (with @owlet/checkpoint) bundled with a stand-in for @owlet/core's
  // OwletError (so no tfjs backend loads), so it starts in milliseconds.
  const shim = join(tmp, 'core-shim.mjs');
  writeFileSync(
    shim,
    'export class OwletError extends Error { constructor(code, message, o = {}) { super(message); this.code = code; this.details = o.details ?? {}; } }\n',
  );
  child = join(tmp, 'fault-child.mjs');
  await build({
    entryPoints: [join(here, 'fault-child.testutil.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile: child,
    alias: {
      '@owlet/core': shim,
      '@owlet/checkpoint': join(REPO_ROOT, 'packages/checkpoint/src/index.ts'),
      '@owlet/errors': join(REPO_ROOT, 'packages/errors/src/index.ts'),
    },
    // bundled CommonJS dependencies (tfjs-core) call require() for Node built-ins
    banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
    logLevel: 'silent',
  });
});

/** Two dozen child processes and trainer loads: minutes on a loaded 2-core machine. */
const SLOW_TIMEOUT = 600_000;

function runChild(
  dest: string,
  kill: string,
): { signal: NodeJS.Signals | null; status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [child, next, dest, kill], { encoding: 'utf8', timeout: 30_000 });
  return { signal: r.signal, status: r.status, stderr: r.stderr };
}

async function survives(dir: string, newOk: boolean): Promise<void> {
  for (const name of readdirSync(dir)) {
    if (!/^checkpoint-\d+$/.test(name)) continue;
    // a folder under a final name is always complete
    expect((await checkCompleteFolder(join(dir, name), { verifyHashes: true })).ok, name).toBe(true);
  }
  const swept = await sweepStaleTemps(dir);
  expect(
    readdirSync(dir).filter((n) => n.startsWith('.')),
    `left after the sweep: ${JSON.stringify(swept)}`,
  ).toEqual([]);
  const steps = (await listCheckpoints(dir)).map((c) => c.step);
  expect(steps[0]).toBe(5);
  if (!newOk) expect(steps).toEqual([5]);
  // the previous checkpoint loads into a trainer
  const model = tinyOwl2(9);
  const t = new Trainer(model, options(dir));
  await t.loadCheckpoint(join(dir, 'checkpoint-5'));
  expect(t.state.global_step).toBe(5);
  t.dispose();
  model.dispose();
}

describe('checkpoint faults [cpu]', () => {
  it(
    'F1: SIGKILL at 24 byte offsets while writing checkpoint-10 (marker included): checkpoint-5 survives, leftovers are swept',
    async () => {
      const markerBytes = 2000; // a little over the marker's size: the last offsets fall inside it
      let s = 12345;
      const offsets = Array.from({ length: 24 }, (_, i) => {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        return i === 0 ? 0 : i === 1 ? totalBytes - 1 : i === 2 ? totalBytes + 50 : s % (totalBytes + markerBytes);
      });
      for (const [i, off] of offsets.entries()) {
        const dir = join(tmp, `kill-${i}`);
        mkdirSync(dir, { recursive: true });
        cpSync(base, join(dir, 'checkpoint-5'), { recursive: true });
        const r = runChild(join(dir, 'checkpoint-10'), `bytes:${off}`);
        if (r.status === 0) {
          // the offset fell after the whole folder: it must be complete
          expect(off).toBeGreaterThan(totalBytes);
          await survives(dir, true);
          continue;
        }
        expect(r.signal, `kill at byte ${off}: ${r.stderr}`).toBe('SIGKILL');
        expect(existsSync(join(dir, 'checkpoint-10'))).toBe(false);
        expect(readdirSync(dir).some((n) => n.startsWith('.checkpoint-10.owlet-tmp-'))).toBe(true);
        await survives(dir, false);
      }
    },
    SLOW_TIMEOUT,
  );

  it(
    'F1/F4: a replacement cut between moving the old folder aside and renaming the new one in is restored',
    async () => {
      // A dead writer's state: checkpoint-10 moved aside, the new one never renamed in.
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
        encoding: 'utf8',
      });
      const pid = Number(dead.stdout);
      const d = join(tmp, 'cut-swap');
      mkdirSync(d, { recursive: true });
      cpSync(base, join(d, 'checkpoint-5'), { recursive: true });
      cpSync(next, join(d, `.checkpoint-10.owlet-old-${pid}-0badf00d`), { recursive: true });
      cpSync(next, join(d, `.checkpoint-10.owlet-tmp-${pid}-0badf00e`), { recursive: true });
      expect(await sweepStaleTemps(d)).toEqual(['checkpoint-10']);
      await survives(d, true);
      expect((await listCheckpoints(d)).map((c) => c.step)).toEqual([5, 10]);
      // and a writer that is not killed finishes, replacing an existing folder: both checkpoints valid
      const d3 = join(tmp, 'no-kill');
      mkdirSync(d3, { recursive: true });
      cpSync(base, join(d3, 'checkpoint-5'), { recursive: true });
      cpSync(base, join(d3, 'checkpoint-10'), { recursive: true }); // an older folder under that name
      expect(runChild(join(d3, 'checkpoint-10'), 'none').status).toBe(0);
      await survives(d3, true);
      expect((await listCheckpoints(d3)).map((c) => c.step)).toEqual([5, 10]);
    },
    SLOW_TIMEOUT,
  );

  it('F2: ENOSPC in the middle of a checkpoint fails loudly and leaves the previous one intact', async () => {
    const dir = join(tmp, 'enospc');
    mkdirSync(dir, { recursive: true });
    cpSync(base, join(dir, 'checkpoint-5'), { recursive: true });
    let budget = Math.floor(totalBytes / 2);
    const full: CheckpointFs = {
      ...NODE_FS,
      async open(path, flags) {
        const h = await NODE_FS.open(path, flags);
        return {
          async write(buf, off, len, pos) {
            if (len > budget) {
              const e = new Error('ENOSPC: no space left on device, write') as NodeJS.ErrnoException;
              e.code = 'ENOSPC';
              throw e;
            }
            budget -= len;
            return h.write(buf, off, len, pos);
          },
          sync: () => h.sync(),
          close: () => h.close(),
        };
      },
    };
    const model = tinyOwl2(9);
    const t = new Trainer(model, { ...options(dir), checkpoint_fs: full });
    await t.loadCheckpoint(join(dir, 'checkpoint-5'));
    t.state.global_step = 10;
    let err: unknown;
    try {
      await t.saveCheckpoint();
    } catch (e) {
      err = e;
    }
    expect(isOwletError(err, 'CHECKPOINT_IO')).toBe(true);
    expect((err as Error).message).toContain('ENOSPC');
    expect(readdirSync(dir)).toEqual(['checkpoint-5']); // no final name, and the temp folder was removed
    t.dispose();
    model.dispose();
    await survives(dir, false);
  });
});
