/**
 * The GPU bytes a module's weights take on the WebGPU engine under a `dtype` request, from the
 * parameter shapes alone (a module built from its config allocates nothing): packed Linear weights
 * in the engine's GPU layout (`weights.ts`, split at the binding limit), a packed embedding table
 * on the host (no GPU bytes), every other parameter as a float32 tfjs tensor. The numbers are what
 * `uploadWebGPUWeights` allocates.
 */
import type { Module } from '../module.js';
import {
  type DTypeRequest,
  WEIGHT_GROUPS,
  type WeightGroup,
  packDecision,
  resolveDTypeRequest,
  weightGroupOf,
} from '../quant/policy.js';
import { type WeightDType, weightRowBytes } from '../quant/packed.js';
import { gpuWeightBytes } from './weights.js';

/** WebGPU's default `maxStorageBufferBindingSize` (128 MiB): the limit a plan assumes by default. */
export const DEFAULT_MAX_BINDING_BYTES = 128 * 1024 * 1024;

export interface WeightGroupPlan {
  /** GPU bytes of the packed Linear weights, by dtype. */
  packed: Partial<Record<WeightDType, number>>;
  /** GPU bytes of the parameters kept as float32 tfjs tensors (norms, biases, embeddings, …). */
  float32: number;
  /** Host bytes of packed lookup tables (a packed embedding is read on the host: no GPU bytes). */
  host: number;
  parameters: number;
  /** Parameters (tensors) of the group. */
  tensors: number;
  bytes: number;
}

export interface WeightPlan {
  groups: Record<WeightGroup, WeightGroupPlan>;
  bytes: number;
  /** The largest float32 tensor: it must fit one storage binding (packed weights are split). */
  largestFloat32: { key: string; bytes: number } | null;
  maxBindingBytes: number;
}

export interface PlanWeightOptions {
  dtype?: DTypeRequest;
  /** The binding limit packed weights are split at (default: WebGPU's default, 128 MiB). */
  maxBindingBytes?: number;
}

export function planWeightMemory(module: Module, options: PlanWeightOptions = {}): WeightPlan {
  const request = resolveDTypeRequest(options.dtype);
  const limit = options.maxBindingBytes ?? DEFAULT_MAX_BINDING_BYTES;
  const groups = Object.fromEntries(
    WEIGHT_GROUPS.map((g) => [g, { packed: {}, float32: 0, host: 0, parameters: 0, tensors: 0, bytes: 0 }]),
  ) as Record<WeightGroup, WeightGroupPlan>;
  let largest: { key: string; bytes: number } | null = null;
  let total = 0;
  for (const [key, p] of module.namedParameters()) {
    const g = groups[weightGroupOf(key)];
    const d = packDecision(request, key, p.shape, p.packable);
    let bytes: number;
    if (d.dtype !== null && p.rowTable) {
      bytes = 0;
      g.host += p.size === 0 ? 0 : (p.shape[0] as number) * weightRowBytes(d.dtype, p.shape[1] as number);
    } else if (d.dtype !== null) {
      bytes = gpuWeightBytes(d.dtype, p.shape[0] as number, p.shape[1] as number, limit);
      g.packed[d.dtype] = (g.packed[d.dtype] ?? 0) + bytes;
    } else {
      bytes = p.size * 4;
      g.float32 += bytes;
      if (!largest || bytes > largest.bytes) largest = { key, bytes };
    }
    g.parameters += p.size;
    g.tensors++;
    g.bytes += bytes;
    total += bytes;
  }
  return { groups, bytes: total, largestFloat32: largest, maxBindingBytes: limit };
}
