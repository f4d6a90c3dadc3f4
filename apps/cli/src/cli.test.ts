/**
 * The real `owlet` binary as a subprocess (run from source through tsx, as `pnpm owlet` does):
 * run on the bundled model, chat driven through stdin, convert on the fixture .bin shards, bench
 * --json, and every bad-input path with its exit code and one-line message.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { fixturePath, loadFixture, REPO_ROOT } from '@owlet/test-utils';
import { readSafetensors } from '@owlet/checkpoint';
import { afterAll, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(here, 'main.ts');
const TSX = resolve(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const TSCONFIG = resolve(REPO_ROOT, 'tsconfig.base.json');
const IMAGE = resolve(here, '..', 'assets', 'owl.png');
const DEFAULT_MODEL = resolve(here, '..', 'models', 'owlet-tiny-random');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function owlet(args: string[], options: { stdin?: string; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(TSX, ['--tsconfig', TSCONFIG, MAIN, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, OWLET_DEBUG: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`owlet ${args.join(' ')} timed out\n${stderr}`));
    }, options.timeoutMs ?? 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    if (options.stdin !== undefined) child.stdin.end(options.stdin);
    else child.stdin.end();
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'owlet-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('owlet run', () => {
  it('answers on the bundled model, says the weights are random, exits 0', async () => {
    const r = await owlet([
      'run',
      '--image',
      IMAGE,
      '--prompt',
      'What is in the picture?',
      '--max-new-tokens',
      '6',
      '--backend',
      'wasm',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/default model has random weights/);
    expect(r.stderr).toMatch(/^backend: wasm$/m);
  });

  it('--json prints one object with the answer and usage; greedy output is reproducible', async () => {
    const args = [
      'run',
      '--image',
      IMAGE,
      '--image',
      fixturePath('preprocess/images/rgb_17x5.png'),
      '--prompt',
      'Compare them.',
      '--max-new-tokens',
      '5',
      '--json',
      '--quiet',
      '--backend',
      'wasm',
    ];
    const [a, b] = [await owlet(args), await owlet(args)];
    expect(a.code, a.stderr).toBe(0);
    const ja = JSON.parse(a.stdout);
    const jb = JSON.parse(b.stdout);
    expect(ja).toMatchObject({
      model_type: 'mplug_owl2',
      random_weights: true,
      backend: 'wasm',
      finish_reason: 'length',
    });
    expect(ja.usage.completion_tokens).toBe(5);
    expect(ja.usage.prompt_tokens).toBeGreaterThan(2 * 9);
    expect(ja.answer).toBe(jb.answer);
    expect(a.stderr).toBe('');
  });
});

describe('owlet chat', () => {
  it('holds a conversation from stdin with an attached image, reusing the KV cache', async () => {
    const r = await owlet(['chat', '--max-new-tokens', '4', '--backend', 'wasm'], {
      stdin: `/image ${IMAGE}\nWhat bird is this?\nWhere does it sit?\n/exit\n`,
    });
    expect(r.code, r.stderr).toBe(0);
    const answers = r.stdout.split('\n').filter((l) => l.trim().length > 0);
    expect(answers).toHaveLength(2);
    expect(r.stderr).toMatch(/image attached/);
  });

  it('reports a bad /image without quitting', async () => {
    const r = await owlet(['chat', '--max-new-tokens', '2', '--backend', 'wasm'], {
      stdin: '/image /nonexistent.png\nhello\n',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/error: image not found: \/nonexistent\.png/);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
  });
});

describe('owlet convert', () => {
  it('converts the fixture .bin shards; the output loads and equals the input', async () => {
    const src = join(tmp, 'bin');
    cpSync(fixturePath('torch_bin/owl2_tiny_f32'), src, { recursive: true });
    copyFileSync(fixturePath('owl2_tiny/config.json'), join(src, 'config.json'));
    const dst = join(tmp, 'st');
    const r = await owlet(['convert', src, dst, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.files).toHaveLength(3);
    expect(out.copied).toContain('config.json');
    const index = JSON.parse(readFileSync(join(dst, 'model.safetensors.index.json'), 'utf8')) as {
      weight_map: Record<string, string>;
    };
    const expected = loadFixture('owl2_tiny/model.safetensors');
    const shards = new Map<string, ReturnType<typeof readSafetensors>>();
    for (const key of expected.keys()) {
      const file = index.weight_map[key]!;
      if (!shards.has(file)) shards.set(file, readSafetensors(readFileSync(join(dst, file))));
      expect(
        Buffer.from(shards.get(file)!.array(key).buffer).equals(Buffer.from(expected.array(key).buffer)),
        key,
      ).toBe(true);
    }
  });
});

describe('owlet bench', () => {
  it('--json reports every figure and writes the file', async () => {
    const out = join(tmp, 'bench.json');
    const r = await owlet([
      'bench',
      '--json',
      '--runs',
      '1',
      '--prompt-tokens',
      '8',
      '--new-tokens',
      '2',
      '--backend',
      'wasm',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    for (const k of [
      'load_ms',
      'preprocess_ms_per_image',
      'vision_abstractor_ms_per_image',
      'prefill_tokens_per_s',
      'decode_tokens_per_s',
      'peak_rss_mb',
    ]) {
      expect(j[k], k).toBeGreaterThan(0);
    }
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(j);
  });
});

describe('bad input: one line with the fix, exit 2, no stack trace', () => {
  const cases: [string, string[], RegExp][] = [
    ['missing image file', ['run', '--image', '/no/such.png', '--prompt', 'x'], /image not found: \/no\/such\.png/],
    ['missing prompt', ['run', '--image', IMAGE], /--prompt is required/],
    ['unknown backend', ['run', '--image', IMAGE, '--prompt', 'x', '--backend', 'cuda'], /unknown backend "cuda"/],
    ['unknown command', ['fly'], /unknown command "fly"/],
    ['unknown flag', ['run', '--imagee', IMAGE], /Unknown option '--imagee'/],
    [
      'bad number',
      ['run', '--image', IMAGE, '--prompt', 'x', '--max-new-tokens=-3'],
      /--max-new-tokens must be an integer/,
    ],
    [
      'missing model folder',
      ['run', '--image', IMAGE, '--prompt', 'x', '--model', '/no/model'],
      /model folder not found/,
    ],
  ];
  for (const [name, args, message] of cases) {
    it(name, async () => {
      const r = await owlet(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }

  it('an image that is not an image', async () => {
    const bad = join(tmp, 'not-an-image.png');
    writeFileSync(bad, 'this is text, not a PNG');
    const r = await owlet(['run', '--image', bad, '--prompt', 'x', '--backend', 'wasm', '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^owlet: error: .*(decode|image)/i);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a checkpoint with a missing key names it', async () => {
    const dir = join(tmp, 'broken-model');
    cpSync(DEFAULT_MODEL, dir, { recursive: true });
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as {
      weight_map: Record<string, string>;
    };
    // Drop one tensor from the index and its shard: rewrite the small layer shard without it.
    const shardName = 'model-00001-of-00002.safetensors';
    const shard = readSafetensors(readFileSync(join(dir, shardName)));
    const dropped = shard.keys().find((k) => k.endsWith('mlp.up_proj.weight'))!;
    const { writeSafetensors } = await import('@owlet/checkpoint');
    const kept = shard.keys().filter((k) => k !== dropped);
    writeFileSync(
      join(dir, shardName),
      writeSafetensors(
        new Map(
          kept.map((k) => [k, { dtype: shard.info(k).dtype, shape: shard.info(k).shape, bytes: shard.rawBytes(k) }]),
        ),
      ),
    );
    delete index.weight_map[dropped];
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: index.weight_map }),
    );
    const r = await owlet(['run', '--image', IMAGE, '--prompt', 'x', '--model', dir, '--backend', 'wasm', '--quiet']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(dropped);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
