/**
 * `owlet serve` on the bundled tiny model, for the examples marked `ts server`: started from source
 * (tsx, as `pnpm owlet` runs it) on loopback port 0, stopped with SIGTERM after the file's examples.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

export interface Served {
  /** `http://127.0.0.1:PORT/v1` */
  baseURL: string;
  stop(): Promise<void>;
}

export async function serveTinyModel(root: string): Promise<Served> {
  const proc: ChildProcess = spawn(
    join(root, 'node_modules', '.bin', 'tsx'),
    ['--tsconfig', join(root, 'tsconfig.base.json'), join(root, 'apps/cli/src/main.ts'), 'serve', '--port', '0'],
    { cwd: root, env: { ...process.env, OWLET_API_KEY: '' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(err);
      if (m?.[1]) resolve(m[1].replace(/\/$/, ''));
    });
    void exited.then((code) => reject(new Error(`owlet serve exited (${code}) before listening:\n${err}`)));
  });
  // The server listens before the model is loaded; wait (bounded) until /health says it is ready.
  for (let i = 0; ; i++) {
    const r = await fetch(`${url}/health`).catch(() => null);
    if (r?.status === 200) break;
    if (i === 600) throw new Error(`owlet serve did not become ready:\n${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    baseURL: `${url}/v1`,
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}
