/**
 * The one bounded image reader of `owlet run` / `chat` and `owlet serve` (checklist B29, B30, L6,
 * L7), against a hostile server on loopback: a body dripped just under the read timeout is cut at
 * the whole-fetch deadline; the CLI's readImage and the server's loadImage refuse the same hostile
 * answers with the same words; files are opened as regular files only and sized before reading;
 * data: URLs are sized from the payload; refusals never echo the bytes.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { UsageError } from './errors.js';
import {
  checkImageBytes,
  decodeDataUrl,
  fetchImageBytes,
  ImageSourceError,
  MAX_IMAGE_BYTES,
  readImageFile,
} from './image-source.js';
import { readImage } from './model.js';
import { ApiError } from './serve/errors.js';
import { loadImage } from './serve/images.js';
import { makePng } from './serve/test-model.testutil.js';

const PNG = makePng(8, 6, (x, y) => [x * 30, y * 40, 90]);
let server: Server;
let base: string;
const sockets = new Set<Socket>();
/** Bytes the drip route wrote, and whether its client hung up. */
const drip = { sent: 0, closed: false };
const tmp = mkdtempSync(join(tmpdir(), 'owlet-image-source-'));

beforeAll(async () => {
  server = createServer((req, res) => {
    switch (req.url) {
      case '/owl.png':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': PNG.length });
        res.end(PNG);
        return;
      case '/drip.png': {
        // slowloris-like: one byte every 20 ms, far under the read timeout, at most 10 s worth
        res.writeHead(200, { 'content-type': 'image/png' });
        res.write(PNG.subarray(0, 8));
        const timer = setInterval(() => {
          if (res.destroyed || drip.sent >= 500) {
            clearInterval(timer);
            if (!res.destroyed) res.end();
            return;
          }
          drip.sent++;
          res.write(Buffer.from([0]));
        }, 20);
        res.on('close', () => {
          drip.closed = true;
          clearInterval(timer);
        });
        return;
      }
      case '/huge.png':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': '1000000000000000' });
        res.flushHeaders();
        return;
      case '/away.png':
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
        res.end();
        return;
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        res.end();
        return;
      case '/page.png':
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html>login</html>');
        return;
      case '/passwd.png':
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end('root:x:0:0:root:/root:/bin/bash\n');
        return;
      default:
        res.writeHead(404);
        res.end();
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  for (const s of sockets) s.destroy();
  server.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function refusal(p: Promise<unknown>): Promise<ImageSourceError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ImageSourceError);
  return e as ImageSourceError;
}

describe('fetchImageBytes', () => {
  it('cuts a body dripped under the read timeout at the whole-fetch deadline, and hangs up', async () => {
    const e = await refusal(
      fetchImageBytes(`${base}/drip.png`, {
        maxBytes: MAX_IMAGE_BYTES,
        connectTimeoutMs: 5000,
        readTimeoutMs: 5000,
        totalTimeoutMs: 1500,
      }),
    );
    expect(e.code).toBe('image_fetch_failed');
    expect(e.message).toMatch(/timed out \(the whole fetch took over 1\.5 s\)/);
    expect(drip.sent).toBeGreaterThan(0); // the body was flowing (the read timeout never fired)
    for (let i = 0; i < 200 && !drip.closed; i++) await new Promise((r) => setTimeout(r, 20));
    expect(drip.closed).toBe(true);
    expect(drip.sent).toBeLessThan(500); // stopped long before the server's own end
  });

  it('a caller abort is the caller’s, not an image error', async () => {
    const ac = new AbortController();
    const p = fetchImageBytes(`${base}/drip.png`, {
      maxBytes: MAX_IMAGE_BYTES,
      connectTimeoutMs: 2000,
      readTimeoutMs: 2000,
      totalTimeoutMs: 5000,
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 50);
    const e = await p.then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).not.toBeNull();
    expect(e).not.toBeInstanceOf(ImageSourceError);
  });
});

describe('owlet run/chat and owlet serve read images through the same bounds', () => {
  const cases: [string, RegExp][] = [
    ['/huge.png', /the image is 1000000000000000 bytes; the limit is \d+/],
    ['/away.png', /the image URL redirects to 169\.254\.169\.254, which is not /],
    ['/page.png', /HTML page, not an image/],
    ['/missing.png', /could not fetch the image: HTTP 404/],
    ['/passwd.png', /the image is not a PNG, JPEG, GIF, WebP, TIFF or BMP file/],
  ];
  for (const [path, message] of cases) {
    it(`${path}: the same refusal in both`, async () => {
      const cli = await readImage(`${base}${path}`).then(
        () => null,
        (x: unknown) => x,
      );
      expect(cli).toBeInstanceOf(UsageError);
      expect((cli as Error).message).toMatch(message);
      expect((cli as Error).message).not.toMatch(/root:x/);
      const api = await loadImage(`${base}${path}`, 'p', {
        allowedHosts: ['127.0.0.1'],
        maxBytes: MAX_IMAGE_BYTES,
        maxPixels: 50_000_000,
        timeoutMs: 5000,
      }).then(
        () => null,
        (x: unknown) => x,
      );
      expect(api).toBeInstanceOf(ApiError);
      expect((api as ApiError).status).toBe(400);
      expect((api as ApiError).message).toMatch(message);
    });
  }

  it('the CLI follows a same-origin redirect chain only so far', async () => {
    const e = await readImage(`${base}/loop`).then(
      () => null,
      (x: unknown) => x,
    );
    expect((e as Error).message).toMatch(/redirects more than 5 times/);
    expect((await readImage(`${base}/owl.png`)).length).toBe(PNG.length);
  });
});

describe('readImageFile', () => {
  it('refuses a FIFO and a folder without blocking, an oversized file before reading it, an empty file', async () => {
    const fifo = join(tmp, 'fifo.png');
    execFileSync('mkfifo', [fifo]);
    expect((await refusal(Promise.resolve().then(() => readImageFile(fifo, fifo, 1024)))).message).toMatch(
      /must be a regular file/,
    );
    const dir = join(tmp, 'dir.png');
    mkdirSync(dir);
    expect((await refusal(Promise.resolve().then(() => readImageFile(dir, dir, 1024)))).message).toMatch(
      /must be a regular file/,
    );
    const big = join(tmp, 'big.png');
    writeFileSync(big, '');
    truncateSync(big, MAX_IMAGE_BYTES + 1); // sparse: nothing is allocated on disk or in memory
    const e = await refusal(Promise.resolve().then(() => readImageFile(big, big, MAX_IMAGE_BYTES)));
    expect(e.code).toBe('image_too_large');
    const empty = join(tmp, 'empty.png');
    writeFileSync(empty, '');
    expect((await refusal(Promise.resolve().then(() => readImageFile(empty, empty, 1024)))).message).toMatch(/empty/);
    const missing = join(tmp, 'missing.png');
    expect((await refusal(Promise.resolve().then(() => readImageFile(missing, 'missing.png', 1024)))).code).toBe(
      'image_not_found',
    );
    const ok = join(tmp, 'ok.png');
    writeFileSync(ok, PNG);
    expect(Buffer.from(readImageFile(ok, ok, 1024)).equals(Buffer.from(PNG))).toBe(true);
  });
});

describe('decodeDataUrl and checkImageBytes', () => {
  it('a data: URL is sized from its payload before it is decoded', () => {
    expect(() => decodeDataUrl(`data:image/png;base64,${'A'.repeat(4000)}`, 1000)).toThrow(/over 1000 bytes/);
    expect(() => decodeDataUrl(`data:image/png,${'%41'.repeat(400)}`, 100)).toThrow(/over 100 bytes/);
    expect(decodeDataUrl(`data:image/png;base64,${Buffer.from(PNG).toString('base64')}`, 1000).bytes.length).toBe(
      PNG.length,
    );
  });

  it('refuses SVG by name, unknown bytes without echoing them, a truncated header, a header over the pixel cap', () => {
    const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="8000" height="8000"/>');
    expect(() => checkImageBytes(svg, 50_000_000)).toThrow(/SVG images are not supported/);
    let msg = '';
    try {
      checkImageBytes(new TextEncoder().encode('root:x:0:0:root'), 50_000_000);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/not a PNG/);
    expect(msg).not.toMatch(/root|72 6f 6f 74/);
    expect(() => checkImageBytes(PNG.slice(0, 20), 50_000_000)).toThrow(/not valid/);
    expect(() => checkImageBytes(makePng(300, 200), 50_000)).toThrow(/limit is 50000 pixels/);
    expect(() => checkImageBytes(PNG, 50_000_000)).not.toThrow();
  });
});
