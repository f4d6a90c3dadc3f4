/**
 * Getting a model folder's files into memory, checked, for `fromPretrained`: from a URL (the bundled
 * model, or any server) through the browser cache, or from files the user picked.
 *
 * Reliability (checklist rows):
 *  - F7: every download is measured against the manifest size (or Content-Length) and hashed while
 *    it streams; a short or wrong body is retried with backoff (3 attempts), then a typed error.
 *    Nothing that failed a check is cached, so the next load downloads again: never "broken until
 *    the cache is cleared".
 *  - F8: an HTML page (a 200 from a login wall or SPA fallback) or a 404 is rejected and not cached.
 *  - F9: with a manifest every file (config, tokenizer and each weight shard) must match its sha256;
 *    a cached entry is re-hashed before use, and a mismatch is deleted and fetched again.
 *  - F14: when the storage quota is exceeded while caching, every entry this load wrote is removed
 *    and a QUOTA_EXCEEDED warning says so; the model still loads from memory.
 */
import { parseShardIndex } from '@owlet/checkpoint';
import { OwletError } from '@owlet/errors';

import { EngineErrorCode, type SerializedError } from './errors.js';
import { IntegrityError, serializeError } from './typed-errors.js';
import { MANIFEST_NAME, parseManifest, type ManifestFile, type ModelManifest } from './manifest.js';
import { Sha256 } from './sha256.js';

/** The Cache API subset the store uses (transformers.js' `customCache` shape plus delete/keys). */
export interface ModelCache {
  match(url: string): Promise<Response | undefined>;
  put(url: string, response: Response): Promise<void>;
  delete(url: string): Promise<boolean>;
  keys(): Promise<string[]>;
}

/** The Cache Storage name owlet uses (transformers.js calls this `env.cacheKey`). */
export const CACHE_NAME = 'owlet-models';

/** The browser's Cache Storage, or null where there is none (insecure context, some private modes). */
export async function openBrowserCache(name = CACHE_NAME): Promise<ModelCache | null> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) return null;
  let c: Cache;
  try {
    c = await storage.open(name);
  } catch {
    return null;
  }
  return {
    match: (url) => c.match(url),
    put: (url, res) => c.put(url, res),
    delete: (url) => c.delete(url),
    keys: async () => (await c.keys()).map((r) => r.url),
  };
}

/** Deletes owlet's whole Cache Storage entry. */
export async function clearBrowserCache(name = CACHE_NAME): Promise<boolean> {
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  return storage ? storage.delete(name) : false;
}

/** Progress of getting the files, in transformers.js' event shape (plus owlet's integrity/cache notes). */
export type StoreEvent =
  | { status: 'initiate'; name: string; file: string }
  | { status: 'download'; name: string; file: string }
  | { status: 'progress'; name: string; file: string; loaded: number; total: number; progress: number }
  | { status: 'done'; name: string; file: string; source: 'cache' | 'network' | 'local' }
  | {
      status: 'progress_total';
      name: string;
      loaded: number;
      total: number;
      progress: number;
      files: Record<string, { loaded: number; total: number }>;
    }
  | { status: 'integrity'; name: string; file: string; action: 'refetch' | 'retry'; message: string }
  | { status: 'cache_warning'; name: string; code: string; message: string };

export interface FetchModelOptions {
  /** Files to expect; without one, `owlet-manifest.json` is looked for, else the folder is discovered. */
  manifest?: ModelManifest;
  fetch?: typeof fetch;
  /** Where to keep the files for the next visit; null: no caching. */
  cache?: ModelCache | null;
  signal?: AbortSignal;
  onEvent?: (e: StoreEvent) => void;
  /** Attempts per file (default 3). */
  attempts?: number;
  /** First backoff in ms (default 250; then ×4). */
  backoffMs?: number;
  /** For the quota message (default navigator.storage.estimate). */
  storageEstimate?: () => Promise<{ usage?: number; quota?: number }>;
}

export interface LoadedFiles {
  /** A name for the model in messages (manifest id, URL, or folder name). */
  id: string;
  /** File name → bytes, ready for `fromPretrained(map)`. */
  files: Map<string, Blob>;
  /** The manifest: given, found, or computed from what was read (sha256 of each file). */
  manifest: ModelManifest;
  /** Every file matched a sha256 recorded before this load (a manifest), not just its own download. */
  verified: boolean;
  fromCache: string[];
  fromNetwork: string[];
  /** Cached entries that failed their check and were downloaded again. */
  refetched: string[];
  /** Every file is now in the cache. */
  cached: boolean;
  warnings: SerializedError[];
}

const SIDE_FILES_OPTIONAL = ['generation_config.json', 'preprocessor_config.json'];
const MAX_JSON = 64 * 1024 * 1024;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(abortError(signal));
      },
      { once: true },
    );
  });
}

function abortError(signal: AbortSignal): OwletError {
  return new OwletError('ABORTED', 'loading was cancelled', { cause: signal.reason });
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}

function mib(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** Whether bytes look like an HTML page (the F8 case: a 200 that is not the file). */
export function looksLikeHtml(head: Uint8Array): boolean {
  const text = new TextDecoder('latin1').decode(head.subarray(0, 512)).trimStart().toLowerCase();
  return text.startsWith('<!doctype html') || text.startsWith('<html') || text.startsWith('<head');
}

interface Downloaded {
  blob: Blob;
  sha256: string;
}

/** A non-retryable failure (bad status, wrong content): retrying cannot help. */
class Fatal extends Error {
  constructor(readonly error: OwletError) {
    super(error.message);
  }
}

function isQuotaError(e: unknown): boolean {
  const n = (e as { name?: unknown } | null)?.name;
  return n === 'QuotaExceededError' || n === 'NS_ERROR_DOM_QUOTA_REACHED';
}

/** Hashes a blob by streaming it (no second copy), reporting bytes read. */
async function hashBlob(blob: Blob, onBytes: (n: number) => void, signal?: AbortSignal): Promise<string> {
  const h = new Sha256();
  const reader = blob.stream().getReader();
  let n = 0;
  for (;;) {
    throwIfAborted(signal);
    const { done, value } = await reader.read();
    if (done) break;
    h.update(value);
    n += value.byteLength;
    onBytes(n);
  }
  return h.hex();
}

class Store {
  private readonly f: typeof fetch;
  private readonly emit: (e: StoreEvent) => void;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private cache: ModelCache | null;
  private readonly written: string[] = [];
  readonly warnings: SerializedError[] = [];
  readonly fromCache: string[] = [];
  readonly fromNetwork: string[] = [];
  readonly refetched: string[] = [];
  private readonly progress = new Map<string, { loaded: number; total: number }>();
  private cacheFailed = false;

  constructor(
    private readonly base: string,
    private readonly id: string,
    private readonly o: FetchModelOptions,
  ) {
    const f = o.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new OwletError(EngineErrorCode.DOWNLOAD_FAILED, 'no fetch is available here');
    this.f = f.bind(globalThis);
    this.emit = o.onEvent ?? (() => {});
    this.attempts = Math.max(1, o.attempts ?? 3);
    this.backoffMs = o.backoffMs ?? 250;
    this.cache = o.cache ?? null;
  }

  get allCached(): boolean {
    return this.cache !== null && !this.cacheFailed;
  }

  /** Announces files whose size is known, so the overall bar has its total from the start. */
  plan(files: readonly { name: string; size?: number }[]): void {
    for (const f of files) if (!this.progress.has(f.name)) this.progress.set(f.name, { loaded: 0, total: f.size ?? 0 });
  }

  private report(file: string, loaded: number, total: number): void {
    this.progress.set(file, { loaded, total });
    this.emit({
      status: 'progress',
      name: this.id,
      file,
      loaded,
      total,
      progress: total > 0 ? (100 * loaded) / total : 0,
    });
    let l = 0;
    let t = 0;
    const files: Record<string, { loaded: number; total: number }> = {};
    for (const [k, v] of this.progress) {
      files[k] = { ...v };
      l += v.loaded;
      t += v.total;
    }
    this.emit({
      status: 'progress_total',
      name: this.id,
      loaded: l,
      total: t,
      progress: t > 0 ? (100 * l) / t : 0,
      files,
    });
  }

  private readonly initiated = new Set<string>();

  private initiate(file: string): void {
    if (this.initiated.has(file)) return;
    this.initiated.add(file);
    this.emit({ status: 'initiate', name: this.id, file });
  }

  url(name: string): string {
    return new URL(name, this.base).href;
  }

  /**
   * One file: from the cache when its entry passes the check, else from the network (verified), then
   * cached. `undefined` when an optional file does not exist.
   */
  async get(spec: { name: string; size?: number; sha256?: string }, optional = false): Promise<Blob | undefined> {
    const { signal } = this.o;
    const url = this.url(spec.name);
    const hit = await this.fromCacheIfValid(url, spec);
    if (hit) {
      this.fromCache.push(spec.name);
      this.emit({ status: 'done', name: this.id, file: spec.name, source: 'cache' });
      return hit;
    }
    const got = await this.download(url, spec, optional);
    if (!got) {
      this.progress.delete(spec.name);
      return undefined;
    }
    this.fromNetwork.push(spec.name);
    throwIfAborted(signal);
    await this.store(url, spec.name, got);
    this.emit({ status: 'done', name: this.id, file: spec.name, source: 'network' });
    return got.blob;
  }

  private async fromCacheIfValid(url: string, spec: { name: string; size?: number; sha256?: string }) {
    if (!this.cache) return undefined;
    let res: Response | undefined;
    try {
      res = await this.cache.match(url);
    } catch {
      return undefined;
    }
    if (!res) return undefined;
    this.initiate(spec.name);
    // With a manifest its hash is the truth; without one, the hash recorded when the entry was written.
    const expected = spec.sha256 ?? res.headers.get('x-owlet-sha256') ?? undefined;
    const blob = await res.blob();
    const size = spec.size ?? Number(res.headers.get('x-owlet-size') ?? Number.NaN);
    let problem: string | undefined;
    if (!expected) problem = 'the cached entry has no recorded sha256';
    else if (blob.size !== size) problem = `the cached entry is ${blob.size} bytes, expected ${size}`;
    else {
      const got = await hashBlob(blob, (n) => this.report(spec.name, n, blob.size), this.o.signal);
      if (got !== expected) problem = `the cached entry's sha256 is ${got}, expected ${expected}`;
    }
    if (!problem) return blob;
    // F9: never use it, never keep it; the download below replaces it.
    await this.cache.delete(url).catch(() => false);
    this.refetched.push(spec.name);
    this.emit({
      status: 'integrity',
      name: this.id,
      file: spec.name,
      action: 'refetch',
      message: `${spec.name}: ${problem}; it was removed from the cache and downloaded again`,
    });
    this.report(spec.name, 0, spec.size ?? 0);
    return undefined;
  }

  private async download(
    url: string,
    spec: { name: string; size?: number; sha256?: string },
    optional: boolean,
  ): Promise<Downloaded | undefined> {
    const { signal } = this.o;
    let last: OwletError | undefined;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      throwIfAborted(signal);
      try {
        return await this.downloadOnce(url, spec, optional);
      } catch (e) {
        if (signal?.aborted) throw abortError(signal);
        if (e instanceof Fatal) throw e.error;
        if (e instanceof NotFound) return undefined;
        last =
          e instanceof OwletError
            ? e
            : new OwletError(EngineErrorCode.DOWNLOAD_FAILED, `${spec.name}: ${String((e as Error)?.message ?? e)}`, {
                cause: e,
              });
        if (attempt < this.attempts) {
          this.emit({
            status: 'integrity',
            name: this.id,
            file: spec.name,
            action: 'retry',
            message: `${last.message} (attempt ${attempt} of ${this.attempts}; retrying)`,
          });
          this.report(spec.name, 0, spec.size ?? 0);
          await sleep(this.backoffMs * 4 ** (attempt - 1), signal);
        }
      }
    }
    const final = last as OwletError;
    const message = `${final.message} — gave up after ${this.attempts} attempts; nothing was cached, so loading again downloads afresh`;
    throw final instanceof IntegrityError
      ? new IntegrityError(message, { details: { ...final.details, url }, cause: final })
      : new OwletError(final.code, message, { details: { ...final.details, url }, cause: final });
  }

  private async downloadOnce(
    url: string,
    spec: { name: string; size?: number; sha256?: string },
    optional: boolean,
  ): Promise<Downloaded> {
    const { signal } = this.o;
    let res: Response;
    try {
      // no-store: a retry must not be answered by the same bad bytes from the HTTP cache.
      res = await this.f(url, { cache: 'no-store', ...(signal ? { signal } : {}) });
    } catch (e) {
      throwIfAborted(signal);
      throw new OwletError(EngineErrorCode.DOWNLOAD_FAILED, `${spec.name}: fetch failed: ${String(e)}`, { cause: e });
    }
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel().catch(() => {});
      if (optional) throw new NotFound();
      throw new Fatal(
        new OwletError(EngineErrorCode.INVALID_MODEL_SOURCE, `${spec.name} is not at ${url} (HTTP ${res.status})`, {
          details: { url, status: res.status },
        }),
      );
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      const err = new OwletError(EngineErrorCode.DOWNLOAD_FAILED, `${spec.name}: HTTP ${res.status} from ${url}`, {
        details: { url, status: res.status },
      });
      // Client errors other than timeouts / rate limits will not change on a retry.
      if (res.status < 500 && res.status !== 408 && res.status !== 429) throw new Fatal(err);
      throw err;
    }
    // Announced only once the file is known to exist (a missing optional file shows no row).
    this.initiate(spec.name);
    this.emit({ status: 'download', name: this.id, file: spec.name });
    const type = res.headers.get('content-type') ?? '';
    if (/text\/html/i.test(type) && !spec.name.endsWith('.html')) {
      await res.body?.cancel().catch(() => {});
      throw new Fatal(htmlError(spec.name, url, `content-type ${type}`));
    }
    const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
    const header = res.headers.get('content-length');
    const announced = !encoded && header !== null && /^\d+$/.test(header) ? Number(header) : undefined;
    if (spec.size !== undefined && announced !== undefined && announced !== spec.size) {
      await res.body?.cancel().catch(() => {});
      throw new IntegrityError(`${spec.name}: the server announces ${announced} bytes, the manifest ${spec.size}`, {
        details: { file: spec.name, expected: spec.size, announced },
      });
    }
    const expected = spec.size ?? announced;
    const total = expected ?? 0;
    const h = new Sha256();
    const chunks: Uint8Array[] = [];
    let loaded = 0;
    this.report(spec.name, 0, total);
    const reader = res.body?.getReader();
    if (reader) {
      for (;;) {
        if (signal?.aborted) {
          await reader.cancel().catch(() => {});
          throw abortError(signal);
        }
        const { done, value } = await reader.read();
        if (done) break;
        if (loaded === 0 && looksLikeHtml(value) && !spec.name.endsWith('.html')) {
          await reader.cancel().catch(() => {});
          throw new Fatal(htmlError(spec.name, url, 'the body is an HTML page'));
        }
        if (expected !== undefined && loaded + value.byteLength > expected) {
          await reader.cancel().catch(() => {});
          throw new IntegrityError(`${spec.name}: the server sent more than the expected ${expected} bytes`, {
            details: { file: spec.name, expected },
          });
        }
        h.update(value);
        chunks.push(value);
        loaded += value.byteLength;
        this.report(spec.name, loaded, Math.max(total, loaded));
      }
    }
    if (expected !== undefined && loaded !== expected) {
      throw new IntegrityError(`${spec.name}: truncated download, ${loaded} of ${expected} bytes`, {
        details: { file: spec.name, expected, received: loaded },
      });
    }
    const sha256 = h.hex();
    if (spec.sha256 && sha256 !== spec.sha256) {
      throw new IntegrityError(`${spec.name}: sha256 is ${sha256}, the manifest says ${spec.sha256}`, {
        details: { file: spec.name, expected: spec.sha256, actual: sha256 },
      });
    }
    return { blob: new Blob(chunks as BlobPart[], { type: type || 'application/octet-stream' }), sha256 };
  }

  private async store(url: string, name: string, got: Downloaded): Promise<void> {
    const cache = this.cache;
    if (!cache || this.cacheFailed) return;
    try {
      await cache.put(
        url,
        new Response(got.blob, {
          headers: {
            'content-type': got.blob.type || 'application/octet-stream',
            'content-length': String(got.blob.size),
            'x-owlet-sha256': got.sha256,
            'x-owlet-size': String(got.blob.size),
          },
        }),
      );
      this.written.push(url);
    } catch (e) {
      this.cacheFailed = true;
      // F14: a partial model in the cache is worse than none; remove what this load wrote.
      const removed = [...this.written, url];
      await Promise.all(removed.map((u) => cache.delete(u).catch(() => false)));
      this.written.length = 0;
      let message: string;
      let code: EngineErrorCode;
      if (isQuotaError(e)) {
        code = EngineErrorCode.QUOTA_EXCEEDED;
        let room = '';
        try {
          const est = await (this.o.storageEstimate ?? defaultEstimate)();
          if (est.quota !== undefined)
            room = ` (this site may store ${mib(est.quota)} and uses ${mib(est.usage ?? 0)})`;
        } catch {
          // no estimate
        }
        message =
          `The browser's storage quota is full${room}: caching ${this.id} failed at ${name}. ` +
          `The partial cache entry was removed and the model runs from memory this time; free some space ` +
          `(or clear the owlet cache) to keep it for the next visit.`;
      } else {
        code = EngineErrorCode.CACHE_WRITE_FAILED;
        message = `Caching ${name} failed (${String((e as Error)?.message ?? e)}); the partial cache entry was removed and the model runs from memory this time.`;
      }
      const w = serializeError(new OwletError(code, message, { details: { file: name } }));
      this.warnings.push(w);
      this.emit({ status: 'cache_warning', name: this.id, code, message });
    }
  }

  /** Removes cached entries under `prefix` that are not in `keep` (older versions of the files). */
  async prune(prefix: string, keep: Set<string>): Promise<void> {
    if (!this.cache) return;
    try {
      for (const k of await this.cache.keys()) if (k.startsWith(prefix) && !keep.has(k)) await this.cache.delete(k);
    } catch {
      // pruning is housekeeping only
    }
  }
}

class NotFound extends Error {}

function htmlError(file: string, url: string, why: string): OwletError {
  return new OwletError(
    EngineErrorCode.UNEXPECTED_CONTENT,
    `${file}: ${url} answered with an HTML page (${why}), not the file; is the URL a model folder (for Hugging Face, …/resolve/main/)?`,
    { details: { file, url } },
  );
}

async function defaultEstimate(): Promise<{ usage?: number; quota?: number }> {
  const s = (globalThis as { navigator?: { storage?: StorageManager } }).navigator?.storage;
  if (!s?.estimate) return {};
  const e = await s.estimate();
  return { ...(e.usage !== undefined ? { usage: e.usage } : {}), ...(e.quota !== undefined ? { quota: e.quota } : {}) };
}

async function json(blob: Blob, name: string): Promise<unknown> {
  if (blob.size > MAX_JSON) throw new OwletError(EngineErrorCode.INVALID_MODEL_SOURCE, `${name} is too large`);
  try {
    return JSON.parse(await blob.text());
  } catch (e) {
    throw new OwletError(EngineErrorCode.INVALID_MODEL_SOURCE, `${name} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Gets a model folder from a URL prefix. With a manifest (given, or `owlet-manifest.json` in the
 * folder) exactly its files are read and each must match its sha256; without one the folder is
 * discovered (config.json, side files, tokenizer, then the index and its shards or a single file).
 */
export async function fetchModel(baseUrl: string, options: FetchModelOptions = {}): Promise<LoadedFiles> {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  let manifest = options.manifest;
  const { onEvent: _quiet, ...probeOptions } = options;
  const probe = new Store(base, base, { ...probeOptions, cache: null });
  if (!manifest) {
    // A manifest beside the files (never cached: it is what the cache is checked against).
    const m = await probe.get({ name: MANIFEST_NAME }, true);
    if (m) {
      const parsed = parseManifest(await json(m, MANIFEST_NAME));
      if (typeof parsed === 'string')
        throw new OwletError(EngineErrorCode.INVALID_MODEL_SOURCE, `${base}${MANIFEST_NAME}: ${parsed}`);
      manifest = parsed;
    }
  }
  const id = manifest?.id ?? base;
  const store = new Store(base, id, options);
  const files = new Map<string, Blob>();
  const computed: ManifestFile[] = [];
  const add = async (spec: { name: string; size?: number; sha256?: string }, optional = false) => {
    const b = await store.get(spec, optional);
    if (b) files.set(spec.name, b);
    return b;
  };
  if (manifest) {
    store.plan(manifest.files);
    for (const f of manifest.files) await add(f);
    await store.prune(base, new Set(manifest.files.map((f) => store.url(f.name))));
  } else {
    const config = await add({ name: 'config.json' }, true);
    if (!config)
      throw new OwletError(
        EngineErrorCode.INVALID_MODEL_SOURCE,
        `no config.json at ${base}: is this a model folder (the one that holds config.json and the weights)?`,
      );
    for (const n of SIDE_FILES_OPTIONAL) await add({ name: n }, true);
    if (!(await add({ name: 'tokenizer.model' }, true)) && !(await add({ name: 'tokenizer.json' }, true))) {
      throw new OwletError(EngineErrorCode.INVALID_MODEL_SOURCE, `no tokenizer.model or tokenizer.json at ${base}`);
    }
    let found = false;
    for (const [index, single] of [
      ['model.safetensors.index.json', 'model.safetensors'],
      ['pytorch_model.bin.index.json', 'pytorch_model.bin'],
    ] as const) {
      const idx = await add({ name: index }, true);
      if (idx) {
        // parseShardIndex validates every shard name (no paths, no ..) before anything is fetched.
        const shards = parseShardIndex(await idx.text(), index).shards;
        for (const s of shards) await add({ name: s });
        found = true;
        break;
      }
      if (await add({ name: single }, true)) {
        found = true;
        break;
      }
    }
    if (!found)
      throw new OwletError(EngineErrorCode.INVALID_MODEL_SOURCE, `no weights (safetensors or .bin) at ${base}`);
  }
  for (const [name, blob] of files) {
    const given = manifest?.files.find((f) => f.name === name);
    computed.push({ name, size: blob.size, sha256: given?.sha256 ?? '' });
  }
  return {
    id,
    files,
    manifest: manifest ?? {
      format: 'owlet-manifest/1',
      id,
      files: computed,
      total_size: computed.reduce((a, f) => a + f.size, 0),
    },
    verified: manifest !== undefined,
    fromCache: store.fromCache,
    fromNetwork: store.fromNetwork,
    refetched: store.refetched,
    cached: store.allCached,
    warnings: store.warnings,
  };
}

/**
 * A folder the user picked (`<input webkitdirectory>`) or dropped: the files beside the shallowest
 * `config.json`. If the folder holds an `owlet-manifest.json`, every file is checked against it.
 */
export async function localModel(
  picked: readonly File[],
  options: Pick<FetchModelOptions, 'onEvent' | 'signal'> & { paths?: readonly string[] } = {},
): Promise<LoadedFiles> {
  const emit = options.onEvent ?? (() => {});
  const given = new Map(picked.map((f, i) => [f, options.paths?.[i]]));
  const pathOf = (f: File) =>
    given.get(f) || (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
  const configs = picked.filter((f) => pathOf(f).split('/').pop() === 'config.json');
  if (configs.length === 0) {
    throw new OwletError(
      EngineErrorCode.INVALID_MODEL_SOURCE,
      `the picked files hold no config.json (${picked.length} files): pick the folder that holds config.json, the tokenizer and the weights`,
    );
  }
  const depth = (f: File) => pathOf(f).split('/').length;
  const top = configs.reduce((a, b) => (depth(b) < depth(a) ? b : a));
  const dir = pathOf(top).split('/').slice(0, -1).join('/');
  const inDir = picked.filter((f) => pathOf(f).split('/').slice(0, -1).join('/') === dir);
  const id = dir.split('/').pop() || 'picked folder';
  const files = new Map<string, Blob>();
  for (const f of inDir) files.set(pathOf(f).split('/').pop() as string, f);
  let manifest: ModelManifest | undefined;
  const mf = files.get(MANIFEST_NAME);
  if (mf) {
    const parsed = parseManifest(await json(mf, MANIFEST_NAME));
    if (typeof parsed === 'string')
      throw new OwletError(EngineErrorCode.INVALID_MODEL_SOURCE, `${MANIFEST_NAME}: ${parsed}`);
    manifest = parsed;
    files.delete(MANIFEST_NAME);
    for (const spec of manifest.files) {
      const blob = files.get(spec.name);
      if (!blob) throw new IntegrityError(`${spec.name} is listed in ${MANIFEST_NAME} but not in the folder`);
      emit({ status: 'initiate', name: id, file: spec.name });
      const got = await hashBlob(
        blob,
        (n) =>
          emit({
            status: 'progress',
            name: id,
            file: spec.name,
            loaded: n,
            total: blob.size,
            progress: (100 * n) / Math.max(1, blob.size),
          }),
        options.signal,
      );
      if (blob.size !== spec.size || got !== spec.sha256) {
        throw new IntegrityError(
          `${spec.name}: ${blob.size} bytes with sha256 ${got}; ${MANIFEST_NAME} says ${spec.size} bytes, ${spec.sha256}`,
          { details: { file: spec.name } },
        );
      }
      emit({ status: 'done', name: id, file: spec.name, source: 'local' });
    }
  } else {
    for (const [name, blob] of files) {
      emit({ status: 'initiate', name: id, file: name });
      emit({ status: 'progress', name: id, file: name, loaded: blob.size, total: blob.size, progress: 100 });
      emit({ status: 'done', name: id, file: name, source: 'local' });
    }
  }
  return {
    id,
    files,
    manifest: manifest ?? {
      format: 'owlet-manifest/1',
      id,
      files: [...files].map(([name, b]) => ({ name, size: b.size, sha256: '' })),
      total_size: [...files.values()].reduce((a, b) => a + b.size, 0),
    },
    verified: manifest !== undefined,
    fromCache: [],
    fromNetwork: [],
    refetched: [],
    cached: false,
    warnings: [],
  };
}
