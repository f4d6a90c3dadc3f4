/**
 * Benchmark: ms per image of the released mPLUG-Owl2 visual abstractor (64 queries over 1025 image
 * tokens, 6 layers, width 1024, SwiGLU 2816, visual_fc to 4096), random weights from
 * `initialize({ seed })`, fp32. Prints one JSON object (and writes it to --out when given).
 *
 *   npx tsx --tsconfig packages/visual-abstractor/bench/tsconfig.json packages/visual-abstractor/bench/abstractor.ts
 *   … abstractor.ts --backends cpu,wasm,webgpu --iters 5 --batch 1 --out results.json
 *
 * webgpu runs only on a hardware adapter (a software one such as SwiftShader says nothing about
 * GPU speed) unless --allow-software-webgpu is given. Warm-up runs (default 1; 0 for cpu, which
 * compiles nothing) are not timed. A run is synchronised by reading the output back.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';

import * as tf from '@tensorflow/tfjs-core';
import { getBackendInfo, initBackend, type BackendName } from '@owlet/core';

import {
  MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG,
  MplugOwlVisualAbstractorModel,
  abstractorImageTokens,
} from '../src/index.js';

interface Args {
  backends: BackendName[];
  iters: number;
  warmup: number | null;
  batch: number;
  seed: number;
  maxSeconds: number;
  out: string | null;
  allowSoftwareWebgpu: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    backends: ['cpu', 'wasm', 'webgpu'],
    iters: 3,
    warmup: null,
    batch: 1,
    seed: 0,
    maxSeconds: 120,
    out: null,
    allowSoftwareWebgpu: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const num = () => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`${k} needs a number, got ${v}`);
      i++;
      return n;
    };
    if (k === '--backends') {
      a.backends = (v ?? '').split(',').filter(Boolean) as BackendName[];
      i++;
    } else if (k === '--iters') a.iters = Math.max(1, Math.floor(num()));
    else if (k === '--warmup') a.warmup = Math.floor(num());
    else if (k === '--batch') a.batch = Math.max(1, Math.floor(num()));
    else if (k === '--seed') a.seed = Math.floor(num());
    else if (k === '--max-seconds') a.maxSeconds = num();
    else if (k === '--out') {
      a.out = v ?? null;
      i++;
    } else if (k === '--allow-software-webgpu') a.allowSoftwareWebgpu = true;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

interface BackendResult {
  backend: string;
  skipped?: string;
  device?: string;
  warmup_runs?: number;
  timed_runs?: number;
  ms_per_image?: { median: number; min: number; max: number; runs: number[] };
  first_run_ms?: number;
  gmac_per_image?: number;
  gflops?: number;
  output_shape?: number[];
  output_checksum?: number;
}

const args = parseArgs(process.argv.slice(2));
const config = MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG;
const K = abstractorImageTokens(config) as number;
const Q = config.num_learnable_queries;
const D = config.hidden_size;
const F = config.intermediate_size;
const L = config.num_hidden_layers;
const DL = config.language_hidden_size;
// Multiply-accumulates per image: query, key, value, attention (scores + weighted sum), out_proj,
// the three MLP matrices per layer; then visual_fc.
const macs = L * (Q * D * D + 2 * (Q + K) * D * D + 2 * Q * (Q + K) * D + Q * D * D + 3 * Q * D * F) + Q * D * DL;

const results: BackendResult[] = [];
for (const backend of args.backends) {
  try {
    await initBackend(backend, { webgpu: { allowFallbackAdapter: true } });
  } catch (e) {
    results.push({ backend, skipped: `unavailable: ${(e as Error).message}` });
    continue;
  }
  const info = getBackendInfo();
  const device = info?.device
    ? `${info.device.description || info.device.architecture} (${info.device.vendor})${info.device.isFallbackAdapter ? ', software' : ''}`
    : undefined;
  if (backend === 'webgpu' && info?.device?.isFallbackAdapter && !args.allowSoftwareWebgpu) {
    results.push({
      backend,
      skipped: `software adapter (${device}); pass --allow-software-webgpu to time it anyway`,
      device,
    });
    continue;
  }
  const model = new MplugOwlVisualAbstractorModel(config).initialize({ seed: args.seed });
  const image = tf.randomNormal([args.batch, K, D], 0, 1, 'float32', args.seed + 1);
  const warmup = args.warmup ?? (backend === 'cpu' ? 0 : 1);
  const once = async (): Promise<{ ms: number; checksum: number; shape: number[] }> => {
    const t0 = performance.now();
    const out = model.forward(image);
    const data = await out.data();
    const ms = performance.now() - t0;
    let checksum = 0;
    for (let i = 0; i < data.length; i += 997) checksum += data[i] as number;
    const shape = out.shape;
    out.dispose();
    return { ms, checksum, shape };
  };
  let first: number | undefined;
  for (let i = 0; i < warmup; i++) {
    const r = await once();
    first ??= r.ms;
  }
  const runs: number[] = [];
  let last = { ms: 0, checksum: 0, shape: [] as number[] };
  const start = performance.now();
  while (runs.length < args.iters && (runs.length === 0 || (performance.now() - start) / 1000 < args.maxSeconds)) {
    last = await once();
    first ??= last.ms;
    runs.push(last.ms / args.batch);
  }
  const sorted = [...runs].sort((x, y) => x - y);
  const median = sorted[Math.floor(sorted.length / 2)] as number;
  results.push({
    backend,
    device,
    warmup_runs: warmup,
    timed_runs: runs.length,
    ms_per_image: { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number, runs },
    first_run_ms: first,
    gmac_per_image: macs / 1e9,
    gflops: (2 * macs) / (median * 1e6),
    output_shape: last.shape,
    output_checksum: last.checksum,
  });
  image.dispose();
  model.dispose();
  process.stderr.write(`${backend}: ${median.toFixed(1)} ms per image\n`);
}

const report = {
  benchmark: '@owlet/visual-abstractor released mPLUG-Owl2 abstractor forward (fp32, random weights)',
  config: {
    queries: Q,
    image_tokens: K,
    layers: L,
    hidden_size: D,
    intermediate_size: F,
    heads: config.num_attention_heads,
    language_hidden_size: DL,
  },
  batch: args.batch,
  seed: args.seed,
  node: process.version,
  cpu: `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
  date: new Date().toISOString(),
  results,
};
const json = JSON.stringify(report, null, 2);
console.log(json);
if (args.out) writeFileSync(args.out, `${json}\n`);
