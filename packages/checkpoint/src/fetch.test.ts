/**
 * Remote fetches are bounded (issue 23 item 3, checklist B29, B30, L6, L7, F8), tested against a
 * hostile HTTP server on loopback: an endless chunked body, a stall before the headers and inside
 * the body, a Content-Length of 1e15, redirects to another origin, HTML for a file. Every server
 * loop is bounded (it stops when the client goes away, or after a fixed number of bytes).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openCheckpoint } from './checkpoint.js';
import { CheckpointError } from './errors.js';
import { fetchBounded, redirectAllowed } from './fetch.js';
import { openUrlSource, urlFolder } from './sources.js';
import { writeSafetensors } from './writer.js';

const CHUNK = Buffer.alloc(64 * 1024, 0x41);
/** Upper bound of what any endless route sends (a client that ignores its cap would get this much). */
const SERVER_BUDGET = 256 * 1024 * 1024;
const FILE = Buffer.from(writeSafetensors({ w: { dtype: 'F32', shape: [4], data: [1, 2, 3, 4] } }));

interface Hostile {
  server: Server;
  base: string;
  /** Bytes each route sent. */
  sent: Map<string, number>;
  hits: Map<string, number>;
  sockets: Set<Socket>;
}

function listen(handler: (req: IncomingMessage, res: ServerResponse, h: Hostile) => void): Promise<Hostile> {
  return new Promise((resolve) => {
    const h = { sent: new Map(), hits: new Map(), sockets: new Set() } as unknown as Hostile;
    h.server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      h.hits.set(path, (h.hits.get(path) ?? 0) + 1);
      handler(req, res, h);
    });
    h.server.on('connection', (s) => {
      h.sockets.add(s);
      s.on('close', () => h.sockets.delete(s));
    });
    h.server.listen(0, '127.0.0.1', () => {
      h.base = `http://127.0.0.1:${(h.server.address() as AddressInfo).port}`;
      resolve(h);
    });
  });
}

async function close(h: Hostile): Promise<void> {
  for (const s of h.sockets) s.destroy();
  await new Promise<void>((r) => h.server.close(() => r()));
}

/** Writes CHUNKs until the client disconnects or the budget is spent; never loops unbounded. */
function endless(res: ServerResponse, h: Hostile, route: string): void {
  let sent = 0;
  const pump = () => {
    while (!res.destroyed && sent < SERVER_BUDGET) {
      sent += CHUNK.length;
      h.sent.set(route, sent);
      if (!res.write(CHUNK)) {
        res.once('drain', pump);
        return;
      }
    }
    if (!res.destroyed) res.end();
  };
  res.on('close', () => h.sent.set(route, sent));
  pump();
}

let srv: Hostile;
let other: Hostile; // another origin (another port), which must never be reached

beforeAll(async () => {
  other = await listen((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(FILE);
  });
  srv = await listen((req, res, h) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    switch (path) {
      case '/endless/model.safetensors':
      case '/endless':
        res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked, no length
        endless(res, h, path);
        return;
      case '/stall-headers':
        return; // never answers
      case '/stall-body':
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.write(CHUNK.subarray(0, 10));
        return; // never sends more
      case '/huge-length':
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1000000000000000' });
        res.write(CHUNK.subarray(0, 10));
        return;
      case '/huge-range/model.safetensors':
        // answers the 0-0 probe with a 1e15-byte file, then whatever Range is asked
        res.writeHead(206, { 'content-range': 'bytes 0-0/1000000000000000', 'content-length': '1' });
        res.end(Buffer.from([0x10]));
        return;
      case '/redirect-other':
        res.writeHead(302, { location: `${other.base}/model.safetensors` });
        res.end();
        return;
      case '/redirect-metadata':
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
        res.end();
        return;
      case '/redirect-same/model.safetensors':
        res.writeHead(302, { location: '/ok/model.safetensors' });
        res.end();
        return;
      case '/redirect-loop':
        res.writeHead(302, { location: '/redirect-loop' });
        res.end();
        return;
      case '/html/model.safetensors':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<!doctype html><title>Sign in</title>');
        return;
      case '/ok/model.safetensors': {
        const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        if (range) {
          const [a, b] = [Number(range[1]), Number(range[2])];
          res.writeHead(206, {
            'content-range': `bytes ${a}-${b}/${FILE.length}`,
            'content-length': String(b - a + 1),
          });
          res.end(FILE.subarray(a, b + 1));
        } else {
          res.writeHead(200, { 'content-length': String(FILE.length) });
          res.end(FILE);
        }
        return;
      }
      default:
        res.writeHead(404);
        res.end();
    }
  });
});
afterAll(async () => {
  await close(srv);
  await close(other);
});

async function failure(p: Promise<unknown>): Promise<CheckpointError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e, 'expected a CheckpointError').toBeInstanceOf(CheckpointError);
  return e as CheckpointError;
}

describe('hostile server on loopback', () => {
  it('an endless chunked body stops at the cap while it streams (memory stays bounded)', async () => {
    const cap = 4 * 1024 * 1024;
    const rss0 = process.memoryUsage().rss;
    const r = await fetchBounded(`${srv.base}/endless`, {}, { maxBytes: cap });
    const e = await failure(r.readBody());
    expect(e.code).toBe('FETCH_TOO_LARGE');
    expect(e.message).toMatch(/over 4194304 bytes/);
    // The server got no further than the cap plus what sits in socket buffers.
    await new Promise((res) => setTimeout(res, 50));
    expect(srv.sent.get('/endless') ?? 0).toBeLessThan(cap + 16 * 1024 * 1024);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * 1024 * 1024);
  });

  it('the same through openUrlSource (a server without Range support) and a folder side file', async () => {
    const e = await failure(openUrlSource(`${srv.base}/endless/model.safetensors`, { maxBytes: 1 << 20 }));
    expect(e.code).toBe('FETCH_TOO_LARGE');
    const folder = urlFolder(`${srv.base}/endless/`);
    expect((await failure(folder.open('model.safetensors', undefined, { maxBytes: 1 << 20 }))).code).toBe(
      'FETCH_TOO_LARGE',
    );
  });

  it('Content-Length 1e15 is a typed error before any allocation', async () => {
    const e = await failure(openUrlSource(`${srv.base}/huge-length`));
    expect(e.code).toBe('FETCH_TOO_LARGE');
    expect(e.message).toMatch(/announces 1000000000000000 bytes/);
    // A Range-capable server announcing a 1e15-byte file: a read of 1e14 bytes is refused, typed.
    const src = await openUrlSource(`${srv.base}/huge-range/model.safetensors`);
    expect(src?.size).toBe(1e15);
    expect((await failure((src as NonNullable<typeof src>).read(0, 1e14))).code).toBe('FETCH_TOO_LARGE');
    await failure(openCheckpoint(`${srv.base}/huge-range/model.safetensors`)); // typed, whatever the code
  });

  it('a stall before the headers and inside the body times out (configurable)', async () => {
    const a = await failure(fetchBounded(`${srv.base}/stall-headers`, {}, { connectTimeoutMs: 200 }));
    expect(a.code).toBe('FETCH_TIMEOUT');
    expect(a.message).toMatch(/no response within 0.2 s/);
    const b = await failure(openUrlSource(`${srv.base}/stall-body`, { readTimeoutMs: 200 }));
    expect(b.code).toBe('FETCH_TIMEOUT');
    expect(b.message).toMatch(/no data for 0.2 s after 10 bytes/);
  });

  it('a redirect to another origin is not followed (nothing reaches it); same-origin redirects are', async () => {
    const hits = other.hits.get('/model.safetensors') ?? 0;
    const e = await failure(openUrlSource(`${srv.base}/redirect-other`));
    expect(e.code).toBe('FETCH_REFUSED');
    expect(e.message).toMatch(/another origin/);
    expect(other.hits.get('/model.safetensors') ?? 0).toBe(hits);
    expect((await failure(openUrlSource(`${srv.base}/redirect-metadata`))).code).toBe('FETCH_REFUSED');
    expect((await failure(openUrlSource(`${srv.base}/redirect-loop`))).code).toBe('FETCH_REFUSED');
    // allowed explicitly: followed, without the Authorization header
    const ok = await openUrlSource(`${srv.base}/redirect-other`, {
      allowRedirectOrigins: [other.base],
      init: { headers: { Authorization: 'Bearer secret' } },
    });
    expect(ok?.size).toBe(FILE.length);
    const same = await openCheckpoint(`${srv.base}/redirect-same/model.safetensors`);
    expect(same.entries().map((x) => x.key)).toEqual(['w']);
    await same.close();
  });

  it('huggingface.co may redirect to its download hosts, nothing else by default', () => {
    const hf = new URL('https://huggingface.co/org/m/resolve/main/model.safetensors');
    expect(redirectAllowed(hf, new URL('https://cas-bridge.xethub.hf.co/x'), undefined)).toBe(true);
    expect(redirectAllowed(hf, new URL('https://cdn-lfs.huggingface.co/x'), undefined)).toBe(true);
    expect(redirectAllowed(hf, new URL('http://cdn-lfs.huggingface.co/x'), undefined)).toBe(false);
    expect(redirectAllowed(hf, new URL('https://evil.example/hf.co'), undefined)).toBe(false);
    expect(redirectAllowed(hf, new URL('https://cas-bridge.xethub.hf.co/x'), [])).toBe(false);
    expect(redirectAllowed(new URL('https://a.example/'), new URL('file:///etc/passwd'), 'any')).toBe(false);
  });

  it('200 with an HTML page for a weight file is refused (F8)', async () => {
    const e = await failure(openCheckpoint(`${srv.base}/html/model.safetensors`));
    expect(e.code).toBe('FETCH_REFUSED');
    expect(e.message).toMatch(/HTML page/);
  });

  it('after all that, a valid download works', async () => {
    const c = await openCheckpoint(`${srv.base}/ok/model.safetensors`);
    const got = [];
    for await (const [, t] of c.raw()) got.push(t.byteLength);
    expect(got).toEqual([16]);
    await c.close();
  });
});
