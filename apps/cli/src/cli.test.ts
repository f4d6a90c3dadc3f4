/**
 * The real `owlet` binary as a subprocess (run from source through tsx, as `pnpm owlet` does):
 * run on the bundled model, chat driven through stdin, convert on the fixture .bin shards, bench
 * --json, and every bad-input path with its exit code and one-line message.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
    ['unknown flag', ['run', '--imagee', IMAGE], /unknown option --imagee/],
    [
      'bad number',
      ['run', '--image', IMAGE, '--prompt', 'x', '--max-new-tokens=-3'],
      /--max-new-tokens must be a whole number ≥ 1/,
    ],
    [
      'missing model folder',
      ['run', '--image', IMAGE, '--prompt', 'x', '--model', '/no/model'],
      /model folder not found/,
    ],
    // issue 13 / 23: strict flags
    [
      '--max-new-tokens -1 says what a valid value is (not "argument is ambiguous")',
      ['run', '--image', IMAGE, '--prompt', 'x', '--max-new-tokens', '-1'],
      /^owlet: error: --max-new-tokens must be a whole number ≥ 1 written in decimal digits, got "-1"/,
    ],
    ['hex is not a number', ['run', '--image', IMAGE, '--prompt', 'x', '--max-new-tokens', '0x10'], /got "0x10"/],
    ['a padded number', ['run', '--image', IMAGE, '--prompt', 'x', '--max-new-tokens', ' 5'], /got " 5"/],
    [
      '5.0 for an integer flag',
      ['run', '--image', IMAGE, '--prompt', 'x', '--seed', '5.0'],
      /--seed must be a whole number/,
    ],
    [
      'a negative temperature',
      ['run', '--image', IMAGE, '--prompt', 'x', '--temperature', '-1'],
      /--temperature must be a number ≥ 0/,
    ],
    [
      'a repeated single-valued flag',
      ['run', '--image', IMAGE, '--prompt', 'a', '--prompt', 'b'],
      /--prompt was given more than once; give it once/,
    ],
    ['a value for a boolean flag', ['run', '--image', IMAGE, '--prompt', 'x', '--json=no'], /--json takes no value/],
    ['a stray argument', ['run', 'extra', '--prompt', 'x'], /unexpected argument "extra"/],
  ];
  for (const [name, args, message] of cases) {
    it.concurrent(name, async () => {
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

/** A copy of the bundled model with some files replaced. */
function modelWith(name: string, files: Record<string, string>): string {
  const dir = join(tmp, name);
  cpSync(DEFAULT_MODEL, dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return dir;
}

function oneLine(r: Result): void {
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('issue 13: bad input in the CLI', () => {
  it('--max-new-tokens 1000000000000 stops at the context window with finish reason length', async () => {
    const window = 64;
    const config = JSON.parse(readFileSync(join(DEFAULT_MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
    const dir = modelWith('window64', {
      'config.json': JSON.stringify({ ...config, max_position_embeddings: window }),
    });
    const r = await owlet([
      'run',
      '--model',
      dir,
      '--image',
      IMAGE,
      '--prompt',
      'What is in the picture?',
      '--max-new-tokens',
      '1000000000000',
      '--json',
      '--quiet',
      '--backend',
      'wasm',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    // greedy on fixed random weights: reproducible, and it does not hit EOS before the window
    expect(j.finish_reason).toBe('length');
    expect(j.usage.prompt_tokens + j.usage.completion_tokens).toBe(window);
    // a prompt that does not fit the window: exit 2, one line naming prompt length and window
    const long = await owlet([
      'run',
      '--model',
      dir,
      '--image',
      IMAGE,
      '--prompt',
      'describe the owl '.repeat(100),
      '--backend',
      'wasm',
      '--quiet',
    ]);
    expect(long.code).toBe(2);
    expect(long.stderr).toMatch(/the prompt is \d+ tokens; the context window is 64 tokens/);
    oneLine(long);
  });

  it('an image that cannot be decoded is reported before the model loads', async () => {
    const bad = join(tmp, 'svg-as-png.png');
    writeFileSync(bad, '<svg xmlns="http://www.w3.org/2000/svg" width="8000" height="8000"/>');
    // A model folder whose weights would fail to load: the image error must come first.
    const r = await owlet([
      'run',
      '--image',
      bad,
      '--prompt',
      'x',
      '--model',
      join(tmp, 'no-weights'),
      '--backend',
      'wasm',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/SVG images are not supported/);
    expect(r.stderr).not.toMatch(/model folder|loading/);
    oneLine(r);
  });

  it('a FIFO given as --image is refused at once', async () => {
    const fifo = join(tmp, 'fifo.png');
    execFileSync('mkfifo', [fifo]);
    const r = await owlet(['run', '--image', fifo, '--prompt', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/must be a regular file/);
  });

  it('convert into a non-empty folder is refused unless --force, and never leaves a mixed checkpoint', async () => {
    const src = join(tmp, 'bin-force');
    cpSync(fixturePath('torch_bin/owl2_tiny_f32'), src, { recursive: true });
    copyFileSync(fixturePath('owl2_tiny/config.json'), join(src, 'config.json'));
    const dst = join(tmp, 'st-force');
    // an older conversion with one more shard than this one
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dst);
    writeFileSync(join(dst, 'model-4-of-4.safetensors'), 'old shard');
    writeFileSync(join(dst, 'model.safetensors.index.json'), '{"weight_map":{}}');
    const refused = await owlet(['convert', src, dst]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/is not empty .*--force/);
    oneLine(refused);
    expect(readdirSync(dst).sort()).toEqual(['model-4-of-4.safetensors', 'model.safetensors.index.json']);
    const forced = await owlet(['convert', src, dst, '--force', '--json']);
    expect(forced.code, forced.stderr).toBe(0);
    const out = JSON.parse(forced.stdout) as { files: string[]; copied: string[] };
    expect(readdirSync(dst).sort()).toEqual([...out.files, ...out.copied, 'model.safetensors.index.json'].sort());
    expect(existsSync(join(dst, 'model-4-of-4.safetensors'))).toBe(false);
    expect(readdirSync(tmp).filter((f) => f.includes('.owlet-'))).toEqual([]);
  });
});

describe('issue 23: chat recovers from a bad attachment', () => {
  it('an /image that does not decode is not attached; the next message is answered', async () => {
    const bad = join(tmp, 'not-an-image-chat.png');
    writeFileSync(bad, 'this is text, not a PNG');
    const r = await owlet(['chat', '--max-new-tokens', '2', '--backend', 'wasm'], {
      stdin: `/image ${bad}\nhello\nand again\n/exit\n`,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/error: .*not-an-image-chat\.png.*\(not attached\)/);
    expect(r.stdout.split('\n').filter((l) => l.trim()).length).toBe(2);
  });

  it('a message that fails with an attachment drops it; later messages work', async () => {
    const r = await owlet(['chat', '--max-new-tokens', '2', '--backend', 'wasm'], {
      stdin: `/image ${IMAGE}\n${'describe the owl '.repeat(700)}\nhello\n/exit\n`,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/context window is 2048 tokens/);
    expect(r.stderr).toMatch(/dropped 1 attachment/);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
  });
});

describe('issue 23: image URLs are fetched with bounds (hostile server on loopback)', () => {
  let server: Server;
  let base = '';
  let sent = 0;
  const chunk = Buffer.alloc(256 * 1024, 0x89);
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });
  it('endless body, stall, Content-Length 1e15, a redirect to another host, HTML: exit 2 before the model loads', async () => {
    server = createServer((req, res) => {
      switch (req.url) {
        case '/endless.png': {
          res.writeHead(200, { 'content-type': 'image/png' });
          const pump = () => {
            while (!res.destroyed && sent < 2 ** 30) {
              sent += chunk.length;
              if (!res.write(chunk)) return void res.once('drain', pump);
            }
            res.end();
          };
          pump();
          return;
        }
        case '/stall.png':
          res.writeHead(200, { 'content-type': 'image/png' });
          res.write(chunk.subarray(0, 8));
          return;
        case '/huge.png':
          res.writeHead(200, { 'content-type': 'image/png', 'content-length': '1000000000000000' });
          res.flushHeaders();
          return;
        case '/away.png':
          res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
          res.end();
          return;
        case '/page.png':
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end('<html>login</html>');
          return;
        default:
          res.writeHead(404);
          res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const run = (path: string, ...extra: string[]) =>
      owlet(['run', '--image', `${base}${path}`, '--prompt', 'x', '--model', join(tmp, 'no-weights'), ...extra], {
        timeoutMs: 300_000,
      });
    const endless = await run('/endless.png');
    const stall = await run('/stall.png', '--fetch-timeout', '5');
    const huge = await run('/huge.png');
    const away = await run('/away.png');
    const page = await run('/page.png');
    for (const r of [endless, stall, huge, away, page]) {
      expect(r.code, r.stderr).toBe(2);
      oneLine(r);
      expect(r.stderr).not.toMatch(/model folder/);
    }
    expect(endless.stderr).toMatch(/over 67108864 bytes/);
    expect(sent).toBeLessThan(64 * 2 ** 20 + 32 * 2 ** 20);
    expect(stall.stderr).toMatch(/timed out \(no data for 5 s after 8 bytes\)/);
    expect(huge.stderr).toMatch(/is 1000000000000000 bytes; the limit is 67108864/);
    expect(away.stderr).toMatch(/redirects to 169\.254\.169\.254, which is not the same origin/);
    expect(page.stderr).toMatch(/HTML page/);
  }, 600_000);
});
