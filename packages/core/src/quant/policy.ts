/**
 * Which parameters a `dtype` request stores packed, and as what. The policy, by checkpoint key:
 *
 * | group | keys | with `dtype: 'q4'` (a string) |
 * |---|---|---|
 * | `decoder` | the language model's Linear weights (`model.layers.*`, `language_model.model.layers.*`) | q4 |
 * | `lm_head` | `lm_head.weight`, `language_model.lm_head.weight` | q4 |
 * | `embed_tokens` | the token embedding table (`model.embed_tokens.weight`, …) | fp32 (kept as a tfjs tensor) |
 * | `vision_encoder` | `model.vision_model.*`, `vision_model.*` | fp32 (kept as tfjs tensors) |
 * | `visual_abstractor` | `model.visual_abstractor.*`, `abstractor.*` | fp32 (kept as tfjs tensors) |
 *
 * Only Linear weights (`[out, in]`, registered with `linearWeight`) and the token embedding table
 * (registered with `rowTable`, packed only when a map names `embed_tokens`) are ever packed: norms,
 * biases, the patch convolution, position tables and query tokens always stay float32 tfjs tensors.
 * A packed embedding table decodes only the rows it looks up, on the host; on WebGPU it takes no GPU
 * memory at all (`{ embed_tokens: 'fp32' }` frees it from the GPU without changing a number). A quantized dtype needs an input dimension that is a multiple of 32
 * (GGUF blocks); a weight whose rows are not whole blocks stays float32 and is listed in the report.
 * A map (`{ decoder: 'q4', lm_head: 'q8', vision_encoder: 'fp16' }`) sets each group; groups it
 * does not name stay fp32. `'auto'` means fp32 everywhere (tfjs tensors, trainable).
 * `'fp32'` given explicitly packs the group's Linear weights as float32 outside the tfjs heap
 * (for owned kernels; not trainable); leaving a group out keeps them as tfjs variables.
 */
import { ErrorCode, OwletError } from '../errors.js';
import { type WeightDType, WEIGHT_DTYPES, canStoreAs, isWeightDType } from './packed.js';

export type WeightGroup = 'decoder' | 'lm_head' | 'embed_tokens' | 'vision_encoder' | 'visual_abstractor';
export const WEIGHT_GROUPS: readonly WeightGroup[] = Object.freeze([
  'decoder',
  'lm_head',
  'embed_tokens',
  'vision_encoder',
  'visual_abstractor',
]);

/** A `dtype` option: one dtype for the language model, or a per-group map. */
export type DTypeRequest = WeightDType | 'auto' | Partial<Record<WeightGroup, WeightDType | 'auto'>>;

/** The group of a checkpoint key (mPLUG-Owl2, mPLUG-Owl v1 and plain LLaMA key layouts). */
export function weightGroupOf(key: string): WeightGroup {
  if (/^(model\.)?vision_model\./.test(key)) return 'vision_encoder';
  if (/^(model\.visual_abstractor|abstractor)\./.test(key) || key === 'query_tokens') return 'visual_abstractor';
  if (/(^|\.)lm_head\.weight$/.test(key)) return 'lm_head';
  if (/(^|\.)embed_tokens\.weight$/.test(key)) return 'embed_tokens';
  return 'decoder';
}

function checkDtype(v: unknown, where: string): WeightDType | 'auto' {
  if (v === 'auto' || isWeightDType(v)) return v;
  throw new OwletError(
    ErrorCode.INVALID_ARGUMENT,
    `${where}: unknown dtype ${JSON.stringify(v)}; expected one of ${[...WEIGHT_DTYPES, 'auto'].join(', ')}`,
    { details: { dtype: v } },
  );
}

/** Validates a request (typed error for unknown dtypes or groups) and returns it as a full map. */
export function resolveDTypeRequest(
  request: DTypeRequest | undefined,
): Readonly<Record<WeightGroup, WeightDType | null>> {
  const out: Record<WeightGroup, WeightDType | null> = {
    decoder: null,
    lm_head: null,
    embed_tokens: null,
    vision_encoder: null,
    visual_abstractor: null,
  };
  if (request === undefined || request === 'auto') return out;
  if (typeof request === 'string') {
    const d = checkDtype(request, 'dtype');
    if (d !== 'auto') {
      out.decoder = d;
      out.lm_head = d;
    }
    return out;
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `dtype must be a string or a per-module map, got ${JSON.stringify(request)}`,
    );
  }
  for (const [k, v] of Object.entries(request)) {
    if (!(WEIGHT_GROUPS as readonly string[]).includes(k)) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `dtype: unknown module ${JSON.stringify(k)}; expected ${WEIGHT_GROUPS.join(', ')}`,
        { details: { module: k } },
      );
    }
    const d = checkDtype(v, `dtype.${k}`);
    out[k as WeightGroup] = d === 'auto' ? null : d;
  }
  return out;
}

/** What a request means for one parameter. */
export type PackDecision =
  | { dtype: WeightDType }
  /** Not packed: not a Linear weight, or its group is not asked to be packed. */
  | { dtype: null; reason: 'not-linear' | 'not-requested' }
  /** The group asks for a quantized dtype but the rows are not whole 32-value blocks: kept float32. */
  | { dtype: null; reason: 'partial-blocks'; wanted: WeightDType };

/**
 * The dtype a parameter is stored in under `request` (null: keep it a float32 tfjs tensor).
 * `packable`: a Linear weight or a lookup table (`Parameter.packable`).
 */
export function packDecision(
  request: Readonly<Record<WeightGroup, WeightDType | null>>,
  key: string,
  shape: readonly number[],
  packable: boolean,
): PackDecision {
  if (!packable || shape.length !== 2) return { dtype: null, reason: 'not-linear' };
  const d = request[weightGroupOf(key)];
  if (d === null) return { dtype: null, reason: 'not-requested' };
  return canStoreAs(d, shape) ? { dtype: d } : { dtype: null, reason: 'partial-blocks', wanted: d };
}
