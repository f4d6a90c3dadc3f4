/**
 * Test support: the real `owlet serve` as a subprocess on loopback (port 0, run from source
 * through tsx as `pnpm owlet` does), raw HTTP helpers and a Prometheus text reader.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { REPO_ROOT } from '@owlet/test-utils';

const MAIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', 'main.ts');
const TSX = resolve(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const TSCONFIG = resolve(REPO_ROOT, 'tsconfig.base.json');

export interface RunningServer {
  url: string;
  port: number;
  proc: ChildProcess;
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number | null>;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 20 ms until it returns true; fails after `tries` polls (a bounded loop). */
export async function until(check: () => boolean | Promise<boolean>, what: string, tries = 1500): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Starts `owlet serve ARGS --port 0`; resolves once it listens (waitReady: once the model is loaded). */
export async function startServer(args: string[], opts: { waitReady?: boolean } = {}): Promise<RunningServer> {
  const proc = spawn(TSX, ['--tsconfig', TSCONFIG, MAIN, 'serve', '--port', '0', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, OWLET_DEBUG: '', OWLET_API_KEY: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout?.resume();
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  let exitCode: number | null | undefined;
  void exited.then((c) => (exitCode = c));
  await until(() => /listening on http:\/\/[^\s]+/.test(err) || exitCode !== undefined, 'the server to listen', 3000);
  const m = /listening on (http:\/\/[^\s]+)/.exec(err);
  if (!m?.[1]) throw new Error(`owlet serve did not start (exit ${exitCode}):\n${err}`);
  const url = m[1].replace('://127.0.0.1:', '://localhost:');
  const port = Number(new URL(url).port);
  const server: RunningServer = {
    url,
    port,
    proc,
    stderr: () => err,
    exited,
    stop: async (graceMs = 10_000) => {
      if (exitCode !== undefined) return exitCode;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const c = await exited;
      clearTimeout(t);
      return c;
    },
  };
  if (opts.waitReady !== false) {
    await until(() => / ready in /.test(err) || exitCode !== undefined, 'the model to load', 3000);
    if (exitCode !== undefined) throw new Error(`owlet serve exited ${exitCode}:\n${err}`);
  }
  return server;
}

/** Runs `owlet serve ARGS` expecting it to refuse to start. */
export function serveExit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((res) => {
    const proc = spawn(TSX, ['--tsconfig', TSCONFIG, MAIN, 'serve', ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, OWLET_API_KEY: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const t = setTimeout(() => proc.kill('SIGKILL'), 60_000);
    proc.on('exit', (code) => {
      clearTimeout(t);
      res({ code, stderr: err });
    });
  });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: a test reads whatever JSON came back
  json(): any;
}

/** One HTTP request with full control of the headers (Host included). */
export function raw(
  url: string,
  o: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  const u = new URL(url);
  return new Promise((res, rej) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: u.port,
        method: o.method ?? (o.body !== undefined ? 'POST' : 'GET'),
        path: o.path ?? u.pathname,
        headers: {
          host: `localhost:${u.port}`,
          ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...o.headers,
        },
      },
      (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          res({ status: r.statusCode ?? 0, headers: r.headers, body, json: () => JSON.parse(body) });
        });
        r.on('error', rej);
      },
    );
    req.on('error', rej);
    req.end(o.body);
  });
}

/** A sample of a Prometheus text exposition (the sum over series that match the labels). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const kv of (m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)) have[kv[1] as string] = kv[2] as string;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      sum += Number(m[4]);
      found = true;
    }
  }
  if (!found && Object.keys(labels).length === 0) throw new Error(`metric ${name} not found`);
  return sum;
}
