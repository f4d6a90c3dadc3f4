/**
 * What `owlet run` / `chat` / `bench` print on stderr when nobody asked for more: no Dawn or Vulkan
 * noise from the WebGPU probe, a one-line backend report, at most one progress line per file when
 * stderr is not a terminal, and nothing at all under --quiet. The CLI runs as a subprocess from
 * source (as `pnpm owlet` does) in the environment of a fresh machine: XDG_RUNTIME_DIR unset, and
 * once with no Vulkan driver chosen and once with SwiftShader.
 */
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { REPO_ROOT } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(here, 'main.ts');
const TSX = resolve(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const TSCONFIG = resolve(REPO_ROOT, 'tsconfig.base.json');
/** The README's first command, as a user types it. */
const README_RUN = ['run', '--image', 'apps/cli/assets/owl.png', '--prompt', 'What is in the picture?'];
/** The files of the bundled model: one progress line each, at most. */
const MODEL_FILES = [
  'config.json',
  'tokenizer.model',
  'preprocessor_config.json',
  'generation_config.json',
  'model-00001-of-00002.safetensors',
  'model-00002-of-00002.safetensors',
];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A fresh machine's environment: the test setup's XDG_RUNTIME_DIR (and, unless kept, the ICD) removed. */
function freshEnv(vulkanIcd: 'none' | 'inherit'): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OWLET_DEBUG: '' };
  delete env.XDG_RUNTIME_DIR;
  if (vulkanIcd === 'none') delete env.VK_ICD_FILENAMES;
  return env;
}

function owlet(args: string[], env: NodeJS.ProcessEnv, stdin = ''): Promise<Result> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(TSX, ['--tsconfig', TSCONFIG, MAIN, ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`owlet ${args.join(' ')} timed out\n${stderr}`));
    }, 240_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}

/** No line a user would read as a failure, and none of Dawn's or Vulkan's messages. */
function expectCleanStderr(stderr: string): void {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  for (const line of lines) {
    expect(line, stderr).not.toMatch(/error/i);
    expect(line, stderr).not.toMatch(/warning/i);
    expect(line, stderr).not.toMatch(/dawn|vulkan|third_party|\.cpp\b|XDG_RUNTIME_DIR/i);
  }
}

function expectOneLinePerFile(stderr: string): void {
  const lines = stderr.split('\n');
  for (const f of MODEL_FILES) {
    const mentions = lines.filter((l) => l.split(/\s+/).includes(f));
    expect(mentions.length, `${f}:\n${stderr}`).toBeLessThanOrEqual(1);
  }
}

// One CLI process per test: each costs 10–60 s (tsx start, model load, a short answer) by the load.
describe('owlet prints only what was asked for on stderr', () => {
  it('the README command on a machine without a Vulkan driver: clean, one line per file, a short backend line', async () => {
    const r = await owlet(README_RUN, freshEnv('none'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(0);
    expectCleanStderr(r.stderr);
    expectOneLinePerFile(r.stderr);
    const backend = r.stderr.split('\n').filter((l) => l.startsWith('backend: '));
    expect(backend, r.stderr).toHaveLength(1);
    expect(backend[0]?.length ?? 0).toBeLessThanOrEqual(100);
  });

  it('--verbose with SwiftShader as the Vulkan driver: every backend and its reason; native output only in the probe log', async () => {
    const r = await owlet([...README_RUN, '--max-new-tokens', '2', '--verbose'], freshEnv('inherit'));
    expect(r.code, r.stderr).toBe(0);
    for (const name of ['webgpu', 'tensorflow', 'wasm']) expect(r.stderr).toMatch(new RegExp(`^  ${name}: `, 'm'));
    expect(r.stderr).toMatch(/^ {2}wasm: available$/m);
    // what Dawn or the drivers printed appears only as the probe's captured log ("    | …")
    expectCleanStderr(
      r.stderr
        .split('\n')
        .filter((l) => !l.startsWith('    | '))
        .join('\n'),
    );
  });

  it('run --quiet: nothing on stderr', async () => {
    const r = await owlet([...README_RUN, '--max-new-tokens', '2', '--quiet'], freshEnv('none'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('chat: clean, one line per file', async () => {
    const r = await owlet(['chat', '--max-new-tokens', '2'], freshEnv('none'), 'Hello\n/exit\n');
    expect(r.code, r.stderr).toBe(0);
    expectCleanStderr(r.stderr);
    expectOneLinePerFile(r.stderr);
  });

  it('bench --quiet: nothing on stderr', async () => {
    const r = await owlet(
      ['bench', '--runs', '1', '--prompt-tokens', '4', '--new-tokens', '2', '--quiet', '--out', '/dev/null'],
      freshEnv('none'),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/decode/);
    expect(r.stderr).toBe('');
  });
});
