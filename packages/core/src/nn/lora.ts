/**
 * LoRA on a module tree, in the PEFT layout: which Linears a `target_modules` config selects
 * (PEFT's rules), wrapping them in `LoraLinear`, merging, unwrapping, and the adapter's tensors and
 * `adapter_config.json` as PEFT writes and reads them (`base_model.model.<module>.lora_A.weight`).
 * File I/O is in checkpoint/peft.ts; this file touches no files.
 */
import type * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError, formatShape } from '../errors.js';
import type { Module } from '../module.js';
import { shapesEqual } from '../parameter.js';
import { Linear } from './Linear.js';
import { LoraLinear } from './LoraLinear.js';

/** The fields of PEFT's `LoraConfig` that owlet reads and writes (snake_case, as in adapter_config.json). */
export interface LoraConfig {
  r: number;
  lora_alpha: number;
  lora_dropout?: number;
  /**
   * A string is a regular expression that must match the whole module name (PEFT:
   * `re.fullmatch`); a list matches a module whose name equals an entry or ends with `.entry`.
   */
  target_modules: string | readonly string[];
  use_rslora?: boolean;
  /** Only `none` is supported (the adapter trains no biases). */
  bias?: 'none';
  task_type?: string;
  base_model_name_or_path?: string | null;
}

/** Prefix of every module name in a PEFT state dict (`PeftModel.base_model.model`). */
export const PEFT_PREFIX = 'base_model.model.';

/** PEFT's rule for whether module `name` is a LoRA target. */
export function isLoraTarget(name: string, target: LoraConfig['target_modules']): boolean {
  if (typeof target === 'string') return fullMatcher(target).test(name);
  return target.some((t) => name === t || name.endsWith(`.${t}`));
}

const matcherCache = new Map<string, RegExp>();
function fullMatcher(pattern: string): RegExp {
  let re = matcherCache.get(pattern);
  if (!re) {
    try {
      re = new RegExp(`^(?:${pattern})$`);
    } catch (e) {
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `target_modules ${JSON.stringify(pattern)} is not a regular expression JavaScript understands: ${(e as Error).message}`,
        { cause: e },
      );
    }
    matcherCache.set(pattern, re);
  }
  return re;
}

/** Validates a LoRA config (as given in code or read from adapter_config.json) and fills defaults. */
export function resolveLoraConfig(
  json: unknown,
): Required<Omit<LoraConfig, 'base_model_name_or_path' | 'task_type'>> &
  Pick<LoraConfig, 'base_model_name_or_path' | 'task_type'> {
  const bad = (field: string, value: unknown, expected: string) =>
    new OwletError(
      ErrorCode.INVALID_CONFIG,
      `adapter config ${field} must be ${expected}, got ${JSON.stringify(value)}`,
      { details: { field, value } },
    );
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('(root)', json, 'an object');
  const c = json as Record<string, unknown>;
  if (c.peft_type !== undefined && c.peft_type !== 'LORA') throw bad('peft_type', c.peft_type, '"LORA"');
  if (!Number.isSafeInteger(c.r) || (c.r as number) <= 0) throw bad('r', c.r, 'a positive integer');
  if (typeof c.lora_alpha !== 'number' || !Number.isFinite(c.lora_alpha))
    throw bad('lora_alpha', c.lora_alpha, 'a number');
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1))
    throw bad('lora_dropout', dropout, 'a number in [0, 1)');
  const t = c.target_modules;
  const okList = Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === 'string' && x.length > 0);
  if (!(typeof t === 'string' && t.length > 0) && !okList) {
    throw bad('target_modules', t, 'a regular expression string or a non-empty list of module names');
  }
  if (typeof t === 'string') fullMatcher(t);
  const bias = c.bias ?? 'none';
  if (bias !== 'none') throw bad('bias', bias, '"none" (LoRA bias training is not supported)');
  for (const [field, ok] of [
    ['fan_in_fan_out', c.fan_in_fan_out === undefined || c.fan_in_fan_out === false],
    ['modules_to_save', c.modules_to_save === undefined || c.modules_to_save === null],
    ['layers_to_transform', c.layers_to_transform === undefined || c.layers_to_transform === null],
    ['use_dora', c.use_dora === undefined || c.use_dora === false],
  ] as const) {
    if (!ok)
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `adapter config ${field} = ${JSON.stringify(c[field])} is not supported by owlet's LoRA`,
        { details: { field, value: c[field] } },
      );
  }
  const useRs = c.use_rslora ?? false;
  if (typeof useRs !== 'boolean') throw bad('use_rslora', useRs, 'a boolean');
  return {
    r: c.r as number,
    lora_alpha: c.lora_alpha,
    lora_dropout: dropout,
    target_modules: typeof t === 'string' ? t : [...(t as string[])],
    use_rslora: useRs,
    bias: 'none',
    ...(typeof c.task_type === 'string' ? { task_type: c.task_type } : {}),
    ...(typeof c.base_model_name_or_path === 'string' || c.base_model_name_or_path === null
      ? { base_model_name_or_path: c.base_model_name_or_path as string | null }
      : {}),
  };
}

/** The adapter_config.json object PEFT writes for a LoRA config. */
export function peftAdapterConfigJson(config: LoraConfig): Record<string, unknown> {
  const c = resolveLoraConfig(config);
  return {
    base_model_name_or_path: config.base_model_name_or_path ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: c.lora_alpha,
    lora_dropout: c.lora_dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: c.r,
    revision: null,
    target_modules: c.target_modules,
    task_type: config.task_type ?? 'CAUSAL_LM',
    use_rslora: c.use_rslora,
  };
}

/** Every LoraLinear in the tree with its module name (relative to `root`). */
export function loraModules(root: Module): [string, LoraLinear][] {
  return [...root.namedModules()].filter((e): e is [string, LoraLinear] => e[1] instanceof LoraLinear);
}

function parentOf(root: Module, name: string): [Module, string] {
  const dot = name.lastIndexOf('.');
  const parentName = dot < 0 ? '' : name.slice(0, dot);
  const segment = name.slice(dot + 1);
  for (const [n, m] of root.namedModules()) if (n === parentName) return [m, segment];
  throw new OwletError(ErrorCode.INVALID_ARGUMENT, `no module ${parentName || '<root>'} in the tree`);
}

/**
 * Wraps every Linear whose name is a target in a `LoraLinear` (names relative to `root`, as PEFT
 * matches them on the base model). Throws when no module matches, or when a match is not a Linear
 * (PEFT supports torch Linear only); nothing changes then. Returns the new wrappers by name.
 * New adapters are initialised (A uniform, B zero) from `seed`.
 */
export function injectLora(root: Module, config: LoraConfig, options: { seed?: number } = {}): Map<string, LoraLinear> {
  const c = resolveLoraConfig(config);
  const hits: string[] = [];
  const insideLora = new Set<string>();
  for (const [name, m] of root.namedModules()) {
    if (m instanceof LoraLinear) {
      insideLora.add(name);
      if (name && isLoraTarget(name, c.target_modules)) {
        throw new OwletError(ErrorCode.INVALID_ARGUMENT, `${name} already has a LoRA adapter`);
      }
      continue;
    }
    if (!name || [...insideLora].some((p) => name.startsWith(`${p}.`))) continue;
    if (!isLoraTarget(name, c.target_modules)) continue;
    if (!(m instanceof Linear)) {
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `LoRA target ${name} is a ${m.constructor.name}, not a Linear (only Linear layers take LoRA; target its Linear children instead)`,
        { details: { module: name, type: m.constructor.name } },
      );
    }
    hits.push(name);
  }
  if (hits.length === 0) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `target_modules ${JSON.stringify(c.target_modules)} matches no Linear of the model`,
      { details: { target_modules: c.target_modules } },
    );
  }
  const out = new Map<string, LoraLinear>();
  let i = 0;
  for (const name of hits) {
    const [parent, segment] = parentOf(root, name);
    const base = [...parent.children()].find(([n]) => n === segment)?.[1] as Linear;
    const lora = new LoraLinear(base, {
      r: c.r,
      lora_alpha: c.lora_alpha,
      lora_dropout: c.lora_dropout,
      use_rslora: c.use_rslora,
    });
    parent.replaceModule(segment, lora);
    lora.lora_A.initialize({ seed: (options.seed ?? 0) * 7919 + i++ });
    lora.lora_B.initialize({ seed: 0 });
    out.set(name, lora);
  }
  return out;
}

/** Folds every adapter into its base weight. */
export function mergeLora(root: Module): void {
  for (const [, m] of loraModules(root)) m.merge();
}

/** Takes every merged adapter out of its base weight. */
export function unmergeLora(root: Module): void {
  for (const [, m] of loraModules(root)) m.unmerge();
}

/**
 * Removes the adapters: each LoraLinear is replaced by its base Linear (PEFT `merge_and_unload`
 * when `merge` is true, `unload` otherwise). The adapter weights are disposed.
 */
export function removeLora(root: Module, options: { merge?: boolean } = {}): number {
  const mods = loraModules(root);
  for (const [name, m] of mods) {
    if (options.merge) m.merge();
    else m.unmerge();
    const [parent, segment] = parentOf(root, name);
    parent.replaceModule(segment, m.base);
    m.lora_A.dispose();
    m.lora_B.dispose();
  }
  return mods.length;
}

/** PEFT state-dict keys of one adapter: `base_model.model.<name>.lora_A.weight` / `lora_B.weight`. */
export function peftKeys(name: string): { A: string; B: string } {
  return { A: `${PEFT_PREFIX}${name}.lora_A.weight`, B: `${PEFT_PREFIX}${name}.lora_B.weight` };
}

/** The adapter's tensors by PEFT key, in the checkpoint layout (`lora_A` [r, in], `lora_B` [out, r]). Caller owns them. */
export function peftAdapterTensors(root: Module): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const [name, m] of loraModules(root)) {
    const k = peftKeys(name);
    out.set(k.A, m.lora_A.weight.canonical());
    out.set(k.B, m.lora_B.weight.canonical());
  }
  return out;
}

/** Accepts `lora_A.weight` and PEFT's in-model form `lora_A.<adapter>.weight` (e.g. `.default.`). */
function normaliseKey(key: string): string {
  return key.replace(/\.(lora_[AB])\.[A-Za-z0-9_]+\.weight$/, '.$1.weight');
}

/**
 * Checks adapter tensors against the LoraLinears of `root` (every A and B present with its shape,
 * no unknown LoRA keys; other keys — e.g. a full PEFT state dict's base weights — are ignored) and
 * assigns them. Nothing is assigned when it throws.
 */
export function loadPeftAdapterTensors(root: Module, tensors: Iterable<readonly [string, tf.Tensor]>): number {
  const mods = loraModules(root);
  const byKey = new Map<string, tf.Tensor>();
  for (const [k, t] of tensors) {
    if (!/\.lora_[AB]\./.test(k)) continue;
    const nk = normaliseKey(k);
    if (byKey.has(nk)) throw new OwletError(ErrorCode.DUPLICATE_KEY, `adapter has ${nk} twice`);
    byKey.set(nk, t);
  }
  const problems: string[] = [];
  const plan: [LoraLinear, tf.Tensor, tf.Tensor][] = [];
  const known = new Set<string>();
  for (const [name, m] of mods) {
    const k = peftKeys(name);
    known.add(k.A);
    known.add(k.B);
    const a = byKey.get(k.A);
    const b = byKey.get(k.B);
    if (!a) problems.push(`missing ${k.A}`);
    if (!b) problems.push(`missing ${k.B}`);
    if (a && !shapesEqual(a.shape, [m.r, m.inFeatures]))
      problems.push(`expected [${m.r}, ${m.inFeatures}], adapter has ${formatShape(a.shape)} for ${k.A}`);
    if (b && !shapesEqual(b.shape, [m.outFeatures, m.r]))
      problems.push(`expected [${m.outFeatures}, ${m.r}], adapter has ${formatShape(b.shape)} for ${k.B}`);
    if (a && b) plan.push([m, a, b]);
  }
  for (const k of byKey.keys()) if (!known.has(k)) problems.push(`unexpected ${k}`);
  if (problems.length > 0) {
    const shown = problems.length > 20 ? [...problems.slice(0, 20), `… ${problems.length - 20} more`] : problems;
    throw new OwletError(ErrorCode.STATE_DICT_MISMATCH, `adapter does not match the model:\n  ${shown.join('\n  ')}`, {
      details: { problems },
    });
  }
  for (const [m, a, b] of plan) {
    const wasMerged = m.merged;
    if (wasMerged) m.unmerge();
    m.lora_A.weight.assign(a);
    m.lora_B.weight.assign(b);
    if (wasMerged) m.merge();
  }
  return plan.length;
}
