/** Loading the model and the images the commands need. */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { FetchLimits } from '@owlet/checkpoint';
import { fromPretrained, type MplugOwlModel } from '@owlet/mplug-owl';
import {
  cpuEngineInfo,
  isWeightDType,
  type BackendInfo,
  type BackendRequest,
  type DTypeRequest,
  type WeightDType,
} from '@owlet/core';
import { decodeImage, DEFAULT_MAX_PIXELS, type DecodedImage } from '@owlet/vision-encoder';

import { UsageError } from './errors.js';
import {
  checkImageBytes,
  decodeDataUrl,
  fetchImageBytes,
  ImageSourceError,
  MAX_IMAGE_BYTES,
  readImageFile,
} from './image-source.js';
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

/**
 * The model of `run` and `chat` from their flags (`--model`, `--dtype`, `--threads`), with the
 * CPU-engine line on stderr under `--verbose`.
 */
export async function loadModelFromFlags(
  values: { model?: string; dtype?: string; threads?: string; verbose?: boolean },
  opts: { backend: BackendRequest; quiet: boolean; signal?: AbortSignal; network?: FetchLimits },
): Promise<LoadedModel> {
  const dtype = parseDtype(values.dtype);
  const threads = parseThreads(values.threads);
  const loaded = await loadModel(values.model, {
    ...opts,
    ...(dtype ? { dtype } : {}),
    ...(threads ? { threads } : {}),
  });
  const engineLine = cpuEngineLine();
  if (engineLine && !opts.quiet && values.verbose === true) process.stderr.write(`${engineLine}\n`);
  return loaded;
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

/** Image URLs: 5 s to answer and 10 s between bytes by default (--fetch-timeout S sets both). */
const IMAGE_CONNECT_MS = 5_000;
const IMAGE_READ_MS = 10_000;
/** The whole fetch of an image URL: 60 s, or 6 × --fetch-timeout when that is longer. */
const IMAGE_TOTAL_MS = 60_000;

/** How `--image` is named in messages (a data: URL is not printed; a long URL is cut). */
function shownImage(arg: string): string {
  if (/^data:/i.test(arg)) return 'the data: URL';
  return arg.length > 200 ? `${arg.slice(0, 200)}…` : arg;
}

/**
 * An image given as a path, an http(s) URL or a data: URL → its bytes (at most 64 MiB, checked
 * while it streams; a regular file only), through the reader `owlet serve` uses too. The bytes
 * must start like an image format owlet decodes, with a header under the pixel cap.
 */
export async function readImage(arg: string, signal?: AbortSignal, network: FetchLimits = {}): Promise<Uint8Array> {
  const shown = shownImage(arg);
  try {
    let bytes: Uint8Array;
    if (/^data:/i.test(arg)) {
      bytes = decodeDataUrl(arg, MAX_IMAGE_BYTES).bytes;
    } else if (/^https?:\/\//i.test(arg)) {
      const connect = network.connectTimeoutMs ?? IMAGE_CONNECT_MS;
      const read = network.readTimeoutMs ?? IMAGE_READ_MS;
      bytes = await fetchImageBytes(arg, {
        maxBytes: MAX_IMAGE_BYTES,
        connectTimeoutMs: connect,
        readTimeoutMs: read,
        totalTimeoutMs: Math.max(IMAGE_TOTAL_MS, 6 * Math.max(connect, read)),
        ...(network.allowRedirectOrigins !== undefined ? { allowRedirectOrigins: network.allowRedirectOrigins } : {}),
        redirectPolicy: 'the same origin (allow it with --allow-redirect ORIGIN)',
        ...(signal ? { signal } : {}),
      });
    } else {
      bytes = readImageFile(resolve(arg), arg, MAX_IMAGE_BYTES);
    }
    checkImageBytes(bytes, DEFAULT_MAX_PIXELS);
    return bytes;
  } catch (e) {
    if (!(e instanceof ImageSourceError)) throw e;
    if (e.code === 'image_not_found') throw new UsageError(e.message, 'check the path given to --image');
    // messages about a file name it already
    const named = e.message.includes(arg) ? e.message : `${shown}: ${e.message}`;
    throw new UsageError(named);
  }
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
    if (err && typeof err.message === 'string') err.message = `${shownImage(arg)}: ${err.message}`;
    throw e;
  }
}

export const RANDOM_WEIGHTS_NOTICE =
  'note: the default model has random weights (a format and plumbing check); its answers are noise. Pass --model DIR with a real checkpoint.';
