/**
 * `owlet convert` is all-or-nothing under faults (issue 23 item 2, checklist F1–F3): the real
 * command in a child process converting a multi-shard checkpoint is killed with SIGINT and with
 * SIGKILL at several points; after each kill nothing partial is loadable under the final name (the
 * previous conversion still loads, whole), and a rerun succeeds and sweeps what the killed one
 * left. A full disk (a tiny tmpfs when this runs as root, else an injected ENOSPC) leaves the
 * previous conversion intact; two concurrent converts into one folder: one gets
 * DESTINATION_LOCKED; the child's RSS stays under twice the largest shard above its baseline.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { openCheckpoint } from '@owlet/checkpoint';
import { REPO_ROOT, mulberry32 } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The byte-level builders of the checkpoint package's tests (torch.save zip + state-dict pickle).
import { PickleWriter, buildTorchFile } from '../../../packages/checkpoint/test/support.js';

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(here, 'main.ts');
const SHARDS = 6;
const FLOATS = 1 << 19; // 2 MiB of f32 per shard's big tensor

const tmp = mkdtempSync(join(tmpdir(), 'owlet-kill-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A `SHARDS`-shard .bin checkpoint whose values are drawn from `seed`. */
function makeBinCheckpoint(dir: string, seed: number, floats = FLOATS): void {
  mkdirSync(dir, { recursive: true });
  const rand = mulberry32(seed);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 1; s <= SHARDS; s++) {
    const file = `pytorch_model-0000${s}-of-0000${SHARDS}.bin`;
    const big = new Float32Array(floats).map(() => rand());
    const small = new Float32Array(16).map(() => rand());
    const w = new PickleWriter().proto().op('}').op('(');
    w.str(`layers.${s}.big`).tensor('FloatStorage', '0', floats, 0, [floats / 512, 512], [512, 1]);
    w.str(`layers.${s}.small`).tensor('FloatStorage', '1', 16, 0, [16], [1]);
    w.op('u').op('.');
    const bytes = buildTorchFile(w.build(), {
      '0': new Uint8Array(big.buffer),
      '1': new Uint8Array(small.buffer),
    });
    writeFileSync(join(dir, file), bytes);
    weightMap[`layers.${s}.big`] = file;
    weightMap[`layers.${s}.small`] = file;
    total += big.byteLength + small.byteLength;
  }
  writeFileSync(
    join(dir, 'pytorch_model.bin.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }),
  );
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ seed }));
}

/** Every tensor's bytes of a converted folder, or the error loading it. */
async function load(dir: string): Promise<Map<string, Buffer>> {
  const c = await openCheckpoint(dir);
  const out = new Map<string, Buffer>();
  for await (const [e, raw] of c.raw()) out.set(e.key, Buffer.from(raw));
  await c.close();
  return out;
}

function sameTensors(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (!b.get(k)?.equals(v)) return false;
  return true;
}

interface Child {
  proc: ChildProcess;
  stderr: string;
  lines: number;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** The real CLI in ONE process (node + tsx's loader, no wrapper), so a signal reaches the converter itself. */
function convert(args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, 'convert', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, OWLET_DEBUG: '', TSX_TSCONFIG_PATH: resolve(REPO_ROOT, 'tsconfig.base.json'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const c = { proc, stderr: '', lines: 0 } as Child;
  let stdout = '';
  proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => {
    c.stderr += d.toString();
    c.lines = c.stderr.split('\n').length - 1;
  });
  c.done = new Promise((r) => proc.on('close', (code, signal) => r({ code, signal, stdout, stderr: c.stderr })));
  return c;
}

/** Resolves when the child has printed `n` progress lines (or has exited); bounded by the child's life. */
async function afterLines(c: Child, n: number): Promise<void> {
  let exited = false;
  void c.done.then(() => (exited = true));
  while (!exited && c.lines < n) await new Promise((r) => setTimeout(r, 5));
}

/** Names beside `dst` that a writer leaves while it works (temporary folder, lock, old folder). */
const leftovers = (dst: string) =>
  readdirSync(dirname(dst)).filter((f) => f.startsWith(`.${dst.split('/').pop()}.owlet-`));

const srcA = join(tmp, 'a');
const srcB = join(tmp, 'b');
let tensorsA: Map<string, Buffer>;
let tensorsB: Map<string, Buffer>;

beforeAll(async () => {
  makeBinCheckpoint(srcA, 1);
  makeBinCheckpoint(srcB, 2);
  tensorsA = await load(srcA);
  tensorsB = await load(srcB);
  expect(sameTensors(tensorsA, tensorsB)).toBe(false);
}, 120_000);

describe('owlet convert killed at several points', () => {
  // progress lines of a non-TTY convert: "loading <file>" / "loaded <file> in …" per shard
  const POINTS = [1, 3, 6, 9, 12];
  for (const signal of ['SIGINT', 'SIGKILL'] as const) {
    it(`F1/F3: ${signal} at ${POINTS.length} points: the previous conversion stays whole, a rerun succeeds`, async () => {
      const dst = join(tmp, `dst-${signal}`);
      const first = await convert([srcA, dst]).done;
      expect(first.code, first.stderr).toBe(0);
      expect(sameTensors(await load(dst), tensorsA)).toBe(true);
      const outcomes: string[] = [];
      let leftBehind = 0;
      for (const point of POINTS) {
        const c = convert([srcB, dst, '--force']);
        await afterLines(c, point);
        c.proc.kill(signal);
        const r = await c.done;
        // Whatever point the kill reached: dst is A whole, or (the kill came after the rename) B whole.
        const now = await load(dst);
        const isA = sameTensors(now, tensorsA);
        const isB = sameTensors(now, tensorsB);
        expect(isA || isB, `after ${signal} at line ${point}: a mixed or partial checkpoint`).toBe(true);
        expect(JSON.parse(readFileSync(join(dst, 'config.json'), 'utf8')).seed).toBe(isA ? 1 : 2);
        if (signal === 'SIGINT' && r.code !== 0) {
          expect(r.code).toBe(130);
          expect(leftovers(dst)).toEqual([]); // an interrupted convert cleans up after itself
        }
        // A SIGKILL mid-write leaves its temporary folder (and lock): the next writer sweeps them.
        leftBehind += leftovers(dst).length;
        outcomes.push(`${point}:${r.code ?? r.signal}:${isA ? 'A' : 'B'}`);
        if (isB) {
          // put A back for the next point
          const back = await convert([srcA, dst, '--force']).done;
          expect(back.code, back.stderr).toBe(0);
        }
      }
      console.log(`[convert-kill] ${signal}: ${outcomes.join(' ')}; ${leftBehind} temporaries left by the kills`);
      if (signal === 'SIGKILL') expect(leftBehind).toBeGreaterThan(0); // the sweep below is exercised
      expect(outcomes.filter((o) => o.endsWith(':A')).length).toBeGreaterThan(0);
      // A rerun succeeds, and sweeps what killed runs left (temporaries, stale lock).
      const rerun = await convert([srcB, dst, '--force']).done;
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(sameTensors(await load(dst), tensorsB)).toBe(true);
      expect(leftovers(dst)).toEqual([]);
      expect(readdirSync(dst).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    }, 600_000);
  }
});

describe('owlet convert under a full disk, and twice at once', () => {
  it('F2: ENOSPC during the write: a typed one-line error, the previous conversion intact, nothing left', async () => {
    const runs: string[] = [];
    // (1) a real full disk: a tmpfs just big enough for A and half of B (needs root)
    const mnt = join(tmp, 'tiny-disk');
    mkdirSync(mnt);
    let mounted = false;
    try {
      execFileSync(
        'mount',
        ['-t', 'tmpfs', '-o', `size=${Math.ceil(SHARDS * 4 * FLOATS * 1.5 + (1 << 20))}`, 'tmpfs', mnt],
        {
          stdio: 'ignore',
        },
      );
      mounted = true;
    } catch {
      // not root, or no tmpfs here: the injected fault below covers the same path
    }
    const cases: { dst: string; env: Record<string, string>; name: string }[] = [];
    if (mounted) cases.push({ name: 'tmpfs', dst: join(mnt, 'model'), env: {} });
    const injected = join(tmp, 'injected', 'model');
    cases.push({
      name: 'injected',
      dst: injected,
      env: {
        NODE_OPTIONS: `--require ${resolve(here, '../test/enospc.cjs')}`,
        OWLET_TEST_ENOSPC_DIR: dirname(injected),
        OWLET_TEST_ENOSPC_AFTER: String(3 * 4 * FLOATS),
      },
    });
    try {
      for (const c of cases) {
        const first = await convert([srcA, c.dst]).done;
        expect(first.code, first.stderr).toBe(0);
        const full = await convert([srcB, c.dst, '--force'], c.env).done;
        expect(full.code, full.stderr).toBe(2);
        expect(full.stderr).toMatch(/ENOSPC|no space/i);
        expect(
          full.stderr
            .trim()
            .split('\n')
            .filter((l) => l.startsWith('owlet: error')),
        ).toHaveLength(1);
        expect(sameTensors(await load(c.dst), tensorsA)).toBe(true);
        expect(leftovers(c.dst)).toEqual([]);
        runs.push(c.name);
      }
    } finally {
      if (mounted) execFileSync('umount', [mnt]);
    }
    console.log(`[convert-kill] ENOSPC checked with: ${runs.join(', ')}`);
  }, 600_000);

  it('two concurrent converts into one folder: one gets DESTINATION_LOCKED, the other completes', async () => {
    const dst = join(tmp, 'concurrent');
    const lock = join(tmp, '.concurrent.owlet-lock');
    const a = convert([srcA, dst]);
    // hold the first one while it owns the lock (SIGSTOP), so the two overlap for certain
    let exited = false;
    void a.done.then(() => (exited = true));
    while (!exited && !existsSync(lock)) await new Promise((r) => setTimeout(r, 2));
    expect(exited, a.stderr).toBe(false);
    a.proc.kill('SIGSTOP');
    try {
      const b = await convert([srcB, dst]).done;
      expect(b.code).toBe(2);
      expect(b.stderr).toMatch(/is being written by another process/);
    } finally {
      a.proc.kill('SIGCONT');
    }
    const ra = await a.done;
    expect(ra.code, ra.stderr).toBe(0);
    expect(sameTensors(await load(dst), tensorsA)).toBe(true);
  }, 300_000);
});

describe('owlet convert memory', () => {
  it('RSS above the baseline stays under twice the largest shard', async () => {
    const big = join(tmp, 'big');
    const floats = 1 << 23; // 32 MiB per shard's big tensor
    makeBinCheckpoint(big, 3, floats);
    const small = join(tmp, 'small');
    makeBinCheckpoint(small, 4, 1024);
    const probe = resolve(here, '../test/rss-probe.cjs');
    const peak = async (src: string, dst: string) => {
      const out = join(tmp, `rss-${dst.split('/').pop()}.json`);
      const r = await convert([src, dst], { NODE_OPTIONS: `--require ${probe}`, OWLET_TEST_RSS_OUT: out }).done;
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(readFileSync(out, 'utf8')) as { peak: number }).peak;
    };
    const base = await peak(small, join(tmp, 'rss-small'));
    const top = await peak(big, join(tmp, 'rss-big'));
    const largestShard = Math.max(
      ...readdirSync(big)
        .filter((f) => f.endsWith('.bin'))
        .map((f) => statSync(join(big, f)).size),
    );
    console.log(
      `[convert-kill] RSS: baseline ${(base / 2 ** 20).toFixed(0)} MiB, with ${SHARDS}×${(largestShard / 2 ** 20).toFixed(0)} MiB shards ${(top / 2 ** 20).toFixed(0)} MiB`,
    );
    expect(top - base).toBeLessThan(2 * largestShard);
    // the 32 MiB tensors went through in 8 MiB pieces: the output equals the input
    expect(sameTensors(await load(join(tmp, 'rss-big')), await load(big))).toBe(true);
  }, 600_000);
});
