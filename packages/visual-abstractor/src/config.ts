/**
 * Configuration of the visual abstractor, read from a checkpoint's `config.json`.
 *
 * Mirrors MplugOwlVisualAbstractorConfig — X-PLUG/mPLUG-Owl@0f3068f
 * mPLUG-Owl2/mplug_owl2/model/configuration_mplug_owl2.py (v2, nested under
 * `visual_config.visual_abstractor`) and mPLUG-Owl/mplug_owl/configuration_mplug_owl.py (v1, under
 * `visual_abstractor_config`, with the query count at the top level as `num_query_tokens`).
 */
import { ErrorCode, OwletError, checkConfigBounds, configFields, type ConfigJson } from '@owlet/core';

/** `mplug_owl2`: mPLUG-Owl2 (sin-cos position embeddings, `query_embeds` inside the abstractor).
 *  `mplug_owl`: mPLUG-Owl v1 (no position embeddings, queries are the top-level `query_tokens`). */
export type MplugOwlVisualAbstractorVariant = 'mplug_owl2' | 'mplug_owl';

export interface MplugOwlVisualAbstractorConfig {
  readonly variant: MplugOwlVisualAbstractorVariant;
  /** Width of the learnable queries (1024). */
  readonly hidden_size: number;
  /** Width of the vision tokens (1024); the reference code needs it equal to `hidden_size`. */
  readonly encoder_hidden_size: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  /** Inner width of the SwiGLU MLP (2816 in both released models). */
  readonly intermediate_size: number;
  /** eps of `ffn_ln` only (1e-6); norm1/normk/norm2 use PyTorch's default 1e-5. */
  readonly layer_norm_eps: number;
  /** Number of learnable queries Q (64). v1 reads it from the top-level `num_query_tokens`. */
  readonly num_learnable_queries: number;
  /** Side of the vision patch grid the key position table is built for (v2: 32); null for v1. */
  readonly grid_size: number | null;
  /** v2: the image tokens start with a CLS token, which gets a zero position row. */
  readonly use_cls_token: boolean;
  /** Always false: the reference's `add_v2t_pos_emb` path is inactive. */
  readonly add_v2t_pos_emb: false;
  /** Unused at inference (kept for completeness). */
  readonly attention_probs_dropout_prob: number;
  /** Width of the language model (4096): output width of `visual_fc` and of `vit_eos`. */
  readonly language_hidden_size: number;
  /** Derived from the variant: fixed 2-D sin-cos position embeddings on query and key inputs (v2). */
  readonly use_sincos_pos_embed: boolean;
  /**
   * Derived from the variant: the abstractor owns the learnable queries as its parameter
   * `query_embeds` (v2). When false (v1) the caller passes them to `forward` (`query_tokens`).
   */
  readonly owns_query_embeds: boolean;
}

export interface ResolveVisualAbstractorOptions {
  /** The variant when `json` is the nested abstractor dict itself (default `mplug_owl2`). */
  variant?: MplugOwlVisualAbstractorVariant;
  /** The language model width when `json` is the nested abstractor dict (default 4096). */
  language_hidden_size?: number;
}

/** PyTorch's `nn.LayerNorm` default, used by norm1, normk and norm2. */
export const ABSTRACTOR_TORCH_LAYER_NORM_EPS = 1e-5;

type Json = ConfigJson;

const fields = configFields('visual abstractor');
const { posInt, positiveNumber, bool } = fields;
function fail(field: string, value: unknown, expected: string): never {
  return fields.fail(field, value, expected);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface Located {
  variant: MplugOwlVisualAbstractorVariant;
  dict: Json;
  /** Top-level fields that override the nested dict (v1 `num_query_tokens`). */
  numQueries?: unknown;
  languageHidden?: unknown;
  where: string;
}

function locate(json: Json, options: ResolveVisualAbstractorOptions): Located {
  const modelType = json.model_type;
  const isV2 = modelType === 'mplug_owl2' || 'visual_config' in json;
  const isV1 = modelType === 'mplug-owl' || 'visual_abstractor_config' in json;
  if (isV2 && isV1) {
    fail('model_type', modelType, 'a config of one model (it has both visual_config and visual_abstractor_config)');
  }
  if (isV2 || isV1) {
    const variant: MplugOwlVisualAbstractorVariant = isV2 ? 'mplug_owl2' : 'mplug_owl';
    if (options.variant && options.variant !== variant) {
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `visual abstractor config: options.variant is ${options.variant} but the config.json is a ${variant} config (model_type ${JSON.stringify(modelType)})`,
        { details: { field: 'variant', expected: options.variant, actual: variant } },
      );
    }
    if (isV2) {
      const vc = json.visual_config;
      if (vc !== undefined && vc !== null && !isObject(vc)) fail('visual_config', vc, 'an object');
      const dict = isObject(vc) ? vc.visual_abstractor : undefined;
      if (dict !== undefined && dict !== null && !isObject(dict))
        fail('visual_config.visual_abstractor', dict, 'an object');
      return {
        variant,
        dict: isObject(dict) ? dict : {},
        languageHidden: json.hidden_size,
        where: 'visual_config.visual_abstractor',
      };
    }
    const dict = json.visual_abstractor_config;
    if (dict !== undefined && dict !== null && !isObject(dict)) fail('visual_abstractor_config', dict, 'an object');
    const text = json.text_config;
    if (text !== undefined && text !== null && !isObject(text)) fail('text_config', text, 'an object');
    return {
      variant,
      dict: isObject(dict) ? dict : {},
      numQueries: json.num_query_tokens,
      languageHidden: isObject(text) ? text.hidden_size : undefined,
      where: 'visual_abstractor_config',
    };
  }
  if (modelType !== undefined && modelType !== 'mplug_owl_visual_abstract') {
    fail('model_type', modelType, '"mplug_owl2", "mplug-owl" or "mplug_owl_visual_abstract"');
  }
  const variant = options.variant ?? 'mplug_owl2';
  if (variant !== 'mplug_owl2' && variant !== 'mplug_owl') fail('variant', variant, '"mplug_owl2" or "mplug_owl"');
  return { variant, dict: json, languageHidden: options.language_hidden_size, where: 'visual abstractor' };
}

/**
 * Resolves the abstractor configuration from a `config.json`: the whole mPLUG-Owl2 config (reads
 * `visual_config.visual_abstractor` and the LLM `hidden_size`), the whole mPLUG-Owl v1 config (reads
 * `visual_abstractor_config`, `num_query_tokens` and `text_config.hidden_size`), or the nested
 * abstractor dict itself (then `options.variant` says which model, default mPLUG-Owl2). Missing
 * fields take the released models' values; the result is validated and frozen.
 */
export function resolveMplugOwlVisualAbstractorConfig(
  json: unknown = {},
  options: ResolveVisualAbstractorOptions = {},
): MplugOwlVisualAbstractorConfig {
  if (!isObject(json)) fail('config', json, 'an object (the parsed config.json)');
  const loc = locate(json, options);
  const d = loc.dict;
  const v2 = loc.variant === 'mplug_owl2';

  const hidden_size = posInt(d, 'hidden_size', 1024);
  const encoder_hidden_size = posInt(d, 'encoder_hidden_size', 1024);
  const num_hidden_layers = posInt(d, 'num_hidden_layers', 6);
  const num_attention_heads = posInt(d, 'num_attention_heads', 16);
  // Both released checkpoints use 2816 (the v1 code default of 4096 does not match its checkpoint).
  const intermediate_size = posInt(d, 'intermediate_size', 2816);
  const layer_norm_eps = positiveNumber(d, 'layer_norm_eps', 1e-6);
  // v1 keeps the query count at the top level (`num_query_tokens`); the nested dict alone may give
  // it as `num_learnable_queries` like v2.
  const num_learnable_queries =
    v2 || loc.numQueries === undefined
      ? posInt(d, 'num_learnable_queries', 64)
      : posInt({ num_query_tokens: loc.numQueries }, 'num_query_tokens', 64);
  const grid_size = v2 ? posInt(d, 'grid_size', 32) : null;
  const use_cls_token = bool(d, 'use_cls_token', true);
  const add_v2t_pos_emb = bool(d, 'add_v2t_pos_emb', false);
  const dropout = d.attention_probs_dropout_prob ?? (v2 ? 0 : 0.1);
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) {
    fail('attention_probs_dropout_prob', dropout, 'a number in [0, 1)');
  }
  const language_hidden_size =
    loc.languageHidden === undefined || loc.languageHidden === null
      ? 4096
      : posInt(
          { language_hidden_size: loc.languageHidden },
          'language_hidden_size',
          4096,
          'language model hidden_size',
        );

  {
    const sizes = { num_hidden_layers, hidden_size, intermediate_size, num_learnable_queries, language_hidden_size };
    checkConfigBounds('visual abstractor', {
      ...sizes,
      encoder_hidden_size,
      num_attention_heads,
      ...(grid_size === null ? {} : { grid_size }),
    });
    // queries, per layer (q, k, v, o, the SwiGLU MLP), visual_fc; plus the sin-cos tables (grid² rows)
    const perLayer = 4 * hidden_size * hidden_size + 3 * hidden_size * intermediate_size;
    const tables = grid_size === null ? 0 : grid_size * grid_size * hidden_size;
    const params =
      num_learnable_queries * hidden_size + num_hidden_layers * perLayer + hidden_size * language_hidden_size + tables;
    checkConfigBounds('visual abstractor', sizes, params);
  }
  if (add_v2t_pos_emb) {
    fail('add_v2t_pos_emb', true, 'false (the reference code path for true is inactive and cannot be built)');
  }
  if (hidden_size % num_attention_heads !== 0) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `visual abstractor config: hidden_size ${hidden_size} is not a multiple of num_attention_heads ${num_attention_heads}`,
      { details: { field: 'hidden_size', value: hidden_size, num_attention_heads } },
    );
  }
  if (encoder_hidden_size !== hidden_size) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `visual abstractor config: encoder_hidden_size ${encoder_hidden_size} must equal hidden_size ${hidden_size} (norm1/normk and the key/value projections run over [queries; image] concatenated)`,
      { details: { field: 'encoder_hidden_size', value: encoder_hidden_size, hidden_size } },
    );
  }
  if (v2 && hidden_size % 4 !== 0) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `visual abstractor config: hidden_size ${hidden_size} must be a multiple of 4 for the 2-D sin-cos position embeddings`,
      { details: { field: 'hidden_size', value: hidden_size } },
    );
  }

  return Object.freeze({
    variant: loc.variant,
    hidden_size,
    encoder_hidden_size,
    num_hidden_layers,
    num_attention_heads,
    intermediate_size,
    layer_norm_eps,
    num_learnable_queries,
    grid_size,
    use_cls_token,
    add_v2t_pos_emb: false as const,
    attention_probs_dropout_prob: dropout,
    language_hidden_size,
    use_sincos_pos_embed: v2,
    owns_query_embeds: v2,
  });
}

/**
 * How many image tokens the abstractor accepts: `grid_size² (+1 with use_cls_token)` when it has
 * position embeddings (v2: 1025), null when any number works (v1).
 */
export function abstractorImageTokens(config: MplugOwlVisualAbstractorConfig): number | null {
  if (!config.use_sincos_pos_embed || config.grid_size === null) return null;
  return config.grid_size * config.grid_size + (config.use_cls_token ? 1 : 0);
}

/** The released mPLUG-Owl2 abstractor: 64 queries, 1025 keys, 6 layers, 16 heads, SwiGLU 2816, out 4096. */
export const MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG: MplugOwlVisualAbstractorConfig =
  resolveMplugOwlVisualAbstractorConfig({}, { variant: 'mplug_owl2' });

/** The released mPLUG-Owl v1 abstractor: 64 queries (top-level `query_tokens`), 6 layers, SwiGLU 2816. */
export const MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG: MplugOwlVisualAbstractorConfig = resolveMplugOwlVisualAbstractorConfig(
  {},
  { variant: 'mplug_owl' },
);
