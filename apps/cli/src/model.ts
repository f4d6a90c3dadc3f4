/** Loading the model and the images the commands need. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { fromPretrained, type MplugOwlModel } from '@owlet/mplug-owl';
import {
  cpuEngineInfo,
  isWeightDType,
  type BackendInfo,
  type BackendRequest,
  type DTypeRequest,
  type WeightDType,
} from '@owlet/core';

import { UsageError } from './errors.js';
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

export async function loadModel(
  modelArg: string | undefined,
  opts: { backend: BackendRequest; quiet: boolean; signal?: AbortSignal; dtype?: DTypeRequest; threads?: number },
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
  });
  const randomWeights = modelArg === undefined || typeof model.config.raw.owlet_note === 'string';
  return { model, source, randomWeights, loadMs: performance.now() - t0 };
}

const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

/** An image given as a path, an http(s) URL or a data: URL → its bytes. */
export async function readImage(arg: string, signal?: AbortSignal): Promise<Uint8Array> {
  if (arg.startsWith('data:')) {
    const m = /^data:([^;,]*)(;base64)?,(.*)$/s.exec(arg);
    if (!m) throw new UsageError('malformed data: URL for --image');
    const payload = m[3] ?? '';
    const bytes = m[2] ? Buffer.from(payload, 'base64') : Buffer.from(decodeURIComponent(payload), 'latin1');
    if (bytes.length === 0) throw new UsageError('the data: URL given to --image is empty');
    return new Uint8Array(bytes);
  }
  if (/^https?:\/\//i.test(arg)) {
    let res: Response;
    try {
      res = await fetch(arg, { ...(signal ? { signal } : {}), redirect: 'follow' });
    } catch (e) {
      throw new UsageError(`could not fetch image ${arg}: ${(e as Error).message}`);
    }
    if (!res.ok) throw new UsageError(`could not fetch image ${arg}: HTTP ${res.status}`);
    const len = Number(res.headers.get('content-length') ?? 0);
    if (len > MAX_IMAGE_BYTES) throw new UsageError(`image ${arg} is ${len} bytes; the limit is ${MAX_IMAGE_BYTES}`);
    const buf = new Uint8Array(await res.arrayBuffer());
    if (buf.length > MAX_IMAGE_BYTES) throw new UsageError(`image ${arg} is over ${MAX_IMAGE_BYTES} bytes`);
    return buf;
  }
  const path = resolve(arg);
  if (!existsSync(path)) throw new UsageError(`image not found: ${arg}`, 'check the path given to --image');
  const st = statSync(path);
  if (!st.isFile()) throw new UsageError(`--image must be a file: ${arg}`);
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

export const RANDOM_WEIGHTS_NOTICE =
  'note: the default model has random weights (a format and plumbing check); its answers are noise. Pass --model DIR with a real checkpoint.';
