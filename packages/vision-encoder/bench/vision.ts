/**
 * Vision-encoder benchmark: ms per image for the full released ViT-L/14 (mPLUG-Owl2: 448 px, 1025
 * tokens; `--config v1`: 224 px, 257 tokens) with random weights, on each backend available here,
 * plus the patch embedding computed both ways PatchConv2d can (patch extraction + `linear` op vs
 * `tf.conv2d`; the model picks per backend, `PATCH_CONV_IMPL`). Prints a table and writes JSON.
 *
 *   npx tsx bench/vision.ts                         # cpu, wasm, webgpu (hardware adapters only)
 *   npx tsx bench/vision.ts --backends wasm --runs 3 --batch 1 --config v2 --out bench-results/vision.json
 *   npx tsx bench/vision.ts --layers cpu=1,wasm=2   # run fewer layers there and extrapolate to 24
 *
 * A software WebGPU adapter (SwiftShader) is skipped with the reason printed: it is ~100× slower
 * than wasm on the same CPU and would take hours for the full model.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';

import * as tf from '@tensorflow/tfjs-core';
import { getBackendInfo, initBackend, type BackendName } from '@owlet/core';

import {
  MPLUG_OWL2_VISION_CONFIG,
  MPLUG_OWL_VISION_CONFIG,
  MplugOwlVisionModel,
  PatchConv2d,
  resolveMplugOwlVisionConfig,
} from '../src/index.js';

interface Args {
  backends: BackendName[];
  runs: number;
  warmup: number | null;
  batch: number;
  config: 'v2' | 'v1';
  out: string;
  patchRuns: number;
  skipModel: boolean;
  /** Layers actually run per backend (null: all); fewer layers → the time is extrapolated. */
  layers: Partial<Record<BackendName, number>>;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    backends: ['cpu', 'wasm', 'webgpu'],
    runs: 1,
    warmup: null,
    batch: 1,
    config: 'v2',
    out: 'bench-results/vision.json',
    patchRuns: 5,
    skipModel: false,
    layers: {},
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    switch (k) {
      case '--backends':
        a.backends = (v ?? '').split(',').filter(Boolean) as BackendName[];
        i++;
        break;
      case '--runs':
        a.runs = Number(v);
        i++;
        break;
      case '--warmup':
        a.warmup = Number(v);
        i++;
        break;
      case '--batch':
        a.batch = Number(v);
        i++;
        break;
      case '--config':
        a.config = v === 'v1' ? 'v1' : 'v2';
        i++;
        break;
      case '--out':
        a.out = v ?? a.out;
        i++;
        break;
      case '--patch-runs':
        a.patchRuns = Number(v);
        i++;
        break;
      case '--layers':
        // e.g. `--layers cpu=1,wasm=2`: run that many layers and extrapolate to the full depth.
        for (const part of (v ?? '').split(',').filter(Boolean)) {
          const [b, n] = part.split('=');
          a.layers[b as BackendName] = Number(n);
        }
        i++;
        break;
      case '--skip-model':
        a.skipModel = true;
        break;
      default:
        throw new Error(`unknown argument ${k}`);
    }
  }
  return a;
}

interface BackendResult {
  backend: BackendName;
  skipped?: string;
  device?: string;
  init_ms?: number;
  patch_embed_ms?: { linear_patches: number; conv2d: number; max_abs_diff: number };
  /** `dense`-shaped product [L, D]·W, W kept [out, in] (transposeB, what the core `linear` op does) vs pre-transposed [in, out]. */
  matmul_layout_ms?: { shape: string; transpose_b: number; pretransposed: number };
  warmup_runs?: number;
  /** Layers run; when fewer than the model has, ms_per_image is extrapolated. */
  layers_run?: number;
  extrapolated?: string;
  embeddings_ms?: number;
  runs_ms?: number[];
  ms_per_image?: number;
  median_ms_per_image?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timeIt(fn: () => tf.Tensor): Promise<number> {
  const t0 = performance.now();
  const y = fn();
  await y.data(); // waits for the GPU too
  const dt = performance.now() - t0;
  y.dispose();
  return dt;
}

/** The patch embedding both ways (PatchConv2d `matmul` vs `conv2d`), full-size input; median ms of each and their max diff. */
async function patchEmbedBench(size: number, patch: number, width: number, runs: number) {
  const viaMatmul = new PatchConv2d(3, width, patch, { impl: 'matmul' }).initialize({ seed: 7 });
  const viaConv = new PatchConv2d(3, width, patch, { impl: 'conv2d' });
  viaConv.loadStateDict(viaMatmul.stateDict());
  const pixels = tf.randomNormal([1, 3, size, size], 0, 1, 'float32', 3);
  const a = viaMatmul.forward(pixels);
  const b = viaConv.forward(pixels);
  const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
  tf.dispose([a, b]);
  const tl: number[] = [];
  const tc: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const x = await timeIt(() => viaMatmul.forward(pixels));
    const y = await timeIt(() => viaConv.forward(pixels));
    if (i > 0) {
      tl.push(x);
      tc.push(y);
    }
  }
  pixels.dispose();
  viaMatmul.dispose();
  viaConv.dispose();
  return { linear_patches: median(tl), conv2d: median(tc), max_abs_diff: diff };
}

async function benchBackend(name: BackendName, args: Args): Promise<BackendResult> {
  try {
    await initBackend(name);
  } catch (e) {
    return { backend: name, skipped: `not available here: ${(e as Error).message.split('\n')[0]}` };
  }
  const info = getBackendInfo();
  const res: BackendResult = { backend: name };
  if (info?.device) {
    res.device = `${info.device.description || info.device.architecture} (${info.device.vendor})`;
    if (info.device.isFallbackAdapter) {
      res.skipped = `software WebGPU adapter (${res.device}): SwiftShader is ~100× slower than wasm, far too slow for the full ViT-L/14`;
      return res;
    }
  }
  const config = args.config === 'v2' ? MPLUG_OWL2_VISION_CONFIG : MPLUG_OWL_VISION_CONFIG;
  res.patch_embed_ms = await patchEmbedBench(config.image_size, config.patch_size, config.hidden_size, args.patchRuns);
  console.log(
    `  [${name}] patch embedding ${config.image_size}px: linear over patches ${res.patch_embed_ms.linear_patches.toFixed(1)} ms, ` +
      `tf.conv2d ${res.patch_embed_ms.conv2d.toFixed(1)} ms (max |diff| ${res.patch_embed_ms.max_abs_diff.toExponential(2)})`,
  );
  if (name !== 'cpu') {
    // The cpu backend needs ~10 s per product of this size; measured on the others only.
    const L = (config.image_size / config.patch_size) ** 2 + 1;
    const d = config.hidden_size;
    const x = tf.randomNormal([L, d], 0, 1, 'float32', 4);
    const w = tf.randomNormal([d, d], 0, 0.02, 'float32', 5);
    const wt = tf.transpose(w);
    const tb: number[] = [];
    const pt: number[] = [];
    for (let i = 0; i < 3; i++) {
      const a = await timeIt(() => tf.matMul(x, w, false, true));
      const b = await timeIt(() => tf.matMul(x, wt));
      if (i > 0) {
        tb.push(a);
        pt.push(b);
      }
    }
    tf.dispose([x, w, wt]);
    res.matmul_layout_ms = { shape: `[${L}, ${d}]·[${d}, ${d}]`, transpose_b: median(tb), pretransposed: median(pt) };
    console.log(
      `  [${name}] matMul ${res.matmul_layout_ms.shape}: W as [out, in] (transposeB) ${res.matmul_layout_ms.transpose_b.toFixed(1)} ms, ` +
        `pre-transposed ${res.matmul_layout_ms.pretransposed.toFixed(1)} ms`,
    );
  }
  if (args.skipModel) return res;

  const depth = config.num_hidden_layers;
  const layers = Math.min(args.layers[name] ?? depth, depth);
  res.layers_run = layers;
  const runConfig = resolveMplugOwlVisionConfig({ ...config, num_hidden_layers: layers }, { variant: config.variant });
  const t0 = performance.now();
  const model = new MplugOwlVisionModel(runConfig).initialize({ seed: 1 });
  res.init_ms = performance.now() - t0;
  console.log(
    `  [${name}] ${model.numParameters().toLocaleString('en')} parameters (${layers} of ${depth} layers) initialised in ${(res.init_ms / 1000).toFixed(1)} s`,
  );
  const s = config.image_size;
  const pixels = tf.randomNormal([args.batch, 3, s, s], 0, 1, 'float32', 2);
  // The tfjs cpu backend needs minutes per image: no warm-up there unless asked.
  const warm = args.warmup ?? (name === 'cpu' ? 0 : 1);
  res.warmup_runs = warm;
  const forward = () => model.forward(pixels).last_hidden_state;
  for (let i = 0; i < warm; i++) {
    const dt = await timeIt(forward);
    console.log(`  [${name}] warm-up: ${(dt / args.batch).toFixed(0)} ms/image`);
  }
  res.runs_ms = [];
  for (let i = 0; i < args.runs; i++) {
    const dt = await timeIt(forward);
    res.runs_ms.push(dt);
    console.log(`  [${name}] run ${i + 1}/${args.runs}: ${(dt / args.batch).toFixed(0)} ms/image`);
  }
  const mean = res.runs_ms.reduce((x, y) => x + y, 0) / res.runs_ms.length;
  res.ms_per_image = mean / args.batch;
  res.median_ms_per_image = median(res.runs_ms) / args.batch;
  if (layers < depth) {
    // total(K layers) = embeddings + K·layer + post-LN  →  full = embeddings + depth·layer (+ post-LN, negligible).
    const emb: number[] = [];
    for (let i = 0; i < Math.max(1, args.runs); i++) emb.push(await timeIt(() => model.embeddings.forward(pixels)));
    const e = median(emb);
    const perLayer = (mean - e) / layers;
    res.embeddings_ms = e;
    res.ms_per_image = (e + depth * perLayer) / args.batch;
    res.median_ms_per_image = (e + depth * ((median(res.runs_ms) - e) / layers)) / args.batch;
    res.extrapolated = `${layers} of ${depth} layers run: embeddings ${e.toFixed(0)} ms + ${depth} × ${perLayer.toFixed(0)} ms/layer`;
    console.log(
      `  [${name}] extrapolated to ${depth} layers: ${res.ms_per_image.toFixed(0)} ms/image (${res.extrapolated})`,
    );
  }
  pixels.dispose();
  model.dispose();
  return res;
}

const args = parseArgs(process.argv.slice(2));
const config = args.config === 'v2' ? MPLUG_OWL2_VISION_CONFIG : MPLUG_OWL_VISION_CONFIG;
console.log(
  `owlet vision-encoder benchmark: ${args.config === 'v2' ? 'mPLUG-Owl2' : 'mPLUG-Owl v1'} ViT-L/14 at ${config.image_size} px, ` +
    `batch ${args.batch}, ${args.runs} run(s), random weights; ${cpus().length} CPU cores (${cpus()[0]?.model ?? '?'})`,
);
const results: BackendResult[] = [];
for (const b of args.backends) {
  console.log(`backend ${b}:`);
  const r = await benchBackend(b, args);
  if (r.skipped) console.log(`  [${b}] skipped: ${r.skipped}`);
  results.push(r);
}
console.log('\nbackend   ms/image   runs (ms/image of the layers run)');
for (const r of results) {
  const detail = r.skipped
    ? `skipped: ${r.skipped}`
    : `${(r.runs_ms ?? []).map((x) => (x / args.batch).toFixed(0)).join(', ')}${r.extrapolated ? `  [extrapolated: ${r.extrapolated}]` : ''}`;
  console.log(
    `${r.backend.padEnd(9)} ${r.ms_per_image === undefined ? '-'.padStart(8) : r.ms_per_image.toFixed(0).padStart(8)}   ${detail}`,
  );
}
mkdirSync(dirname(args.out), { recursive: true });
writeFileSync(
  args.out,
  `${JSON.stringify(
    {
      benchmark: 'vision-encoder',
      date: new Date().toISOString(),
      config: args.config,
      image_size: config.image_size,
      tokens: (config.image_size / config.patch_size) ** 2 + 1,
      parameters: new MplugOwlVisionModel(config).numParameters(),
      batch: args.batch,
      host: {
        cpus: cpus().length,
        cpu_model: cpus()[0]?.model,
        total_mem_gb: Math.round(totalmem() / 2 ** 30),
        node: process.version,
      },
      tfjs: tf.version_core,
      results,
    },
    null,
    2,
  )}\n`,
);
console.log(`wrote ${args.out}`);
