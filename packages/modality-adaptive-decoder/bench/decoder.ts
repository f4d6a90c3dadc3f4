/**
 * Decoder benchmark: prefill and decode tokens/s of a ~1B-parameter LLaMA-shaped decoder with the
 * modality-adaptive module (random weights), on each backend available here; plus two measurements
 * behind design choices: KV-cache growth (segmented vs contiguous) and multiway routing (gather vs
 * mask). Prints a table and writes JSON.
 *
 *   npx tsx bench/decoder.ts                                   # cpu, wasm, webgpu (hardware only)
 *   npx tsx bench/decoder.ts --backends wasm --layers 16 --prompt 32 --steps 8
 *   npx tsx bench/decoder.ts --backends cpu --layers 4         # the cpu backend is slow: fewer layers
 *   npx tsx bench/decoder.ts --skip-model --cache-context 256,1024   # only the design micro-benchmarks
 *
 * Defaults: hidden 2048, 16 layers, 16 heads (head dim 128), MLP 5632, vocab 32000, multiway on
 * (1.09B parameters). A software WebGPU adapter (SwiftShader) is skipped with the reason printed.
 */
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';

import * as tf from '@tensorflow/tfjs-core';
import { attentionOverSegments, getBackendInfo, initBackend, type BackendName } from '@owlet/core';

import {
  KVCache,
  LlamaDecoderLayer,
  LlamaForCausalLM,
  ModalityRouting,
  resolveLlamaConfig,
  type KVCacheGrowth,
  type LlamaConfig,
  type MultiwayStrategy,
} from '../src/index.js';

interface Args {
  backends: BackendName[];
  layers: number;
  hidden: number;
  intermediate: number;
  heads: number;
  vocab: number;
  prompt: number;
  steps: number;
  multiway: boolean;
  growth: KVCacheGrowth;
  cacheContext: number[];
  skipModel: boolean;
  skipMicro: boolean;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    backends: ['cpu', 'wasm', 'webgpu'],
    layers: 16,
    hidden: 2048,
    intermediate: 5632,
    heads: 16,
    vocab: 32000,
    prompt: 32,
    steps: 8,
    multiway: true,
    growth: 'segmented',
    cacheContext: [256, 1024],
    skipModel: false,
    skipMicro: false,
    out: 'bench/decoder.json',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1] ?? '';
    const num = () => {
      i++;
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${k} needs a positive number, got ${v}`);
      return n;
    };
    switch (k) {
      case '--backends':
        a.backends = v.split(',').filter(Boolean) as BackendName[];
        i++;
        break;
      case '--layers':
        a.layers = num();
        break;
      case '--hidden':
        a.hidden = num();
        break;
      case '--intermediate':
        a.intermediate = num();
        break;
      case '--heads':
        a.heads = num();
        break;
      case '--vocab':
        a.vocab = num();
        break;
      case '--prompt':
        a.prompt = num();
        break;
      case '--steps':
        a.steps = num();
        break;
      case '--no-multiway':
        a.multiway = false;
        break;
      case '--growth':
        a.growth = v as KVCacheGrowth;
        i++;
        break;
      case '--cache-context':
        a.cacheContext = v.split(',').map(Number);
        i++;
        break;
      case '--skip-model':
        a.skipModel = true;
        break;
      case '--skip-micro':
        a.skipMicro = true;
        break;
      case '--out':
        a.out = v;
        i++;
        break;
      default:
        throw new Error(`unknown argument ${k}`);
    }
  }
  return a;
}

const args = parseArgs(process.argv.slice(2));

function llamaConfig(a: Args): LlamaConfig {
  return resolveLlamaConfig({
    model_type: a.multiway ? 'mplug_owl2' : 'llama',
    vocab_size: a.vocab,
    hidden_size: a.hidden,
    intermediate_size: a.intermediate,
    num_hidden_layers: a.layers,
    num_attention_heads: a.heads,
    num_key_value_heads: a.heads,
    max_position_embeddings: 4096,
  });
}

/** Fills parameters with small uniform random values, one tensor at a time (fast on every backend). */
function randomWeights(model: LlamaForCausalLM): void {
  let i = 0;
  for (const [key, p] of model.namedParameters()) {
    const t = /norm/.test(key)
      ? tf.ones([...p.shape])
      : tf.randomUniform([...p.shape], -0.03, 0.03, 'float32', 1000 + i++);
    p.assign(t);
    t.dispose();
  }
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;

interface ModelResult {
  backend: string;
  device?: string;
  config: Record<string, unknown>;
  parameters: number;
  prompt_tokens: number;
  decode_steps: number;
  load_s: number;
  prefill_s: number;
  prefill_tokens_per_s: number;
  decode_s_per_token: number;
  decode_tokens_per_s: number;
}

async function benchModel(backend: string, a: Args): Promise<ModelResult> {
  const config = llamaConfig(a);
  const t0 = performance.now();
  const model = new LlamaForCausalLM(config);
  randomWeights(model);
  const loadS = (performance.now() - t0) / 1000;
  const ids = [Array.from({ length: a.prompt }, (_, i) => (i * 7919 + 3) % a.vocab)];
  // Image-like prompt: the middle half of the positions are "image" tokens (multiway.1) when MAM is on.
  const modality = [ids[0]!.map((_, i) => (a.multiway && i >= a.prompt / 4 && i < (3 * a.prompt) / 4 ? 1 : 0))];
  // Warm-up (kernel compilation, allocator): a short prompt and two steps.
  await model.generate({ input_ids: [ids[0]!.slice(0, 4)], max_new_tokens: 2, eos_token_id: null });
  const res = await model.generate({
    input_ids: ids,
    modality_indicators: modality,
    max_new_tokens: a.steps + 1,
    eos_token_id: null,
    cache_growth: a.growth,
  });
  model.dispose();
  const decodeSteps = res.generated_ids.length - 1;
  return {
    backend,
    ...(getBackendInfo()?.device
      ? { device: getBackendInfo()!.device!.description || getBackendInfo()!.device!.architecture }
      : {}),
    config: { ...config, kv_cache_growth: a.growth },
    parameters: model.numParameters(),
    prompt_tokens: a.prompt,
    decode_steps: decodeSteps,
    load_s: loadS,
    prefill_s: res.usage.prefill_ms / 1000,
    prefill_tokens_per_s: res.usage.prefill_tokens_per_s,
    decode_s_per_token: res.usage.decode_ms / 1000 / decodeSteps,
    decode_tokens_per_s: res.usage.decode_tokens_per_s,
  };
}

interface CacheResult {
  backend: string;
  shape: string;
  context: number;
  growth: KVCacheGrowth;
  ms_per_step: number;
  segments_at_end: number;
}

/**
 * One attention layer of LLaMA-7B shape (32 heads × 128) decoding 32 steps after a prompt of
 * `context` positions: cache append + attention per step, segmented vs contiguous growth.
 */
async function benchCache(backend: string, context: number, growth: KVCacheGrowth): Promise<CacheResult> {
  const [H, D, steps] = [32, 128, 32];
  const cache = new KVCache(1, { growth });
  const pk = tf.randomUniform([1, H, context, D]);
  cache.append(0, pk, pk);
  pk.dispose();
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const q = tf.randomUniform([1, H, 1, D]);
    await q.data();
    const t = performance.now();
    const out = tf.tidy(() => {
      cache.append(0, q, q);
      return attentionOverSegments(q, cache.segments(0), { causal: true });
    });
    await out.data();
    times.push(performance.now() - t);
    tf.dispose([q, out]);
  }
  const segs = cache.numSegments(0);
  cache.dispose();
  return {
    backend,
    shape: `[1, ${H}, n, ${D}]`,
    context,
    growth,
    ms_per_step: median(times.slice(4)),
    segments_at_end: segs,
  };
}

interface MultiwayResult {
  backend: string;
  strategy: MultiwayStrategy | 'uniform';
  tokens: string;
  ms_per_layer: number;
}

/** One decoder layer of the benchmark config on a spliced sequence (65 image tokens inside text). */
async function benchMultiway(backend: string, a: Args): Promise<MultiwayResult[]> {
  const config = resolveLlamaConfig(
    { ...llamaConfig(a), model_type: 'mplug_owl2', num_hidden_layers: 1 } as unknown as Record<string, unknown>,
    { multiway: true },
  );
  const layer = new LlamaDecoderLayer(config);
  for (const [key, p] of layer.namedParameters()) {
    const t = /norm/.test(key) ? tf.ones([...p.shape]) : tf.randomUniform([...p.shape], -0.03, 0.03);
    p.assign(t);
    t.dispose();
  }
  const L = 97;
  const mixed = Array.from({ length: L }, (_, i) => (i >= 16 && i < 81 ? 1 : 0));
  const x = tf.randomUniform([1, L, config.hidden_size]);
  const out: MultiwayResult[] = [];
  const cases: [MultiwayStrategy | 'uniform', number[]][] = [
    ['gather', mixed],
    ['mask', mixed],
    ['uniform', new Array<number>(L).fill(0)],
  ];
  const { ropeTables } = await import('@owlet/core');
  for (const [strategy, ind] of cases) {
    const times: number[] = [];
    for (let r = 0; r < 4; r++) {
      const t = performance.now();
      const y = tf.tidy(() => {
        const routing = ModalityRouting.create([ind], 1, L, 2, strategy === 'uniform' ? 'gather' : strategy);
        const rope = ropeTables(
          Array.from({ length: L }, (_, i) => i),
          config.head_dim,
          config.rope_theta,
        );
        return layer.forward(x, { routing, rope, mask: null, layerIdx: 0 });
      });
      await y.data();
      y.dispose();
      times.push(performance.now() - t);
    }
    out.push({
      backend,
      strategy,
      tokens: strategy === 'uniform' ? `${L} text` : `${L} (65 image)`,
      ms_per_layer: median(times.slice(1)),
    });
  }
  x.dispose();
  layer.dispose();
  return out;
}

const results: {
  model: ModelResult[];
  cache: CacheResult[];
  multiway: MultiwayResult[];
  skipped: { backend: string; reason: string }[];
} = {
  model: [],
  cache: [],
  multiway: [],
  skipped: [],
};

for (const backend of args.backends) {
  try {
    const info = await initBackend(backend, { webgpu: { allowFallbackAdapter: true } });
    if (info.device?.isFallbackAdapter) {
      const reason = `software WebGPU adapter (${info.device.description || info.device.architecture || 'fallback'}): ~100× slower than wasm on the same CPU; not a meaningful figure`;
      console.log(`skip ${backend}: ${reason}`);
      results.skipped.push({ backend, reason });
      continue;
    }
  } catch (e) {
    const reason = (e as Error).message.split('\n')[0] ?? String(e);
    console.log(`skip ${backend}: ${reason}`);
    results.skipped.push({ backend, reason });
    continue;
  }
  if (!args.skipModel) {
    console.log(
      `[${backend}] model: ${args.layers} layers, hidden ${args.hidden}, MLP ${args.intermediate}, vocab ${args.vocab}, prompt ${args.prompt}, ${args.steps} decode steps …`,
    );
    const r = await benchModel(backend, args);
    results.model.push(r);
    console.log(
      `[${backend}] ${(r.parameters / 1e9).toFixed(2)}B params: prefill ${r.prefill_tokens_per_s.toFixed(2)} tok/s (${r.prefill_s.toFixed(2)} s), decode ${r.decode_tokens_per_s.toFixed(3)} tok/s (${r.decode_s_per_token.toFixed(2)} s/token)`,
    );
  }
  if (!args.skipMicro) {
    for (const ctx of args.cacheContext) {
      for (const growth of ['contiguous', 'segmented'] as KVCacheGrowth[]) {
        const r = await benchCache(backend, ctx, growth);
        results.cache.push(r);
        console.log(
          `[${backend}] cache ${growth.padEnd(10)} context ${ctx}: ${r.ms_per_step.toFixed(2)} ms/step (append + attention, one 7B-shaped layer; ${r.segments_at_end} segments)`,
        );
      }
    }
    for (const r of await benchMultiway(backend, args)) {
      results.multiway.push(r);
      console.log(
        `[${backend}] multiway ${r.strategy.padEnd(8)} ${r.tokens}: ${r.ms_per_layer.toFixed(1)} ms per decoder layer`,
      );
    }
  }
}

const report = {
  date: new Date().toISOString(),
  host: {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    memory_gb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  },
  args,
  ...results,
};
writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
console.log(`wrote ${args.out}`);
