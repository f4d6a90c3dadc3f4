/**
 * Configuration of the mPLUG-Owl vision encoder (ViT-L/14), read from a checkpoint's `config.json`.
 *
 * Mirrors MplugOwlVisionConfig — X-PLUG/mPLUG-Owl@0f3068f
 * mPLUG-Owl2/mplug_owl2/model/configuration_mplug_owl2.py (v2, nested under
 * `visual_config.visual_model`) and mPLUG-Owl/mplug_owl/configuration_mplug_owl.py (v1, under
 * `vision_config`).
 */
import { ErrorCode, OwletError, checkConfigBounds, configFields, showConfigValue, type ConfigJson } from '@owlet/core';

/** `mplug_owl2`: mPLUG-Owl2 (448 px). `mplug_owl`: mPLUG-Owl v1 (224 px). */
export type MplugOwlVisionVariant = 'mplug_owl2' | 'mplug_owl';

/** Activations the vision MLP supports (`ACT2FN` names). */
export type MplugOwlVisionActivation = 'quick_gelu' | 'gelu';

const ACTIVATIONS: readonly MplugOwlVisionActivation[] = ['quick_gelu', 'gelu'];

export interface MplugOwlVisionConfig {
  readonly variant: MplugOwlVisionVariant;
  /** Token width D (1024). */
  readonly hidden_size: number;
  /** MLP inner width (4096). */
  readonly intermediate_size: number;
  /** Unused by the model (768); kept because config.json carries it. */
  readonly projection_dim: number;
  readonly num_hidden_layers: number;
  readonly num_attention_heads: number;
  /**
   * Read for completeness; the reference builds `patch_embed` with `in_channels=3` whatever this
   * says, and so does owlet (must be 3).
   */
  readonly num_channels: number;
  /** Input side in pixels (v2 448, v1 224). */
  readonly image_size: number;
  /** Patch side in pixels (14). */
  readonly patch_size: number;
  /**
   * MLP activation. v2 uses `ACT2FN[hidden_act]`; the v1 reference hard-codes QuickGELU whatever
   * the field says, so a v1 config always resolves to `quick_gelu`.
   */
  readonly hidden_act: MplugOwlVisionActivation;
  /** eps of every vision LayerNorm: pre, per-layer ×2, post (1e-6). */
  readonly layer_norm_eps: number;
  /** Inference runs without dropout; kept for completeness (0). */
  readonly attention_dropout: number;
  readonly initializer_range: number;
  readonly initializer_factor: number;
  readonly use_flash_attn: boolean;
  /**
   * A CLS token is prepended (both released models: true; the released v2 config.json has no such
   * key, and the v1 code has no switch). Without it, the reference's `position_embedding` is
   * `[256, D]` added to the 256 patch tokens.
   */
  readonly use_cls_token: boolean;
  /** `post_layernorm` is applied to every output token (true; v1 has no switch). */
  readonly use_post_layernorm: boolean;
}

export interface ResolveVisionConfigOptions {
  /** The variant when `json` is the nested vision dict itself (default `mplug_owl2`). */
  variant?: MplugOwlVisionVariant;
}

/** Derived sizes of a vision config. */
export interface MplugOwlVisionDims {
  /** D / heads (64). */
  readonly head_dim: number;
  /** Patches per side: floor(image_size / patch_size) (v2 32, v1 16). */
  readonly grid_size: number;
  /** grid² (v2 1024, v1 256). */
  readonly num_patches: number;
  /** Output tokens: num_patches + 1 with a CLS token (v2 1025, v1 257). */
  readonly seq_length: number;
  /** Rows of `position_embedding`. */
  readonly position_embedding_shape: readonly number[];
}

type Json = ConfigJson;

const fields = configFields('vision');
const { posInt, positiveNumber, bool } = fields;
function fail(field: string, value: unknown, expected: string): never {
  return fields.fail(field, value, expected);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function locate(json: Json, options: ResolveVisionConfigOptions): { variant: MplugOwlVisionVariant; dict: Json } {
  const modelType = json.model_type;
  const isV2 = modelType === 'mplug_owl2' || 'visual_config' in json;
  const isV1 = modelType === 'mplug-owl' || 'vision_config' in json;
  if (isV2 && isV1) {
    fail('model_type', modelType, 'the config of one model (it has both visual_config and vision_config)');
  }
  if (isV2 || isV1) {
    const variant: MplugOwlVisionVariant = isV2 ? 'mplug_owl2' : 'mplug_owl';
    if (options.variant && options.variant !== variant) {
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `vision config: options.variant is ${options.variant} but the config.json is a ${variant} config (model_type ${showConfigValue(modelType)})`,
        { details: { field: 'variant', expected: options.variant, actual: variant } },
      );
    }
    if (isV2) {
      // MPLUGOwl2Config uses DEFAULT_VISUAL_CONFIG when visual_config is absent.
      const vc = json.visual_config;
      if (vc !== undefined && vc !== null && !isObject(vc)) fail('visual_config', vc, 'an object');
      const dict = isObject(vc) ? vc.visual_model : undefined;
      if (dict !== undefined && dict !== null && !isObject(dict)) fail('visual_config.visual_model', dict, 'an object');
      return { variant, dict: isObject(dict) ? dict : {} };
    }
    const dict = json.vision_config;
    if (dict !== undefined && dict !== null && !isObject(dict)) fail('vision_config', dict, 'an object');
    return { variant, dict: isObject(dict) ? dict : {} };
  }
  if (modelType !== undefined && modelType !== 'mplug_owl_vision_model') {
    fail('model_type', modelType, '"mplug_owl2", "mplug-owl" or "mplug_owl_vision_model"');
  }
  const variant = options.variant ?? 'mplug_owl2';
  if (variant !== 'mplug_owl2' && variant !== 'mplug_owl') fail('variant', variant, '"mplug_owl2" or "mplug_owl"');
  return { variant, dict: json };
}

/**
 * Resolves the vision configuration from a `config.json`: the whole mPLUG-Owl2 config (reads
 * `visual_config.visual_model`), the whole mPLUG-Owl v1 config (reads `vision_config`), or the
 * nested vision dict itself (then `options.variant` says which model, default mPLUG-Owl2). Missing
 * fields take the released models' values; the result is validated and frozen.
 */
export function resolveMplugOwlVisionConfig(
  json: unknown = {},
  options: ResolveVisionConfigOptions = {},
): MplugOwlVisionConfig {
  if (!isObject(json)) fail('config', json, 'an object (the parsed config.json)');
  const { variant, dict: d } = locate(json, options);
  const v2 = variant === 'mplug_owl2';

  const hidden_size = posInt(d, 'hidden_size', 1024);
  const intermediate_size = posInt(d, 'intermediate_size', 4096);
  const projection_dim = posInt(d, 'projection_dim', 768);
  const num_hidden_layers = posInt(d, 'num_hidden_layers', 24);
  const num_attention_heads = posInt(d, 'num_attention_heads', 16);
  const num_channels = posInt(d, 'num_channels', 3);
  const image_size = posInt(d, 'image_size', v2 ? 448 : 224);
  const patch_size = posInt(d, 'patch_size', 14);
  {
    const sizes = { num_hidden_layers, hidden_size, intermediate_size, image_size, patch_size };
    checkConfigBounds('vision', { ...sizes, projection_dim, num_attention_heads });
    const num_patches = Math.floor(image_size / patch_size) ** 2;
    checkConfigBounds('vision', { num_patches });
    // patch embedding, positions, per layer (qkv + dense, the MLP)
    const perLayer = 4 * hidden_size * hidden_size + 2 * hidden_size * intermediate_size;
    const params = (3 * patch_size * patch_size + num_patches + 1) * hidden_size + num_hidden_layers * perLayer;
    checkConfigBounds('vision', sizes, params);
  }
  const layer_norm_eps = positiveNumber(d, 'layer_norm_eps', 1e-6);
  const initializer_range = positiveNumber(d, 'initializer_range', 0.02);
  const initializer_factor = positiveNumber(d, 'initializer_factor', 1.0);
  const use_flash_attn = bool(d, 'use_flash_attn', false);
  // v1 has no switches: CLS token and post-LN are always there.
  const use_cls_token = v2 ? bool(d, 'use_cls_token', true) : true;
  const use_post_layernorm = v2 ? bool(d, 'use_post_layernorm', true) : true;

  const dropout = d.attention_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) {
    fail('attention_dropout', dropout, 'a number in [0, 1)');
  }

  const act = d.hidden_act ?? 'quick_gelu';
  if (typeof act !== 'string') fail('hidden_act', act, `one of ${ACTIVATIONS.map((a) => `"${a}"`).join(', ')}`);
  let hidden_act: MplugOwlVisionActivation;
  if (!v2) {
    hidden_act = 'quick_gelu'; // modeling_mplug_owl.py: `self.activation_fn = QuickGELU()`
  } else if ((ACTIVATIONS as readonly string[]).includes(act)) {
    hidden_act = act as MplugOwlVisionActivation;
  } else {
    fail('hidden_act', act, `one of ${ACTIVATIONS.map((a) => `"${a}"`).join(', ')}`);
  }

  if (num_channels !== 3) {
    fail('num_channels', num_channels, '3 (the reference patch_embed is built with in_channels=3)');
  }
  if (hidden_size % num_attention_heads !== 0) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `vision config: hidden_size ${hidden_size} is not a multiple of num_attention_heads ${num_attention_heads}`,
      { details: { field: 'hidden_size', value: hidden_size, num_attention_heads } },
    );
  }
  if (patch_size > image_size) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `vision config: patch_size ${patch_size} is larger than image_size ${image_size}`,
      { details: { field: 'patch_size', value: patch_size, image_size } },
    );
  }
  if (!use_cls_token) {
    const grid = Math.floor(image_size / patch_size);
    if (grid * grid !== 256) {
      // Without a CLS token the reference stores 256 positions and resamples them with bicubic
      // interpolation (get_abs_pos) for any other patch count; owlet does not implement that path.
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `vision config: use_cls_token false needs a 16×16 patch grid (the reference stores 256 positions), got image_size ${image_size} / patch_size ${patch_size} = ${grid}×${grid}`,
        { details: { field: 'use_cls_token', value: false, image_size, patch_size } },
      );
    }
  }

  return Object.freeze({
    variant,
    hidden_size,
    intermediate_size,
    projection_dim,
    num_hidden_layers,
    num_attention_heads,
    num_channels,
    image_size,
    patch_size,
    hidden_act,
    layer_norm_eps,
    attention_dropout: dropout,
    initializer_range,
    initializer_factor,
    use_flash_attn,
    use_cls_token,
    use_post_layernorm,
  });
}

/** Sizes that follow from a config. */
export function mplugOwlVisionDims(config: MplugOwlVisionConfig): MplugOwlVisionDims {
  const grid_size = Math.floor(config.image_size / config.patch_size);
  const num_patches = grid_size * grid_size;
  return Object.freeze({
    head_dim: config.hidden_size / config.num_attention_heads,
    grid_size,
    num_patches,
    seq_length: config.use_cls_token ? num_patches + 1 : num_patches,
    position_embedding_shape: Object.freeze(
      config.use_cls_token ? [1, num_patches + 1, config.hidden_size] : [num_patches, config.hidden_size],
    ),
  });
}

/** The released mPLUG-Owl2 vision config (`MplugOwlVisionConfig()` defaults): ViT-L/14 at 448 px, 1025 tokens. */
export const MPLUG_OWL2_VISION_CONFIG: MplugOwlVisionConfig = resolveMplugOwlVisionConfig(
  {},
  { variant: 'mplug_owl2' },
);

/** The released mPLUG-Owl v1 vision config: ViT-L/14 at 224 px, 257 tokens. */
export const MPLUG_OWL_VISION_CONFIG: MplugOwlVisionConfig = resolveMplugOwlVisionConfig({}, { variant: 'mplug_owl' });
