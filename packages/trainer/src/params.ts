/**
 * Which parameters train, and in which optimizer group — by checkpoint key, so the trainer works
 * on any owlet module tree.
 *
 * - Patterns: a `RegExp`, or a string holding a regular expression that must match the whole key
 *   (recipes store them as strings, so they stay plain data).
 * - Weight decay: transformers' `Trainer.create_optimizer` (and mPLUG-Owl2's `MPLUGOwl2Trainer`)
 *   decays every parameter except those whose name contains "bias" and those inside an
 *   `nn.LayerNorm` (`get_parameter_names(model, ALL_LAYERNORM_LAYERS)`). RMSNorm weights are decayed.
 * - Layer-wise learning-rate decay (BEiT / the mPLUG-Owl2 paper's ViT setting): inside a ViT under
 *   `prefix`, the embeddings are layer 0, `encoder.layers.i` is layer i + 1, everything after is
 *   layer N + 1, and a parameter's learning rate is scaled by rate^(N + 1 − layer).
 */
import { LayerNorm, type Module, OwletError, type Parameter } from '@owlet/core';

import { TrainerErrorCode } from './errors.js';
import type { AdamWGroupOptions, AdamWParamGroup } from './optim/AdamW.js';

export type KeyPattern = string | RegExp;

const cache = new Map<string, RegExp>();

/** A full-key matcher for a pattern (strings are regular expressions anchored at both ends). */
export function keyMatcher(pattern: KeyPattern): RegExp {
  if (pattern instanceof RegExp) return pattern;
  let re = cache.get(pattern);
  if (!re) {
    try {
      re = new RegExp(`^(?:${pattern})$`);
    } catch (e) {
      throw new OwletError(
        TrainerErrorCode.INVALID_TRAINING_ARGS,
        `parameter pattern ${JSON.stringify(pattern)} is not a valid regular expression: ${(e as Error).message}`,
      );
    }
    cache.set(pattern, re);
  }
  return re;
}

export function matchesAny(key: string, patterns: readonly KeyPattern[] | undefined): boolean {
  return !!patterns && patterns.some((p) => keyMatcher(p).test(key));
}

/**
 * Makes exactly the keys matching `trainable` (and not `frozen`) trainable; every other
 * parameter is frozen. Returns the trainable keys in model order.
 */
export function applyTrainable(
  model: Module,
  trainable: readonly KeyPattern[],
  frozen: readonly KeyPattern[] = [],
): string[] {
  const plan = [...model.namedParameters()].map(([k, p]) => ({
    k,
    p,
    on: matchesAny(k, trainable) && !matchesAny(k, frozen),
  }));
  const packed = plan.filter((e) => e.on && e.p.packed);
  if (packed.length > 0) {
    const first = packed[0] as (typeof packed)[number];
    throw new OwletError(
      TrainerErrorCode.INVALID_TRAINING_ARGS,
      `${packed.length} trainable parameter(s) are stored as ${first.p.packed?.dtype} outside the tfjs heap and cannot be updated (first: ${first.k} is stored as ${first.p.packed?.dtype}): load the model without dtype, or freeze them (LoRA adapters train beside packed weights)`,
      { details: { keys: packed.map((e) => e.k) } },
    );
  }
  for (const e of plan) e.p.trainable = e.on;
  return plan.filter((e) => e.on).map((e) => e.k);
}

/** Keys of parameters owned by a core `LayerNorm` (transformers' ALL_LAYERNORM_LAYERS = [nn.LayerNorm]). */
export function layerNormKeys(model: Module): Set<string> {
  const out = new Set<string>();
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof LayerNorm)) continue;
    for (const [k] of m.namedParameters(name)) out.add(k);
  }
  return out;
}

/** transformers' decay rule: not a LayerNorm parameter and "bias" nowhere in the name. */
export function hfDecays(key: string, layerNorms: ReadonlySet<string>): boolean {
  return !layerNorms.has(key) && !key.includes('bias');
}

export interface LayerwiseLrDecay {
  /** Per-layer factor (0.9 in the mPLUG-Owl2 paper). */
  rate: number;
  /** Key prefix of the ViT (`model.vision_model` for mPLUG-Owl2, `vision_model` for v1). */
  prefix: string;
}

/** lr scale of `key` under layer-wise decay (1 outside the prefix). */
export function layerwiseScale(key: string, decay: LayerwiseLrDecay, numLayers: number): number {
  const pre = `${decay.prefix}.`;
  if (!key.startsWith(pre)) return 1;
  const rest = key.slice(pre.length);
  let layer: number;
  if (rest.startsWith('embeddings.')) layer = 0;
  else {
    const m = /^encoder\.layers\.(\d+)\./.exec(rest);
    layer = m ? Number(m[1]) + 1 : numLayers + 1;
  }
  return decay.rate ** (numLayers + 1 - layer);
}

/** Number of `encoder.layers.i` under the prefix. */
export function countLayers(keys: Iterable<string>, prefix: string): number {
  let n = 0;
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.encoder\\.layers\\.(\\d+)\\.`);
  for (const k of keys) {
    const m = re.exec(k);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

/** A user parameter group: the trainable keys it matches get its settings (first matching group wins). */
export interface ParamGroupSpec {
  params: KeyPattern | readonly KeyPattern[];
  lr?: number;
  weight_decay?: number;
  adam_beta1?: number;
  adam_beta2?: number;
  adam_epsilon?: number;
}

export interface GroupingOptions {
  defaults: AdamWGroupOptions;
  /** 'bias_and_layernorm' (transformers, default) or 'none' (decay every parameter, as plain torch AdamW). */
  weight_decay_exclude: 'bias_and_layernorm' | 'none';
  param_groups?: readonly ParamGroupSpec[];
  layerwise_lr_decay?: LayerwiseLrDecay | null;
}

/**
 * Splits the trainable keys into AdamW groups: by user group (first match), decay / no-decay, and
 * the layer-wise lr scale. Groups with the same settings are merged; order follows the model.
 */
export function buildParamGroups(
  model: Module,
  trainable: readonly string[],
  options: GroupingOptions,
): AdamWParamGroup[] {
  const norms = options.weight_decay_exclude === 'bias_and_layernorm' ? layerNormKeys(model) : new Set<string>();
  const allKeys = [...model.namedParameters()].map(([k]) => k);
  const lwd = options.layerwise_lr_decay ?? null;
  const nLayers = lwd ? countLayers(allKeys, lwd.prefix) : 0;
  const groups = new Map<string, AdamWParamGroup & { keys: string[] }>();
  for (const key of trainable) {
    const spec = options.param_groups?.findIndex((g) =>
      (Array.isArray(g.params) ? g.params : [g.params]).some((p: KeyPattern) => keyMatcher(p).test(key)),
    );
    const user = spec !== undefined && spec >= 0 ? options.param_groups?.[spec] : undefined;
    const d = options.defaults;
    const decays = options.weight_decay_exclude === 'none' || hfDecays(key, norms);
    const settings: AdamWGroupOptions = {
      lr: user?.lr ?? d.lr,
      lr_scale: lwd ? layerwiseScale(key, lwd, nLayers) : 1,
      weight_decay: decays ? (user?.weight_decay ?? d.weight_decay) : 0,
      betas: [user?.adam_beta1 ?? d.betas[0], user?.adam_beta2 ?? d.betas[1]],
      eps: user?.adam_epsilon ?? d.eps,
    };
    const id = JSON.stringify([spec ?? -1, settings]);
    let g = groups.get(id);
    if (!g) {
      g = {
        name: `group${groups.size}${user ? `:user${spec}` : ''}${decays ? '' : ':no_decay'}${settings.lr_scale !== 1 ? `:lr×${settings.lr_scale.toPrecision(4)}` : ''}`,
        keys: [],
        ...settings,
      };
      groups.set(id, g);
    }
    g.keys.push(key);
  }
  return [...groups.values()];
}

/** Trainable, materialised parameters by key (model order). */
export function trainableParameters(model: Module): Map<string, Parameter> {
  const out = new Map<string, Parameter>();
  for (const [k, p] of model.namedParameters()) if (p.trainable) out.set(k, p);
  return out;
}
