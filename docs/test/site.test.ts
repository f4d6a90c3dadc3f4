/**
 * The built site in headless Chromium (Debian's /usr/bin/chromium through playwright-core, never a
 * downloaded browser): builds it as `pnpm docs:build` does — which fails on a dead link — serves
 * docs/.vitepress/dist from 127.0.0.1, opens the home page and the architecture page, checks that
 * they render their headings (and the diagram), and screenshots both into docs/.screenshots/.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

import { REPO_ROOT, findChromium } from '@owlet/test-utils';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const DOCS = join(REPO_ROOT, 'docs');
const DIST = join(DOCS, '.vitepress', 'dist');
const SHOTS = join(DOCS, '.screenshots');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/** The file a clean URL names: `/` → index.html, `/architecture` → architecture.html. */
function fileFor(url: string): string | undefined {
  const path = normalize(decodeURIComponent(new URL(url, 'http://x').pathname));
  const base = join(DIST, path);
  if (!base.startsWith(DIST + sep) && base !== `${DIST}${sep}`) return undefined;
  for (const p of [base, `${base}.html`, join(base, 'index.html')]) {
    if (existsSync(p) && statSync(p).isFile()) return p;
  }
  return undefined;
}

let server: Server;
let origin: string;
let browser: Browser;

beforeAll(async () => {
  // The real build (chart, TypeDoc pages, VitePress with its dead-link check).
  execFileSync('pnpm', ['run', '--silent', 'build:site'], { cwd: DOCS, stdio: ['ignore', 'ignore', 'pipe'] });
  server = createServer((req, res) => {
    const file = fileFor(req.url ?? '/');
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const executablePath = findChromium();
  if (!executablePath) throw new Error("Debian's chromium is not installed (apt-get install -y chromium)");
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  mkdirSync(SHOTS, { recursive: true });
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
});

const isPng = (p: string) =>
  readFileSync(p)
    .subarray(0, 8)
    .equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]));

describe('the built docs site in Chromium', () => {
  it('renders the home page', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${origin}/`, { waitUntil: 'load' });
    await expect.poll(() => page.locator('.VPHero .name').textContent()).toContain('owlet');
    expect(await page.locator('.VPHero .text').textContent()).toContain('mPLUG-Owl2');
    const shot = join(SHOTS, 'home.png');
    await page.screenshot({ path: shot, fullPage: true });
    await page.close();
    expect(isPng(shot)).toBe(true);
    expect(errors).toEqual([]);
  });

  it('renders the architecture page with its diagram', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${origin}/architecture`, { waitUntil: 'load' });
    await expect.poll(() => page.locator('.vp-doc h1').first().textContent()).toContain('Architecture');
    const diagram = page.locator('.vp-doc img[src$="architecture.svg"]');
    await expect
      .poll(() => diagram.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
      .toBeGreaterThan(0);
    const shot = join(SHOTS, 'architecture.png');
    await page.screenshot({ path: shot, fullPage: true });
    await page.close();
    expect(isPng(shot)).toBe(true);
    expect(errors).toEqual([]);
  });
});
