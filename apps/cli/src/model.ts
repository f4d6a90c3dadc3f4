/** Loading the model and the images the commands need. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { fetchBounded, isCheckpointError, type FetchLimits } from '@owlet/checkpoint';
import { fromPretrained, type MplugOwlModel } from '@owlet/mplug-owl';
import {
  cpuEngineInfo,
  isWeightDType,
  type BackendInfo,
  type BackendRequest,
  type DTypeRequest,
  type WeightDType,
} from '@owlet/core';
import { decodeImage, type DecodedImage } from '@owlet/vision-encoder';

import { UsageError } from './errors.js';
import { numFlag, type FlagSpecs } from './flags.js';
import { progressReporter } from './progress.js';

/** The model shipped with the CLI (random weights in the released folder layout). */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../models/owlet-tiny-random/', import.meta.url));

export const BACKENDS = ['auto', 'webgpu', 'wasm', 'cpu', 'tensorflow'] as const;

export function parseBackend(v: string | undefined): BackendRequest {
  const b = v ?? 'auto';
  if (!(BACKENDS as readonly string[]).includes(b)) {
    throw new UsageError(`unknown backend ${JSON.stringify(b)}`, `use one of ${BACKENDS.join(', ')}`);
  }
  return b as BackendRequest;
}

/** `--dtype`: how the language model's Linear weights are stored (quantized while loading). */
export function parseDtype(v: string | undefined): WeightDType | undefined {
  if (v === undefined) return undefined;
  if (!isWeightDType(v)) throw new UsageError(`unknown dtype ${JSON.stringify(v)}`, 'use one of fp32, fp16, q8, q4');
  return v;
}

/** `--threads N`: threads of the CPU engine (default: every core). */
export function parseThreads(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`--threads must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

/** One line about the CPU engine for stderr (null when it is not running). */
export function cpuEngineLine(): string | null {
  const i = cpuEngineInfo();
  if (!i) return null;
  return `cpu engine: ${i.threads} thread(s), ${(i.weightBytes / 2 ** 20).toFixed(0)} MiB of packed weights${i.note ? ` (${i.note})` : ''}`;
}

export interface LoadedModel {
  model: MplugOwlModel;
  source: string;
  /** True when the answering model has random weights (the default model). */
  randomWeights: boolean;
  loadMs: number;
}

/** The network flags of every command that may fetch (a model URL, an image URL). */
export const NETWORK_OPTIONS = {
  'fetch-timeout': { type: 'string' },
  'allow-redirect': { type: 'string', multiple: true },
} as const satisfies FlagSpecs;

/** Limits of the fetches a command makes, from `--fetch-timeout S` and `--allow-redirect ORIGIN`. */
export function networkLimits(values: { 'fetch-timeout'?: string; 'allow-redirect'?: string[] }): FetchLimits {
  const s = numFlag('fetch-timeout', values['fetch-timeout'], (n) => n > 0 && n <= 3600, 'seconds in (0, 3600]');
  const out: FetchLimits = {};
  if (s !== undefined) {
    out.connectTimeoutMs = s * 1000;
    out.readTimeoutMs = s * 1000;
  }
  const origins: string[] = [];
  for (const o of values['allow-redirect'] ?? []) {
    let u: URL;
    try {
      u = new URL(o);
    } catch {
      throw new UsageError(
        `--allow-redirect needs an origin such as https://cdn.example.com, got ${JSON.stringify(o)}`,
      );
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:')
      throw new UsageError(`--allow-redirect needs an http(s) origin, got ${JSON.stringify(o)}`);
    origins.push(u.origin);
  }
  if (origins.length) out.allowRedirectOrigins = origins;
  return out;
}

export async function loadModel(
  modelArg: string | undefined,
  opts: {
    backend: BackendRequest;
    quiet: boolean;
    signal?: AbortSignal;
    dtype?: DTypeRequest;
    threads?: number;
    network?: FetchLimits;
  },
): Promise<LoadedModel> {
  let source: string;
  if (modelArg === undefined) {
    source = DEFAULT_MODEL_DIR;
  } else if (/^https?:\/\//i.test(modelArg)) {
    source = modelArg.endsWith('/') ? modelArg : `${modelArg}/`;
  } else {
    source = resolve(modelArg);
    if (!existsSync(source))
      throw new UsageError(`model folder not found: ${modelArg}`, 'pass --model DIR_OR_URL of a checkpoint folder');
    if (!statSync(source).isDirectory())
      throw new UsageError(
        `--model must be a folder, got a file: ${modelArg}`,
        'pass the folder that holds config.json',
      );
  }
  const t0 = performance.now();
  const model = await fromPretrained(source, {
    backend: opts.backend,
    ...(opts.dtype !== undefined ? { dtype: opts.dtype } : {}),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    onProgress: progressReporter({ quiet: opts.quiet, tty: Boolean(process.stderr.isTTY) }),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.network ? { fetch_limits: opts.network } : {}),
  });
  const randomWeights = modelArg === undefined || typeof model.config.raw.owlet_note === 'string';
  return { model, source, randomWeights, loadMs: performance.now() - t0 };
}

const MAX_IMAGE_BYTES = 64 * 1024 * 1024;
/** Image URLs: 5 s to answer and 10 s between bytes by default (--fetch-timeout sets both). */
const IMAGE_FETCH: FetchLimits = { connectTimeoutMs: 5_000, readTimeoutMs: 10_000 };

/** An image given as a path, an http(s) URL or a data: URL → its bytes (at most 64 MiB, checked while it streams). */
export async function readImage(arg: string, signal?: AbortSignal, network: FetchLimits = {}): Promise<Uint8Array> {
  if (arg.startsWith('data:')) {
    const m = /^data:([^;,]*)(;base64)?,(.*)$/s.exec(arg);
    if (!m) throw new UsageError('malformed data: URL for --image');
    const payload = m[3] ?? '';
    if (payload.length > (MAX_IMAGE_BYTES * 4) / 3 + 4)
      throw new UsageError(`the data: URL given to --image is over ${MAX_IMAGE_BYTES} bytes`);
    const bytes = m[2] ? Buffer.from(payload, 'base64') : Buffer.from(decodeURIComponent(payload), 'latin1');
    if (bytes.length === 0) throw new UsageError('the data: URL given to --image is empty');
    return new Uint8Array(bytes);
  }
  if (/^https?:\/\//i.test(arg)) {
    try {
      const r = await fetchBounded(
        arg,
        { refuseHtml: true },
        { ...IMAGE_FETCH, ...network, maxBytes: MAX_IMAGE_BYTES, ...(signal ? { signal } : {}) },
      );
      if (!r.response.ok) {
        await r.cancel();
        throw new UsageError(`could not fetch image ${arg}: HTTP ${r.response.status}`);
      }
      return await r.readBody();
    } catch (e) {
      if (isCheckpointError(e) && e.code !== 'ABORTED') {
        throw new UsageError(`could not fetch image: ${e.message.split('\n')[0]}`);
      }
      throw e;
    }
  }
  const path = resolve(arg);
  if (!existsSync(path)) throw new UsageError(`image not found: ${arg}`, 'check the path given to --image');
  const st = statSync(path);
  if (!st.isFile()) throw new UsageError(`--image must be a regular file: ${arg}`);
  if (st.size > MAX_IMAGE_BYTES)
    throw new UsageError(`image ${arg} is ${st.size} bytes; the limit is ${MAX_IMAGE_BYTES}`);
  if (st.size === 0) throw new UsageError(`image ${arg} is empty`);
  return new Uint8Array(readFileSync(path));
}

/**
 * The backend as one short line; with `verbose`, the full reasoning: every backend considered, why
 * it was or was not usable, and what native code printed while WebGPU was probed.
 */
export function backendReport(info: BackendInfo, verbose: boolean): string {
  const skipped = info.attempts.filter((a) => !a.available).map((a) => a.name);
  if (!verbose) {
    if (info.requested !== 'auto' || skipped.length === 0) return `backend: ${info.name}\n`;
    return `backend: ${info.name} (auto; ${skipped.join(', ')} not usable here, --verbose says why)\n`;
  }
  const lines = [`backend: ${info.name} (requested ${info.requested}), every backend considered:`];
  for (const a of info.attempts) {
    lines.push(`  ${a.name}: ${a.available ? 'available' : a.reason}`);
    for (const l of a.log ?? []) lines.push(`    | ${l}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Reads and decodes an image (`readImage` + the decoder, with its format check and pixel cap), so
 * a file that is not an image is reported before the model loads. The decoded image is what the
 * model is given (no second decode).
 */
export async function readAndDecodeImage(
  arg: string,
  signal?: AbortSignal,
  network: FetchLimits = {},
): Promise<DecodedImage> {
  const bytes = await readImage(arg, signal, network);
  try {
    return await decodeImage(bytes);
  } catch (e) {
    const err = e as { message?: string };
    const shown = arg.startsWith('data:') ? 'the data: URL' : arg.length > 200 ? `${arg.slice(0, 200)}…` : arg;
    if (err && typeof err.message === 'string') err.message = `${shown}: ${err.message}`;
    throw e;
  }
}

export const RANDOM_WEIGHTS_NOTICE =
  'note: the default model has random weights (a format and plumbing check); its answers are noise. Pass --model DIR with a real checkpoint.';
