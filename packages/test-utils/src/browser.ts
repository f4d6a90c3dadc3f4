/**
 * Runs a test entry in real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core;
 * never a downloaded browser) with WebGPU enabled. The entry is bundled for the browser with esbuild,
 * served from 127.0.0.1, and reports by assigning `globalThis.__owletResult` (any JSON value) or
 * `globalThis.__owletError` (a string).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

import { build } from 'esbuild';

export const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium'];

export function findChromium(): string | undefined {
  return process.env.OWLET_CHROMIUM ?? CHROMIUM_CANDIDATES.find((p) => existsSync(p));
}

/**
 * Flags for headless Debian chromium in tests: no network of its own (no updates, sync, QUIC or
 * first-run), and WebGPU on (SwiftShader on a machine without a GPU).
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--enable-unsafe-webgpu',
];

/** Launches Debian's chromium headless with CHROMIUM_ARGS (playwright-core; never a downloaded browser). */
export async function launchChromium(): Promise<import('playwright-core').Browser> {
  const executablePath = findChromium();
  if (!executablePath)
    throw new Error("Debian's chromium is not installed (apt-get install -y chromium); see scripts/setup.sh");
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath, headless: true, args: [...CHROMIUM_ARGS] });
}

export interface BrowserRunResult<T> {
  result: T;
  console: string[];
}

export interface RunInBrowserOptions {
  timeoutMs?: number;
  /** Serve this folder's files under `/files/` (e.g. a model folder for fromPretrained by URL). */
  staticDir?: string;
}

const CONTENT_TYPES: Record<string, string> = {
  '.json': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
};

export async function runInBrowser<T = unknown>(
  entry: string,
  options: RunInBrowserOptions = {},
): Promise<BrowserRunResult<T>> {
  if (!findChromium())
    throw new Error("Debian's chromium is not installed (apt-get install -y chromium); see scripts/setup.sh");
  const bundle = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // Dynamic imports stay dynamic (separate chunks), so Node-only modules are never evaluated.
    splitting: true,
    outdir: '/bundle',
    entryNames: 'entry',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"test"' },
    // Node-only modules (checkpoint file access, Dawn) sit behind dynamic imports that browsers
    // never reach; like Vite's browser build, leave Node built-ins out of the bundle.
    external: ['node:*'],
  });
  const chunks = new Map<string, string>(bundle.outputFiles.map((f) => [`/${f.path.split('/').pop()}`, f.text]));
  const html = '<!doctype html><html><body><script type="module" src="/entry.js"></script></body></html>';
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (options.staticDir && url.pathname.startsWith('/files/')) {
      const root = normalize(options.staticDir);
      const path = normalize(join(root, decodeURIComponent(url.pathname.slice('/files/'.length))));
      if (!path.startsWith(root + sep) || !existsSync(path) || !statSync(path).isFile()) {
        res.statusCode = 404;
        res.end('not found');
        return;
      }
      const body = readFileSync(path);
      res.setHeader('content-type', CONTENT_TYPES[extname(path)] ?? 'application/octet-stream');
      res.setHeader('accept-ranges', 'bytes');
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (range) {
        const start = Number(range[1]);
        const end = range[2] ? Math.min(Number(range[2]), body.length - 1) : body.length - 1;
        res.statusCode = 206;
        res.setHeader('content-range', `bytes ${start}-${end}/${body.length}`);
        res.end(body.subarray(start, end + 1));
      } else {
        res.end(body);
      }
      return;
    }
    const chunk = chunks.get(url.pathname);
    if (chunk !== undefined) {
      res.setHeader('content-type', 'text/javascript');
      res.end(chunk);
    } else {
      res.setHeader('content-type', 'text/html');
      res.end(html);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const browser = await launchChromium();
  const logs: string[] = [];
  try {
    const page = await browser.newPage();
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    await page.goto(`http://127.0.0.1:${port}/`);
    try {
      await page.waitForFunction(() => '__owletResult' in globalThis || '__owletError' in globalThis, null, {
        timeout: options.timeoutMs ?? 60_000,
        polling: 250,
      });
    } catch (e) {
      throw new Error(`${(e as Error).message}\nbrowser console:\n${logs.join('\n')}`);
    }
    const out = (await page.evaluate(() => ({
      result: (globalThis as Record<string, unknown>).__owletResult,
      error: (globalThis as Record<string, unknown>).__owletError,
    }))) as { result: T; error?: string };
    if (out.error !== undefined) throw new Error(`browser entry failed: ${out.error}\n${logs.join('\n')}`);
    return { result: out.result, console: logs };
  } finally {
    await browser.close();
    server.close();
  }
}
