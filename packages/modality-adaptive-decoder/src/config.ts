/**
 * Configuration of the language model, read from a checkpoint's `config.json`.
 *
 * Mirrors LlamaConfig (transformers 4.31 / 4.28) and MPLUGOwl2Config — X-PLUG/mPLUG-Owl@0f3068f
 * mPLUG-Owl2/mplug_owl2/model/configuration_mplug_owl2.py. mPLUG-Owl2 (`model_type` `mplug_owl2`)
 * turns the modality-adaptive module on (`multiway`, two copies); plain LLaMA and mPLUG-Owl v1's
 * `text_config` (`model_type` `mplug-owl`) run without it.
 */
import { checkConfigBounds, configFields, type ConfigJson } from '@owlet/core';

export interface LlamaConfig {
  readonly vocab_size: number;
  readonly hidden_size: number;
  readonly intermediate_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  /** Grouped-query attention; equal to `num_attention_heads` (MHA) in both released models. */
  readonly num_key_value_heads: number;
  /** Always `silu` (the only activation LLaMA uses). */
  readonly hidden_act: 'silu';
  /** 1e-6 in both released models (stock LLaMA-2 uses 1e-5: do not copy that). */
  readonly rms_norm_eps: number;
  /** RoPE base; 10000 (transformers 4.28 configs have no field and use 10000). */
  readonly rope_theta: number;
  readonly max_position_embeddings: number;
  readonly bos_token_id: number | null;
  /** One id or several (`generate` stops on any). */
  readonly eos_token_id: number | readonly number[] | null;
  readonly pad_token_id: number | null;
  /** False in both released models: `lm_head.weight` is its own parameter. */
  readonly tie_word_embeddings: boolean;
  /** Modality-adaptive module on: per-modality copies of both RMSNorms, k_proj and v_proj. */
  readonly multiway: boolean;
  /** Number of modality copies when `multiway` (2: 0 = text, 1 = image). */
  readonly num_multiway: number;
  /** Derived: hidden_size / num_attention_heads. */
  readonly head_dim: number;
}

export interface ResolveLlamaConfigOptions {
  /** Force the modality-adaptive module on or off (default: on for `model_type` `mplug_owl2`). */
  multiway?: boolean;
}

type Json = ConfigJson;

const fields = configFields('llama');
const { posInt, positiveNumber: posNumber, bool } = fields;
function fail(field: string, value: unknown, expected: string): never {
  return fields.fail(field, value, expected);
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function tokenId(src: Json, field: string, fallback: number | null): number | null {
  const v = src[field];
  if (v === undefined) return fallback;
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(field, v, 'a non-negative integer or null');
  return v;
}

/**
 * Reads a LLaMA text config: a plain LLaMA / mPLUG-Owl2 `config.json`, or an mPLUG-Owl v1
 * `config.json` (whose LLM lives under `text_config`). Missing fields take the released 7B values;
 * every value is validated (`OwletError('INVALID_CONFIG')` naming field and value). Frozen.
 */
export function resolveLlamaConfig(json: unknown, options: ResolveLlamaConfigOptions = {}): LlamaConfig {
  if (!isObject(json)) fail('<root>', json, 'an object');
  let src: Json = json;
  let defaultMultiway = json.model_type === 'mplug_owl2';
  if (json.model_type === 'mplug-owl' || (json.text_config !== undefined && json.model_type !== 'mplug_owl2')) {
    if (!isObject(json.text_config)) fail('text_config', json.text_config, 'an object (mPLUG-Owl v1 config)');
    src = json.text_config;
    defaultMultiway = false;
  }
  if (src.model_type !== undefined && !['llama', 'mplug_owl2'].includes(src.model_type as string)) {
    fail('model_type', src.model_type, '"llama" or "mplug_owl2"');
  }

  const hidden_size = posInt(src, 'hidden_size', 4096);
  const num_attention_heads = posInt(src, 'num_attention_heads', 32);
  const num_key_value_heads = posInt(src, 'num_key_value_heads', num_attention_heads);
  const vocab_size = posInt(src, 'vocab_size', 32000);
  const intermediate_size = posInt(src, 'intermediate_size', 11008);
  const num_hidden_layers = posInt(src, 'num_hidden_layers', 32);
  const max_position_embeddings = posInt(src, 'max_position_embeddings', 2048);
  {
    // Bounds before anything else (a million layers must not reach the module builder).
    const sizes = { num_hidden_layers, hidden_size, intermediate_size, vocab_size, num_attention_heads };
    checkConfigBounds('llama', { ...sizes, num_key_value_heads, max_position_embeddings });
    const kv = (hidden_size / num_attention_heads) * num_key_value_heads;
    // embed + lm_head + per layer (q, o, k and v in 2 multiway copies, the SwiGLU MLP)
    const perLayer = 2 * hidden_size * hidden_size + 4 * kv * hidden_size + 3 * hidden_size * intermediate_size;
    checkConfigBounds('llama', sizes, 2 * vocab_size * hidden_size + num_hidden_layers * perLayer);
  }
  if (hidden_size % num_attention_heads !== 0) {
    fail('hidden_size', hidden_size, `a multiple of num_attention_heads (${num_attention_heads})`);
  }
  const head_dim = hidden_size / num_attention_heads;
  if (head_dim % 2 !== 0) fail('hidden_size', hidden_size, `such that the head dim (${head_dim}) is even (RoPE)`);
  if (num_attention_heads % num_key_value_heads !== 0) {
    fail('num_key_value_heads', num_key_value_heads, `a divisor of num_attention_heads (${num_attention_heads})`);
  }
  const act = src.hidden_act ?? 'silu';
  if (act !== 'silu') fail('hidden_act', act, '"silu"');
  if (src.rope_scaling !== undefined && src.rope_scaling !== null) {
    fail('rope_scaling', src.rope_scaling, 'null (RoPE scaling is not supported)');
  }
  if (src.attention_bias !== undefined && src.attention_bias !== false) {
    fail('attention_bias', src.attention_bias, 'false (LLaMA projections have no bias)');
  }

  let eos: number | readonly number[] | null;
  const rawEos = src.eos_token_id;
  if (Array.isArray(rawEos)) {
    eos = Object.freeze(
      rawEos.map((v) => {
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
          fail('eos_token_id', rawEos, 'non-negative integers');
        return v;
      }),
    );
  } else {
    eos = tokenId(src, 'eos_token_id', 2);
  }

  const multiway =
    options.multiway ?? (src.multiway === undefined ? defaultMultiway : bool(src, 'multiway', defaultMultiway));
  const num_multiway = multiway ? posInt(src, 'num_multiway', 2) : 1;
  if (multiway && num_multiway !== 2) fail('num_multiway', num_multiway, '2 (0 = text, 1 = image)');

  return Object.freeze({
    vocab_size,
    hidden_size,
    intermediate_size,
    num_hidden_layers,
    num_attention_heads,
    num_key_value_heads,
    hidden_act: 'silu' as const,
    rms_norm_eps: posNumber(src, 'rms_norm_eps', 1e-6),
    rope_theta: posNumber(src, 'rope_theta', 10000),
    max_position_embeddings,
    bos_token_id: tokenId(src, 'bos_token_id', 1),
    eos_token_id: eos,
    pad_token_id: tokenId(src, 'pad_token_id', null),
    tie_word_embeddings: bool(src, 'tie_word_embeddings', false),
    multiway,
    num_multiway,
    head_dim,
  });
}

/** The LLM of the released mPLUG-Owl2 (`MAGAer13/mplug-owl2-llama2-7b`, `MPLUGOwl2Config()` defaults). */
export const MPLUG_OWL2_7B_LLAMA_CONFIG: LlamaConfig = resolveLlamaConfig({ model_type: 'mplug_owl2' });

/** The LLM of the released mPLUG-Owl v1 (`MAGAer13/mplug-owl-llama-7b`: stock LLaMA-7B, pad 0). */
export const MPLUG_OWL_7B_LLAMA_CONFIG: LlamaConfig = resolveLlamaConfig({
  model_type: 'mplug-owl',
  text_config: { model_type: 'llama', pad_token_id: 0 },
});

/** Every EOS id of a config as a list. */
export function eosIds(config: Pick<LlamaConfig, 'eos_token_id'>): number[] {
  const e = config.eos_token_id;
  return e === null ? [] : typeof e === 'number' ? [e] : [...e];
}
