/**
 * `owlet train` as a subprocess: metrics as JSON lines, checkpoints, the exported model answering
 * through `owlet run`, Ctrl-C writing a checkpoint and exiting 130, --resume, and bad input.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { REPO_ROOT } from '@owlet/test-utils';
import { afterAll, describe, expect, it } from 'vitest';

/** Each case starts the CLI (tfjs, a model) and trains: minutes on a loaded 2-core machine. */
const SLOW_TIMEOUT = 600_000;

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(here, 'main.ts');
const TSCONFIG = resolve(REPO_ROOT, 'tsconfig.base.json');
const tmp = mkdtempSync(join(tmpdir(), 'owlet-cli-train-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI from source in ONE process (`node --import tsx/esm`): the tsx runner's parent process
 * would relay a SIGINT and kill the child unless it acknowledges within 30 ms, which a process in
 * the middle of a training step cannot — the published binary (plain node) has no such parent.
 */
function owlet(args: string[], onStdout?: (text: string, child: ChildProcess) => void): Promise<Result> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx/esm', MAIN, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, OWLET_DEBUG: '', TSX_TSCONFIG_PATH: TSCONFIG },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`owlet ${args.join(' ')} timed out\n${stderr}`));
    }, 240_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

const lines = (s: string) =>
  s
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);

writeFileSync(
  join(tmp, 'images.json'),
  JSON.stringify([
    {
      id: 1,
      image: 'owl.png',
      conversations: [
        { from: 'human', value: '<|image|>\nWhat bird is this?' },
        { from: 'gpt', value: 'An owl.' },
      ],
    },
  ]),
);
copyFileSync(resolve(here, '..', 'assets', 'owl.png'), join(tmp, 'owl.png'));
writeFileSync(
  join(tmp, 'text.json'),
  JSON.stringify(
    Array.from({ length: 8 }, (_, i) => ({
      conversations: [
        { from: 'human', value: `Count to ${i + 1}.` },
        { from: 'gpt', value: Array.from({ length: i + 1 }, (_, k) => k + 1).join(' ') },
      ],
    })),
  ),
);

describe('owlet train', () => {
  it(
    'trains with images, prints JSON metric lines, checkpoints, and exports a model owlet run loads',
    async () => {
      const out = join(tmp, 'out-images');
      const r = await owlet([
        'train',
        '--recipe',
        'mplug_owl2_stage1',
        '--data',
        join(tmp, 'images.json'),
        '--out',
        out,
        '--steps',
        '2',
        '--logging-steps',
        '1',
        '--save-steps',
        '1',
        '--quiet',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const ls = lines(r.stdout);
      expect(ls.slice(0, 2).map((l) => l.step)).toEqual([1, 2]);
      for (const l of ls.slice(0, 2))
        for (const k of ['loss', 'learning_rate', 'grad_norm', 'tokens_per_s']) expect(typeof l[k]).toBe('number');
      expect(ls[2]).toMatchObject({ done: true, global_step: 2 });
      expect(
        readdirSync(out)
          .filter((n) => n.startsWith('checkpoint-'))
          .sort(),
      ).toEqual(['checkpoint-1', 'checkpoint-2']);
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.model', 'preprocessor_config.json'])
        expect(existsSync(join(out, f)), f).toBe(true);
      const run = await owlet([
        'run',
        '--model',
        out,
        '--image',
        join(tmp, 'owl.png'),
        '--prompt',
        'What?',
        '--max-new-tokens',
        '2',
        '--quiet',
        '--json',
      ]);
      expect(run.code, run.stderr).toBe(0);
    },
    SLOW_TIMEOUT,
  );

  it(
    'Ctrl-C writes a checkpoint and exits 130; --resume continues from it',
    async () => {
      const out = join(tmp, 'out-sigint');
      const args = [
        'train',
        '--recipe',
        'mplug_owl2_stage2',
        '--data',
        join(tmp, 'text.json'),
        '--out',
        out,
        '--batch-size',
        '2',
        '--logging-steps',
        '1',
        '--save-steps',
        '0',
        '--quiet',
      ];
      let sent = false;
      const r = await owlet([...args, '--steps', '500'], (s, child) => {
        if (!sent && s.includes('"step":2')) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      expect(r.code, r.stderr).toBe(130);
      const ckpts = readdirSync(out).filter((n) => /^checkpoint-\d+$/.test(n));
      expect(ckpts.length).toBe(1);
      const step = Number(ckpts[0]?.split('-')[1]);
      expect(step).toBeGreaterThanOrEqual(2);
      const resumed = await owlet([...args, '--steps', String(step + 1), '--resume']);
      expect(resumed.code, resumed.stderr).toBe(0);
      const ls = lines(resumed.stdout);
      expect(ls[0]?.step).toBe(step + 1);
      expect(ls.at(-1)).toMatchObject({ done: true, global_step: step + 1 });
    },
    SLOW_TIMEOUT,
  );

  it(
    'bad input: one line with the fix, exit 2',
    async () => {
      for (const [args, pattern] of [
        [
          ['train', '--recipe', 'nope', '--data', join(tmp, 'text.json'), '--out', join(tmp, 'x')],
          /unknown recipe "nope"/,
        ],
        [
          ['train', '--recipe', 'mplug_owl2_stage2', '--data', join(tmp, 'missing.json'), '--out', join(tmp, 'x')],
          /data file not found/,
        ],
        [
          [
            'train',
            '--recipe',
            'mplug_owl2_stage2',
            '--data',
            join(tmp, 'text.json'),
            '--out',
            join(tmp, 'empty'),
            '--resume',
            '--quiet',
          ],
          /No valid checkpoint found/,
        ],
        [
          [
            'train',
            '--recipe',
            'mplug_owl_stage2',
            '--data',
            join(tmp, 'text.json'),
            '--out',
            join(tmp, 'x'),
            '--quiet',
          ],
          /recipe mplug_owl_stage2 is for mplug-owl models/,
        ],
      ] as const) {
        const r = await owlet([...args]);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(pattern);
      }
    },
    SLOW_TIMEOUT,
  );
});
