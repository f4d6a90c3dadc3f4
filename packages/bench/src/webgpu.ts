/**
 * `pnpm bench:webgpu`: owlet on whatever WebGPU adapter is here, stock tfjs-webgpu kernels against
 * owlet's own WGSL kernels (the WebGPU engine), for a LLaMA-shaped decoder with the
 * modality-adaptive module (prefill and decode tokens/s) and a ViT vision tower (images/s).
 *
 * The variants run interleaved, round after round, so a machine whose load changes affects all of
 * them alike; medians are reported, with the owned/stock ratio. Every owned variant is also checked
 * against the stock one on the same weights (logits of the prompt, greedy ids): on a software
 * adapter (SwiftShader) that correctness run is the point, the timings only compare the two paths.
 *
 *   pnpm bench:webgpu                                   # ~100M decoder, 4 rounds, fp32 and q4
 *   pnpm bench:webgpu --dtypes fp32,fp16,q8,q4 --rounds 6 --prompt 32 --steps 8
 *   pnpm bench:webgpu --hidden 2048 --layers 16 --vocab 32000   # a bigger model on a real GPU
 *
 * Variants: `stock` (float32 tfjs weights, kernels off: what tfjs-webgpu does), `owned:fp32`
 * (the same weights through the engine), `owned:<dtype>` (Linear weights packed as dtype). Columns
 * `|Δ| composite`: max |owned − composite| prompt logits on the same (packed) weights, the
 * correctness of the kernels; `|Δ| stock`: against the float32 stock run (for q8/q4 that is the
 * quantization error); `ids = stock`: the greedy tokens agree. Writes JSON (`--out`, default `packages/bench/bench-results/webgpu.json`).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';

import * as tf from '@tensorflow/tfjs-core';
import {
  type WeightDType,
  disableWebGPUEngine,
  enableWebGPUEngine,
  getBackendInfo,
  initBackend,
  isWeightDType,
  setKernelsEnabled,
  uploadWebGPUWeights,
} from '@owlet/core';
import { LlamaForCausalLM, resolveLlamaConfig } from '@owlet/modality-adaptive-decoder';
import { MplugOwlVisionModel, resolveMplugOwlVisionConfig } from '@owlet/vision-encoder';

interface Args {
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  vocab: number;
  prompt: number;
  steps: number;
  rounds: number;
  dtypes: WeightDType[];
  vision: boolean;
  visionHidden: number;
  visionLayers: number;
  imageSize: number;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    hidden: 768,
    layers: 10,
    heads: 12,
    intermediate: 2048,
    vocab: 12000,
    prompt: 24,
    steps: 6,
    rounds: 4,
    dtypes: ['fp32', 'q4'],
    vision: true,
    visionHidden: 256,
    visionLayers: 4,
    imageSize: 112,
    out: 'bench-results/webgpu.json',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i] as string;
    const v = argv[i + 1] ?? '';
    const num = () => {
      i++;
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${k} needs a positive integer, got ${v}`);
      return n;
    };
    switch (k) {
      case '--hidden':
        a.hidden = num();
        break;
      case '--layers':
        a.layers = num();
        break;
      case '--heads':
        a.heads = num();
        break;
      case '--intermediate':
        a.intermediate = num();
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
      case '--rounds':
        a.rounds = num();
        break;
      case '--vision-hidden':
        a.visionHidden = num();
        break;
      case '--vision-layers':
        a.visionLayers = num();
        break;
      case '--image-size':
        a.imageSize = num();
        break;
      case '--no-vision':
        a.vision = false;
        break;
      case '--dtypes':
        i++;
        a.dtypes = v.split(',').filter(Boolean) as WeightDType[];
        for (const d of a.dtypes) if (!isWeightDType(d)) throw new Error(`--dtypes: unknown dtype ${d}`);
        break;
      case '--out':
        i++;
        a.out = v;
        break;
      default:
        throw new Error(`unknown argument ${k}`);
    }
  }
  return a;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? Number.NaN;

type Variant = 'stock' | `owned:${WeightDType}`;

function useVariant(v: Variant): void {
  if (v === 'stock') {
    disableWebGPUEngine();
    setKernelsEnabled(false);
  } else {
    setKernelsEnabled(true);
    enableWebGPUEngine();
  }
}

/** One seeded decoder per variant: identical float32 values, packed as the variant's dtype. */
function buildDecoder(a: Args, v: Variant): LlamaForCausalLM {
  const model = new LlamaForCausalLM(
    resolveLlamaConfig({
      model_type: 'mplug_owl2',
      vocab_size: a.vocab,
      hidden_size: a.hidden,
      intermediate_size: a.intermediate,
      num_hidden_layers: a.layers,
      num_attention_heads: a.heads,
      num_key_value_heads: a.heads,
      max_position_embeddings: 4096,
    }),
  );
  const dtype = v === 'stock' ? null : (v.slice(6) as WeightDType);
  // owned:fp32 keeps float32 tfjs tensors (the stock path's very weights, through the engine)
  if (dtype !== null && dtype !== 'fp32') model.setWeightDTypes(dtype);
  let i = 0;
  for (const [key, p] of model.namedParameters()) {
    const t = /norm/.test(key)
      ? tf.ones([...p.shape])
      : tf.randomUniform([...p.shape], -0.05, 0.05, 'float32', 1000 + i++);
    p.assign(t);
    t.dispose();
  }
  return model;
}

interface DecoderRun {
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  logits: Float32Array;
  ids: number[];
}

async function runDecoder(model: LlamaForCausalLM, a: Args): Promise<DecoderRun> {
  const ids = Array.from({ length: a.prompt }, (_, i) => (i * 7919 + 3) % a.vocab);
  const modality = ids.map((_, i) => (i >= a.prompt / 4 && i < (3 * a.prompt) / 4 ? 1 : 0));
  const res = await model.generate({
    input_ids: [ids],
    modality_indicators: [modality],
    max_new_tokens: a.steps + 1,
    eos_token_id: null,
    output_logits: true,
  });
  return {
    prefill_tokens_per_s: res.usage.prefill_tokens_per_s,
    decode_tokens_per_s: res.usage.decode_tokens_per_s,
    logits: res.logits?.[0] ?? new Float32Array(),
    ids: res.generated_ids,
  };
}

async function runVision(model: MplugOwlVisionModel, pixels: tf.Tensor): Promise<{ ms: number; out: Float32Array }> {
  const t = performance.now();
  const o = model.forward(pixels);
  const out = (await o.last_hidden_state.data()) as Float32Array;
  const ms = performance.now() - t;
  o.last_hidden_state.dispose();
  return { ms, out };
}

const maxDiff = (x: Float32Array, y: Float32Array) => {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs((x[i] as number) - (y[i] as number)));
  return m;
};

/** Without a Vulkan driver chosen, Dawn gets SwiftShader from Debian's chromium package (as in the tests). */
function softwareVulkanFallback(): void {
  if (!process.env.VK_ICD_FILENAMES) {
    const icd = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib64/chromium/vk_swiftshader_icd.json'].find((p) =>
      existsSync(p),
    );
    if (icd) process.env.VK_ICD_FILENAMES = icd;
  }
  if (!process.env.XDG_RUNTIME_DIR || !existsSync(process.env.XDG_RUNTIME_DIR)) {
    const dir = `/tmp/owlet-xdg-${process.getuid?.() ?? 0}`;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  softwareVulkanFallback();
  const info = await initBackend('webgpu', { webgpu: { allowFallbackAdapter: true } });
  const dev = info.device;
  const adapter = dev ? dev.description || dev.architecture || dev.vendor || 'unknown adapter' : 'unknown adapter';
  const software = dev?.isFallbackAdapter ?? false;
  process.stdout.write(
    `WebGPU adapter: ${adapter}${software ? ' (software: a correctness run, timings only compare the paths)' : ''}; ` +
      `shader-f16 ${dev?.shaderF16 ? 'offered' : 'not offered'}; load ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')} on ${cpus().length} cores\n`,
  );
  const variants: Variant[] = ['stock', ...a.dtypes.map((d) => `owned:${d}` as Variant)];

  // Build every decoder once (uploads included) before timing anything.
  const decoders = new Map<Variant, LlamaForCausalLM>();
  for (const v of variants) {
    useVariant(v);
    const m = buildDecoder(a, v);
    if (v !== 'stock') await uploadWebGPUWeights(m);
    decoders.set(v, m);
    await runDecoder(m, { ...a, prompt: 4, steps: 1 }); // warm-up: shader compilation
  }
  const params = decoders.get('stock')?.numParameters() ?? 0;
  process.stdout.write(
    `decoder: hidden ${a.hidden}, ${a.layers} layers, ${a.heads} heads, MLP ${a.intermediate}, vocab ${a.vocab}, multiway (${(params / 1e6).toFixed(0)}M parameters); prompt ${a.prompt}, ${a.steps} decode steps, ${a.rounds} rounds interleaved\n`,
  );

  const dec = new Map<Variant, { prefill: number[]; decode: number[]; last?: DecoderRun }>();
  for (const v of variants) dec.set(v, { prefill: [], decode: [] });
  for (let r = 0; r < a.rounds; r++) {
    for (const v of variants) {
      useVariant(v);
      const res = await runDecoder(decoders.get(v) as LlamaForCausalLM, a);
      const d = dec.get(v) as { prefill: number[]; decode: number[]; last?: DecoderRun };
      d.prefill.push(res.prefill_tokens_per_s);
      d.decode.push(res.decode_tokens_per_s);
      d.last = res;
    }
    process.stdout.write(
      `  round ${r + 1}/${a.rounds} (load ${loadavg()[0]?.toFixed(1)}): ${variants
        .map((v) => {
          const d = dec.get(v) as { prefill: number[]; decode: number[] };
          return `${v} prefill ${d.prefill.at(-1)?.toFixed(2)} decode ${d.decode.at(-1)?.toFixed(2)} tok/s`;
        })
        .join('; ')}\n`,
    );
  }
  // The same packed weights through the composite ops (decoded to float32 tfjs tensors): what the
  // owned kernels must reproduce; for q8/q4 the difference to `stock` is the quantization itself.
  const composite = new Map<Variant, number>();
  for (const v of variants) {
    if (v === 'stock') continue;
    const m = decoders.get(v) as LlamaForCausalLM;
    const owned = dec.get(v)?.last?.logits as Float32Array;
    setKernelsEnabled(false);
    const ids = Array.from({ length: a.prompt }, (_, i) => (i * 7919 + 3) % a.vocab);
    const modality = ids.map((_, i) => (i >= a.prompt / 4 && i < (3 * a.prompt) / 4 ? 1 : 0));
    const out = m.forward({ input_ids: [ids], modality_indicators: [modality], logits_to_keep: 1 });
    composite.set(v, maxDiff(owned, (await out.logits.data()) as Float32Array));
    tf.dispose([out.logits, out.last_hidden_state]);
    setKernelsEnabled(true);
  }
  for (const m of decoders.values()) m.dispose();

  let vision: Record<string, { ms: number; max_abs_diff_vs_stock: number }> | null = null;
  let visionCfg: Record<string, number> | null = null;
  if (a.vision) {
    const cfg = resolveMplugOwlVisionConfig(
      {
        hidden_size: a.visionHidden,
        intermediate_size: a.visionHidden * 4,
        num_hidden_layers: a.visionLayers,
        num_attention_heads: Math.max(1, a.visionHidden / 64),
        image_size: a.imageSize,
        patch_size: 14,
      },
      { variant: 'mplug_owl2' },
    );
    visionCfg = {
      hidden: cfg.hidden_size,
      layers: cfg.num_hidden_layers,
      image: cfg.image_size,
      tokens: (cfg.image_size / 14) ** 2 + 1,
    };
    const vmodel = new MplugOwlVisionModel(cfg).initialize({ seed: 3 });
    const pixels = tf.randomUniform([1, 3, cfg.image_size, cfg.image_size], -1, 1, 'float32', 9);
    const vv: Variant[] = ['stock', 'owned:fp32'];
    const times = new Map<Variant, number[]>(vv.map((v) => [v, []]));
    const outs = new Map<Variant, Float32Array>();
    for (const v of vv) {
      useVariant(v);
      await runVision(vmodel, pixels); // warm-up
    }
    for (let r = 0; r < a.rounds; r++) {
      for (const v of vv) {
        useVariant(v);
        const res = await runVision(vmodel, pixels);
        times.get(v)?.push(res.ms);
        outs.set(v, res.out);
      }
    }
    const stockOut = outs.get('stock') as Float32Array;
    vision = {};
    for (const v of vv) {
      vision[v] = {
        ms: median(times.get(v) ?? []),
        max_abs_diff_vs_stock: maxDiff(outs.get(v) as Float32Array, stockOut),
      };
    }
    tf.dispose(pixels);
    vmodel.dispose();
  }
  setKernelsEnabled(true);

  const stock = dec.get('stock') as { prefill: number[]; decode: number[]; last: DecoderRun };
  const rows = variants.map((v) => {
    const d = dec.get(v) as { prefill: number[]; decode: number[]; last: DecoderRun };
    const prefill = median(d.prefill);
    const decode = median(d.decode);
    return {
      variant: v,
      prefill_tokens_per_s: prefill,
      decode_tokens_per_s: decode,
      prefill_vs_stock: prefill / median(stock.prefill),
      decode_vs_stock: decode / median(stock.decode),
      prompt_logits_max_abs_diff_vs_stock: maxDiff(d.last.logits, stock.last.logits),
      prompt_logits_max_abs_diff_vs_composite: composite.get(v) ?? 0,
      greedy_ids_equal_stock: d.last.ids.every((id, i) => id === stock.last.ids[i]),
      decode_rounds: d.decode,
    };
  });
  const line = (cells: string[]) => `${cells.map((c, i) => (i === 0 ? c.padEnd(12) : c.padStart(14))).join(' ')}\n`;
  process.stdout.write(
    line([
      'variant',
      'prefill tok/s',
      'decode tok/s',
      'prefill ×',
      'decode ×',
      '|Δ| composite',
      '|Δ| stock',
      'ids = stock',
    ]),
  );
  for (const r of rows) {
    process.stdout.write(
      line([
        r.variant,
        r.prefill_tokens_per_s.toFixed(2),
        r.decode_tokens_per_s.toFixed(2),
        r.prefill_vs_stock.toFixed(2),
        r.decode_vs_stock.toFixed(2),
        r.prompt_logits_max_abs_diff_vs_composite.toExponential(1),
        r.prompt_logits_max_abs_diff_vs_stock.toExponential(1),
        String(r.greedy_ids_equal_stock),
      ]),
    );
  }
  if (vision && visionCfg) {
    process.stdout.write(
      `vision (ViT hidden ${visionCfg.hidden}, ${visionCfg.layers} layers, ${visionCfg.image}px = ${visionCfg.tokens} tokens): ` +
        Object.entries(vision)
          .map(([v, r]) => `${v} ${r.ms.toFixed(0)} ms/image (|Δ| ${r.max_abs_diff_vs_stock.toExponential(1)})`)
          .join(', ') +
        ` — owned/stock speed ${((vision.stock?.ms ?? 0) / (vision['owned:fp32']?.ms ?? 1)).toFixed(2)}×\n`,
    );
  }
  const report = {
    date: new Date().toISOString(),
    adapter,
    software_adapter: software,
    shader_f16: dev?.shaderF16 ?? false,
    backend: getBackendInfo()?.name,
    load_average: loadavg(),
    cores: cpus().length,
    decoder: {
      hidden: a.hidden,
      layers: a.layers,
      heads: a.heads,
      intermediate: a.intermediate,
      vocab: a.vocab,
      parameters: params,
      prompt: a.prompt,
      steps: a.steps,
      rounds: a.rounds,
    },
    results: rows,
    ...(vision ? { vision: { config: visionCfg, results: vision } } : {}),
  };
  mkdirSync(dirname(a.out), { recursive: true });
  writeFileSync(a.out, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`wrote ${a.out}\n`);
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
