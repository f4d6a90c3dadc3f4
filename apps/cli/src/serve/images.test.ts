/**
 * Image URLs of requests (checklist B29, B30, L6, L7 for media), against a hostile HTTP server on
 * loopback: 404s, HTML labelled image/png, redirects off the allowlist (never followed), an
 * endless body (cut at the cap while it streams), a server that never answers (5 s timeout).
 */
import { once } from 'node:events';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiError } from './errors.js';
import { type ImageSourceOptions, loadImage } from './images.js';
import { dataUrl, makePng } from './test-model.testutil.js';

const PNG = makePng(8, 6, (x, y) => [x * 30, y * 40, 90]);
let server: Server;
let base: string;
let port: number;
const hits: string[] = [];
const sockets = new Set<import('node:net').Socket>();

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const u = req.url ?? '/';
    if (u === '/owl.png') {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': PNG.length });
      res.end(PNG);
    } else if (u === '/missing.png') {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<h1>not found</h1>');
    } else if (u === '/html.png') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end('<!doctype html><html><body>surprise</body></html>');
    } else if (u === '/to-metadata') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
      res.end();
    } else if (u === '/to-other-host') {
      // 127.0.0.1 is this very server, but under a name that is not on the allowlist
      res.writeHead(301, { location: `http://127.0.0.1:${port}/owl.png` });
      res.end();
    } else if (u === '/to-same-host') {
      res.writeHead(307, { location: '/owl.png' });
      res.end();
    } else if (u === '/loop') {
      res.writeHead(302, { location: '/loop' });
      res.end();
    } else if (u === '/endless') {
      res.writeHead(200, { 'content-type': 'image/png' });
      const chunk = Buffer.alloc(64 * 1024, 0x41);
      const pump = () => {
        while (res.write(chunk)) {
          /* until the socket buffer is full */
        }
      };
      res.on('drain', pump);
      pump();
    } else if (u === '/huge-length') {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(1e15) });
      res.write(PNG);
    } else if (u === '/stall') {
      // headers never come
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  base = `http://localhost:${port}`;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  server.close();
});

const opts = (o: Partial<ImageSourceOptions> = {}): ImageSourceOptions => ({
  allowedHosts: ['localhost'],
  maxBytes: 1024 * 1024,
  maxPixels: 50_000_000,
  timeoutMs: 5000,
  ...o,
});

async function refused(url: string, o: Partial<ImageSourceOptions> = {}): Promise<ApiError> {
  try {
    await loadImage(url, 'messages[0].content[0].image_url.url', opts(o));
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    const err = e as ApiError;
    expect(err.status).toBe(400);
    expect(err.param).toBe('messages[0].content[0].image_url.url');
    return err;
  }
  throw new Error(`${url.slice(0, 60)} was accepted`);
}

describe('data: URLs (B29)', () => {
  it('accepts an image data: URL and returns its bytes', async () => {
    const bytes = await loadImage(dataUrl(PNG), 'p', opts({ allowedHosts: [] }));
    expect(Buffer.from(bytes).equals(Buffer.from(PNG))).toBe(true);
  });

  it('refuses data that is not an image, malformed URLs, empty strings and other schemes', async () => {
    expect((await refused('data:text/plain;base64,aGVsbG8=')).message).toMatch(/not an image/);
    expect((await refused(dataUrl(new TextEncoder().encode('<html></html>')))).message).toMatch(
      /is not a PNG, JPEG, GIF, WebP, TIFF or BMP file/,
    );
    expect((await refused('data:image/png;base64,')).message).toMatch(/empty/);
    expect((await refused('data:image/png;base64,@@@@')).message).toMatch(/invalid base64/);
    expect((await refused('data:image/png;base64')).message).toMatch(/malformed/);
    expect((await refused('malformed')).message).toMatch(/malformed image URL/);
    expect((await refused('')).message).toMatch(/empty/);
    expect((await refused('file:///etc/passwd')).message).toMatch(/scheme file: is not allowed/);
    expect((await refused('file://../x.png')).message).toMatch(/scheme file: is not allowed/);
    expect((await refused('./allowed/../x.png')).message).toMatch(/malformed/);
    // a truncated PNG header and a PNG over the pixel cap, both from the header alone
    expect((await refused(dataUrl(PNG.slice(0, 20)))).message).toMatch(/not valid/);
    expect((await refused(dataUrl(makePng(300, 200)), { maxPixels: 50_000 })).code).toBe('image_too_large');
    expect((await refused(dataUrl(makePng(300, 200)), { maxBytes: 1000 })).code).toBe('image_too_large');
  });
});

describe('http(s) image URLs (B29, B30, L6)', () => {
  it('are refused unless the host is on the allowlist', async () => {
    const n = hits.length;
    expect((await refused(`${base}/owl.png`, { allowedHosts: [] })).message).toMatch(/data: URLs/);
    expect((await refused(`${base}/owl.png`, { allowedHosts: ['example.com'] })).message).toMatch(
      /not on the server's --allowed-media-domains/,
    );
    expect(hits.length).toBe(n); // nothing was fetched
  });

  it('fetch an allowed image, and follow redirects only within the allowlist', async () => {
    const bytes = await loadImage(`${base}/owl.png`, 'p', opts());
    expect(bytes.length).toBe(PNG.length);
    expect((await loadImage(`${base}/to-same-host`, 'p', opts())).length).toBe(PNG.length);
    const n = hits.length;
    expect((await refused(`${base}/to-metadata`)).message).toMatch(/redirects to 169\.254\.169\.254/);
    expect((await refused(`${base}/to-other-host`)).message).toMatch(/redirects to 127\.0\.0\.1/);
    expect(hits.slice(n)).toEqual(['/to-metadata', '/to-other-host']); // the targets were never asked
    expect((await refused(`${base}/loop`)).message).toMatch(/more than 3 times/);
  });

  it('refuse a 404 and HTML served as image/png', async () => {
    expect((await refused(`${base}/missing.png`)).message).toMatch(/HTTP 404/);
    expect((await refused(`${base}/html.png`)).message).toMatch(/not a PNG/);
  });

  it('cut an endless body at the byte cap while it streams, and a lying Content-Length at once', async () => {
    const e = await refused(`${base}/endless`, { maxBytes: 256 * 1024 });
    expect(e.code).toBe('image_too_large');
    expect((await refused(`${base}/huge-length`)).message).toMatch(/1000000000000000 bytes; the limit/);
  });

  it('give up on a server that never answers after the timeout', async () => {
    const e = await refused(`${base}/stall`, { timeoutMs: 300 });
    expect(e.message).toMatch(/timed out \((no response within|the whole fetch took over) 0\.3 s\)/);
  });
});
