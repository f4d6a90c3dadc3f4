/**
 * `planMemory(config, { dtype })`: the GPU bytes a model needs on the WebGPU engine, per part,
 * from its config alone (no weights are read or allocated):
 *
 * - **weights**, per group (`decoder`, `lm_head`, `vision_encoder`, `visual_abstractor`): packed
 *   Linear weights in the engine's GPU layout, every other parameter (norms, biases, the token
 *   embedding table, position tables) as float32 — exactly what `fromPretrained` + the engine
 *   allocate for the same `dtype`;
 * - **KV cache** for `contextLength` positions (float32 keys and values of every layer), plus the
 *   transient copy of one layer while the segmented cache merges;
 * - **activations**: an estimate of the largest transient set, a prefill of `prefillLength` tokens
 *   or the vision tower on `images` images, whichever is larger (the owned attention makes no
 *   [H, L, L] scores).
 *
 * tfjs keeps freed buffers for reuse, so a process's GPU footprint can exceed the plan by up to the
 * activation figure.
 */
import { type DTypeRequest, type WeightPlan, planWeightMemory } from '@owlet/core';

import { detectModelType, type MplugOwlModelConfig, resolveMplugOwlModelConfig } from './config.js';
import { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
import { MplugOwlForConditionalGeneration } from './MplugOwlForConditionalGeneration.js';

export interface MemoryPlanOptions {
  /** As for `fromPretrained` (a string packs decoder and lm_head; a map names each group). */
  dtype?: DTypeRequest;
  /** KV-cache positions (default: the text model's `max_position_embeddings`). */
  contextLength?: number;
  /** Tokens of the largest prefill (default: min(512, contextLength)). */
  prefillLength?: number;
  /** Images encoded at once (default 1). */
  images?: number;
  /** The binding limit packed weights are split at (default 128 MiB, WebGPU's default). */
  maxBindingBytes?: number;
}

export interface MemoryPlanPart {
  name: string;
  bytes: number;
  detail: string;
}

export interface MemoryPlan {
  model_type: string;
  dtype: DTypeRequest | 'auto';
  parts: MemoryPlanPart[];
  weights: WeightPlan;
  kv_cache: { bytes: number; peak_bytes: number; context_length: number };
  activations: { bytes: number; detail: string };
  /** weights + KV peak + activations. */
  total_bytes: number;
}

const MB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

function checkCount(name: string, v: number | undefined, fallback: number): number {
  const n = v ?? fallback;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new RangeError(`planMemory: ${name} must be a positive integer, got ${n}`);
  return n;
}

export function planMemory(configJson: unknown, options: MemoryPlanOptions = {}): MemoryPlan {
  const type = detectModelType(configJson);
  const config: MplugOwlModelConfig = resolveMplugOwlModelConfig(configJson);
  const model =
    type === 'mplug_owl2'
      ? new MPLUGOwl2LlamaForCausalLM(configJson as Record<string, unknown>)
      : new MplugOwlForConditionalGeneration(configJson as Record<string, unknown>);
  let weights: WeightPlan;
  try {
    weights = planWeightMemory(model, {
      ...(options.dtype !== undefined ? { dtype: options.dtype } : {}),
      ...(options.maxBindingBytes !== undefined ? { maxBindingBytes: options.maxBindingBytes } : {}),
    });
  } finally {
    model.dispose(); // shape-only: nothing was allocated
  }
  const t = config.text_config;
  const ctx = checkCount('contextLength', options.contextLength, t.max_position_embeddings);
  const prefill = checkCount('prefillLength', options.prefillLength, Math.min(512, ctx));
  const images = checkCount('images', options.images, 1);
  const perLayerKV = 2 * t.num_key_value_heads * ctx * t.head_dim * 4;
  const kv = t.num_hidden_layers * perLayerKV;
  const kvPeak = kv + perLayerKV;

  const v = config.vision_config;
  const visionTokens = (v.image_size / v.patch_size) ** 2 + 1;
  // live float32 values at the widest point: residual, normed, q/k/v, attention output, projection
  // (8 rows of the hidden width) and the MLP's intermediate tensors
  const prefillFloats = prefill * (8 * t.hidden_size + 3 * t.intermediate_size) + t.vocab_size;
  const visionFloats = images * visionTokens * (8 * v.hidden_size + 2 * v.intermediate_size);
  const act = 4 * Math.max(prefillFloats, visionFloats);
  const actDetail =
    prefillFloats >= visionFloats
      ? `prefill of ${prefill} tokens (estimate)`
      : `vision tower on ${images} image(s) of ${visionTokens} tokens (estimate)`;

  const parts: MemoryPlanPart[] = [];
  for (const [name, g] of Object.entries(weights.groups)) {
    if (g.tensors === 0) continue;
    const packed = Object.entries(g.packed)
      .map(([d, b]) => `${d} ${MB(b as number)}`)
      .join(', ');
    parts.push({
      name,
      bytes: g.bytes,
      detail: `${(g.parameters / 1e6).toFixed(1)}M parameters: ${packed ? `${packed} packed, ` : ''}float32 ${MB(g.float32)}${g.host ? `; ${MB(g.host)} on the host` : ''}`,
    });
  }
  parts.push({
    name: 'kv_cache',
    bytes: kvPeak,
    detail: `${ctx} positions × ${t.num_hidden_layers} layers, float32 (${MB(kv)} + one layer while merging)`,
  });
  parts.push({ name: 'activations', bytes: act, detail: actDetail });
  return {
    model_type: type,
    dtype: options.dtype ?? 'auto',
    parts,
    weights,
    kv_cache: { bytes: kv, peak_bytes: kvPeak, context_length: ctx },
    activations: { bytes: act, detail: actDetail },
    total_bytes: weights.bytes + kvPeak + act,
  };
}
