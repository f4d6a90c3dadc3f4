import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { isOwletError } from '@owlet/errors';
import { REPO_ROOT, mulberry32 } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { bundledModelDir } from '../../model.config.js';
import { buildManifest } from '../../build/owlet-model-plugin.js';
import { EngineErrorCode } from './errors.js';
import { IntegrityError } from './typed-errors.js';
import { parseManifest } from './manifest.js';
import { fetchModel, localModel, looksLikeHtml, type ModelCache, type StoreEvent } from './model-store.js';
import { Sha256, sha256Hex } from './sha256.js';

const MODEL_DIR = bundledModelDir(resolve(REPO_ROOT, 'apps/web'));
const BASE = 'http://owlet.test/models/m/';
const FILES = new Map(readdirSync(MODEL_DIR).map((n) => [n, new Uint8Array(readFileSync(join(MODEL_DIR, n)))]));
const SHARD = [...FILES.keys()].find((n) => n.endsWith('.safetensors')) as string;

/** An in-memory Cache API; `quotaBytes` makes put throw QuotaExceededError past that many bytes. */
class MemoryCache implements ModelCache {
  readonly entries = new Map<string, { body: Uint8Array; headers: Headers }>();
  constructor(private readonly quotaBytes = Number.POSITIVE_INFINITY) {}
  get bytes(): number {
    return [...this.entries.values()].reduce((a, e) => a + e.body.length, 0);
  }
  async match(url: string) {
    const e = this.entries.get(url);
    return e ? new Response(e.body.slice(), { headers: e.headers }) : undefined;
  }
  async put(url: string, res: Response) {
    const body = new Uint8Array(await res.arrayBuffer());
    if (this.bytes + body.length > this.quotaBytes) throw new DOMException('quota', 'QuotaExceededError');
    this.entries.set(url, { body, headers: new Headers(res.headers) });
  }
  async delete(url: string) {
    return this.entries.delete(url);
  }
  async keys() {
    return [...this.entries.keys()];
  }
}

type Tamper = (name: string, body: Uint8Array, attempt: number) => Response | Uint8Array | undefined;

/** A model server over FILES; `tamper` can replace any answer; counts requests per file. */
function server(tamper?: Tamper, files = FILES) {
  const requests = new Map<string, number>();
  const f = (async (input: RequestInfo | URL) => {
    const url = String(input);
    const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
    const n = (requests.get(name) ?? 0) + 1;
    requests.set(name, n);
    const body = url.startsWith(BASE) ? files.get(name) : undefined;
    if (!body) return new Response('not found', { status: 404 });
    const t = tamper?.(name, body, n);
    if (t instanceof Response) return t;
    const out = t ?? body;
    // Chunked like a network body, so progress and streaming hashing are exercised.
    const chunk = 4096;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < out.length; i += chunk) c.enqueue(out.slice(i, i + chunk));
        c.close();
      },
    });
    return new Response(stream, {
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
    });
  }) as typeof fetch;
  return { fetch: f, requests };
}

const manifest = () => buildManifest(MODEL_DIR);
/** Byte equality (vitest's deep equality walks typed arrays element by element: far too slow here). */
async function same(a: Blob | Uint8Array | undefined, b: Uint8Array | undefined): Promise<boolean> {
  if (!a || !b) return false;
  const x = a instanceof Blob ? new Uint8Array(await a.arrayBuffer()) : a;
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
const quick = { backoffMs: 1 };

describe('Sha256', () => {
  it('matches node:crypto on every length around the block boundaries and on chunked input', () => {
    const rand = mulberry32(7);
    for (let n = 0; n <= 200; n++) {
      const b = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
      expect(sha256Hex(b)).toBe(createHash('sha256').update(b).digest('hex'));
    }
    const big = Uint8Array.from({ length: 300_001 }, () => Math.floor(rand() * 256));
    const h = new Sha256();
    for (let i = 0; i < big.length; ) {
      const step = 1 + Math.floor(rand() * 9000);
      h.update(big.subarray(i, i + step));
      i += step;
    }
    expect(h.hex()).toBe(createHash('sha256').update(big).digest('hex'));
  });
});

describe('manifest', () => {
  it('the build manifest lists every file of the bundled model with its sha256', () => {
    const m = manifest();
    expect(m.files.map((f) => f.name).sort()).toEqual([...FILES.keys()].sort());
    for (const f of m.files)
      expect(f.sha256).toBe(
        createHash('sha256')
          .update(FILES.get(f.name) as Uint8Array)
          .digest('hex'),
      );
    expect(parseManifest(JSON.parse(JSON.stringify(m)))).toEqual(m);
  });
  it('rejects manifests with path names, bad hashes or a wrong total', () => {
    const m = manifest();
    const bad = (patch: (x: Record<string, unknown>) => void) => {
      const x = JSON.parse(JSON.stringify(m)) as Record<string, unknown>;
      patch(x);
      return parseManifest(x);
    };
    expect(bad((x) => ((x.files as [{ name: string }])[0].name = '../evil'))).toMatch(/not a plain file name/);
    expect(bad((x) => ((x.files as [{ sha256: string }])[0].sha256 = 'abc'))).toMatch(/64 lowercase hex/);
    expect(bad((x) => (x.total_size = 1))).toMatch(/disagrees/);
    expect(bad((x) => (x.format = 'v9'))).toMatch(/unknown manifest format/);
  });
});

describe('fetchModel with the bundled manifest', () => {
  it('downloads, verifies and caches every file; the next load reads the cache and fetches nothing', async () => {
    const cache = new MemoryCache();
    const s = server();
    const events: StoreEvent[] = [];
    const first = await fetchModel(BASE, {
      manifest: manifest(),
      cache,
      fetch: s.fetch,
      onEvent: (e) => events.push(e),
    });
    expect(first.verified).toBe(true);
    expect(first.cached).toBe(true);
    expect(first.fromNetwork.sort()).toEqual([...FILES.keys()].sort());
    for (const [n, b] of FILES) expect(await same(first.files.get(n), b)).toBe(true);
    expect(cache.entries.size).toBe(FILES.size);
    const total = events.filter((e) => e.status === 'progress_total').at(-1);
    expect(total).toMatchObject({ loaded: manifest().total_size, total: manifest().total_size, progress: 100 });
    expect(events.filter((e) => e.status === 'done').length).toBe(FILES.size);

    const s2 = server();
    const second = await fetchModel(BASE, { manifest: manifest(), cache, fetch: s2.fetch });
    expect(second.fromCache.sort()).toEqual([...FILES.keys()].sort());
    expect(second.fromNetwork).toEqual([]);
    expect(s2.requests.size).toBe(0);
  });

  it('F9: a corrupted cache entry (config, tokenizer or a shard) is deleted and fetched again, never used', async () => {
    for (const victim of ['config.json', 'tokenizer.model', SHARD]) {
      const cache = new MemoryCache();
      await fetchModel(BASE, { manifest: manifest(), cache, fetch: server().fetch });
      const url = `${BASE}${victim}`;
      const entry = cache.entries.get(url);
      if (!entry) throw new Error('not cached');
      const bad = entry.body.slice();
      bad[bad.length >> 1] = (bad[bad.length >> 1] as number) ^ 1; // same size, one bit flipped
      cache.entries.set(url, { body: bad, headers: entry.headers });
      const events: StoreEvent[] = [];
      const s = server();
      const r = await fetchModel(BASE, { manifest: manifest(), cache, fetch: s.fetch, onEvent: (e) => events.push(e) });
      expect(r.refetched).toEqual([victim]);
      expect([...s.requests.keys()]).toEqual([victim]);
      expect(await same(r.files.get(victim), FILES.get(victim))).toBe(true);
      expect(await same(cache.entries.get(url)?.body, FILES.get(victim))).toBe(true);
      expect(events.some((e) => e.status === 'integrity' && e.action === 'refetch' && e.file === victim)).toBe(true);
    }
  });

  it('F7: a download cut at 10/50/99 % or short by one byte is retried, then succeeds', async () => {
    for (const cut of [0.1, 0.5, 0.99, -1]) {
      const cache = new MemoryCache();
      const s = server((name, body, attempt) =>
        name === SHARD && attempt < 3
          ? body.slice(0, cut < 0 ? body.length - 1 : Math.floor(body.length * cut))
          : undefined,
      );
      const events: StoreEvent[] = [];
      const r = await fetchModel(BASE, {
        manifest: manifest(),
        cache,
        fetch: s.fetch,
        onEvent: (e) => events.push(e),
        ...quick,
      });
      expect(s.requests.get(SHARD)).toBe(3);
      expect(events.filter((e) => e.status === 'integrity' && e.action === 'retry').length).toBe(2);
      expect(await same(r.files.get(SHARD), FILES.get(SHARD))).toBe(true);
      expect(await same(cache.entries.get(`${BASE}${SHARD}`)?.body, FILES.get(SHARD))).toBe(true);
    }
  });

  it('F7: always truncated → a typed error after 3 attempts, nothing cached for it; the next load downloads afresh', async () => {
    const cache = new MemoryCache();
    const s = server((name, body) => (name === SHARD ? body.slice(0, body.length - 1) : undefined));
    const err = await fetchModel(BASE, { manifest: manifest(), cache, fetch: s.fetch, ...quick }).catch((e) => e);
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.code).toBe(EngineErrorCode.INTEGRITY_MISMATCH);
    expect(err.message).toMatch(/truncated download.*gave up after 3 attempts/);
    expect(s.requests.get(SHARD)).toBe(3);
    expect(cache.entries.has(`${BASE}${SHARD}`)).toBe(false);
    // The verified files before it stay cached (the next load resumes); the shard is downloaded again.
    const ok = await fetchModel(BASE, { manifest: manifest(), cache, fetch: server().fetch });
    expect(ok.fromNetwork[0]).toBe(SHARD);
    expect(ok.fromCache).toEqual(
      manifest()
        .files.map((f) => f.name)
        .filter((n) => n < SHARD),
    );
    expect(ok.cached).toBe(true);
  });

  it('F9: bytes of the right size with the wrong sha256 (config, tokenizer, shard) → IntegrityError, not cached', async () => {
    for (const victim of ['config.json', 'tokenizer.model', SHARD]) {
      const cache = new MemoryCache();
      const s = server((name, body) => {
        if (name !== victim) return undefined;
        const b = body.slice();
        b[0] = (b[0] as number) ^ 0x20;
        return b;
      });
      const err = await fetchModel(BASE, { manifest: manifest(), cache, fetch: s.fetch, ...quick }).catch((e) => e);
      expect(err).toBeInstanceOf(IntegrityError);
      expect(err.message).toContain(`${victim}: sha256 is`);
      expect(cache.entries.has(`${BASE}${victim}`)).toBe(false);
    }
  });

  it('F8: an HTML page answering 200 is rejected at once and not cached; so is a 404', async () => {
    const page = '<!DOCTYPE html><html><body>Sign in</body></html>';
    for (const res of [
      () => new Response(page, { headers: { 'content-type': 'text/html; charset=utf-8' } }),
      () => new Response(page, { headers: { 'content-type': 'application/octet-stream' } }),
    ]) {
      const cache = new MemoryCache();
      const s = server((name) => (name === 'tokenizer.model' ? res() : undefined));
      const err = await fetchModel(BASE, { manifest: manifest(), cache, fetch: s.fetch, ...quick }).catch((e) => e);
      expect(isOwletError(err, EngineErrorCode.UNEXPECTED_CONTENT)).toBe(true);
      expect(err.message).toMatch(/answered with an HTML page/);
      expect(s.requests.get('tokenizer.model')).toBe(1);
      expect(cache.entries.has(`${BASE}tokenizer.model`)).toBe(false);
    }
    const cache = new MemoryCache();
    const gone = new Map(FILES);
    gone.delete('tokenizer.model');
    const err = await fetchModel(BASE, { manifest: manifest(), cache, fetch: server(undefined, gone).fetch }).catch(
      (e) => e,
    );
    expect(isOwletError(err, EngineErrorCode.INVALID_MODEL_SOURCE)).toBe(true);
    expect(err.message).toMatch(/tokenizer.model is not at .*HTTP 404/);
    expect(cache.entries.has(`${BASE}tokenizer.model`)).toBe(false);
    expect(looksLikeHtml(new TextEncoder().encode('  \n<html>'))).toBe(true);
    expect(looksLikeHtml(FILES.get(SHARD) as Uint8Array)).toBe(false);
  });

  it('F14: the quota running out mid-model removes every entry this load wrote and warns; the files still load', async () => {
    const cache = new MemoryCache(600_000); // room for the small files, not the large shard
    const events: StoreEvent[] = [];
    const r = await fetchModel(BASE, {
      manifest: manifest(),
      cache,
      fetch: server().fetch,
      onEvent: (e) => events.push(e),
      storageEstimate: async () => ({ usage: 600_000, quota: 600_000 }),
    });
    expect(cache.entries.size).toBe(0);
    expect(r.cached).toBe(false);
    expect(r.files.size).toBe(FILES.size);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]?.code).toBe(EngineErrorCode.QUOTA_EXCEEDED);
    expect(r.warnings[0]?.message).toMatch(
      /storage quota is full \(this site may store 0.6 MiB.*partial cache entry was removed/,
    );
    expect(events.some((e) => e.status === 'cache_warning' && e.code === 'QUOTA_EXCEEDED')).toBe(true);
  });

  it('removes cached files of the same folder that the manifest no longer lists', async () => {
    const cache = new MemoryCache();
    await cache.put(`${BASE}model-old.safetensors`, new Response(new Uint8Array(10)));
    await cache.put('http://owlet.test/other/keep.bin', new Response(new Uint8Array(10)));
    await fetchModel(BASE, { manifest: manifest(), cache, fetch: server().fetch });
    expect(cache.entries.has(`${BASE}model-old.safetensors`)).toBe(false);
    expect(cache.entries.has('http://owlet.test/other/keep.bin')).toBe(true);
  });
});

describe('fetchModel without a manifest (any model folder URL)', () => {
  it('discovers config, side files, tokenizer, index and shards; checks cached entries by the recorded hash', async () => {
    const cache = new MemoryCache();
    const noManifest = new Map(FILES);
    const s = server(undefined, noManifest);
    const r = await fetchModel(BASE, { cache, fetch: s.fetch });
    expect(r.verified).toBe(false);
    expect([...r.files.keys()].sort()).toEqual([...FILES.keys()].sort());
    expect(s.requests.get('owlet-manifest.json')).toBe(1);
    expect(s.requests.has('tokenizer.json')).toBe(false);
    const url = `${BASE}${SHARD}`;
    expect(cache.entries.get(url)?.headers.get('x-owlet-sha256')).toBe(
      createHash('sha256')
        .update(FILES.get(SHARD) as Uint8Array)
        .digest('hex'),
    );
    // A truncated cache entry is caught by its recorded size and hash.
    const e = cache.entries.get(url);
    if (!e) throw new Error('not cached');
    cache.entries.set(url, { body: e.body.slice(0, -1), headers: e.headers });
    const again = await fetchModel(BASE, { cache, fetch: server(undefined, noManifest).fetch });
    expect(again.refetched).toEqual([SHARD]);
    expect(again.fromCache.length).toBe(FILES.size - 1);
  });

  it('a manifest served beside the files is used and enforced', async () => {
    const withManifest = new Map(FILES);
    withManifest.set('owlet-manifest.json', new TextEncoder().encode(JSON.stringify(manifest())));
    const s = server(
      (name, body) => (name === 'config.json' ? body.map((x) => (x === 0x32 ? 0x33 : x)) : undefined),
      withManifest,
    );
    const err = await fetchModel(BASE, { fetch: s.fetch, ...quick }).catch((e) => e);
    expect(err).toBeInstanceOf(IntegrityError);
  });

  it('refuses a folder without config.json, and shard names that leave the folder', async () => {
    const none = new Map(FILES);
    none.delete('config.json');
    const err = await fetchModel(BASE, { fetch: server(undefined, none).fetch }).catch((e) => e);
    expect(err.message).toMatch(/no config.json/);
    const evil = new Map(FILES);
    evil.set(
      'model.safetensors.index.json',
      new TextEncoder().encode(JSON.stringify({ weight_map: { a: '../../secret.safetensors' } })),
    );
    const err2 = await fetchModel(BASE, { fetch: server(undefined, evil).fetch }).catch((e) => e);
    expect(isOwletError(err2)).toBe(true);
    expect(err2.message).toMatch(/secret/);
  });
});

describe('localModel (a picked folder)', () => {
  const file = (path: string, bytes: Uint8Array) => {
    const f = new File([bytes as BlobPart], path.split('/').pop() as string);
    Object.defineProperty(f, 'webkitRelativePath', { value: path });
    return f;
  };
  it('takes the files beside the shallowest config.json and checks them against a manifest it holds', async () => {
    const picked = [...FILES].map(([n, b]) => file(`parent/m/${n}`, b));
    picked.push(file('parent/m/sub/config.json', new Uint8Array(3)), file('parent/readme.txt', new Uint8Array(1)));
    const r = await localModel(picked);
    expect(r.id).toBe('m');
    expect([...r.files.keys()].sort()).toEqual([...FILES.keys()].sort());
    expect(r.verified).toBe(false);

    const withManifest = [
      ...picked,
      file('parent/m/owlet-manifest.json', new TextEncoder().encode(JSON.stringify(manifest()))),
    ];
    expect((await localModel(withManifest)).verified).toBe(true);
    const tampered = withManifest.map((f) =>
      f.name === 'tokenizer.model' ? file('parent/m/tokenizer.model', new Uint8Array(f.size)) : f,
    );
    await expect(localModel(tampered)).rejects.toBeInstanceOf(IntegrityError);
    await expect(localModel([file('x/readme.txt', new Uint8Array(1))])).rejects.toThrow(/no config.json/);
    // Paths passed alongside (webkitRelativePath is lost when Files cross postMessage).
    const bare = picked.map((f) => new File([f], f.name));
    const paths = picked.map((f) => f.webkitRelativePath);
    const r2 = await localModel(bare, { paths });
    expect([...r2.files.keys()].sort()).toEqual([...FILES.keys()].sort());
  });
});
