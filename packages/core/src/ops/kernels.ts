/**
 * The kernel registry behind the ops seam. Every seam op (`linear`, `rmsNorm`, `layerNorm`, `rope`,
 * `attention`, `swiglu`, `quickGelu`, `gelu`, `embedding`) first validates its arguments, then asks
 * the registry for a kernel registered for (op, active tfjs backend, weight dtype); the first kernel
 * that accepts the arguments computes the result. When none is registered, none accepts, kernels
 * are disabled, or a gradient tape is recording (training) and the kernel is not differentiable,
 * the op runs its composite of tfjs ops: correct on every backend, with gradients.
 *
 * Kernels are registered by backend name (`'cpu'`, `'wasm'`, `'webgpu'`, …, or `'*'` for any) and,
 * for ops with a weight, by weight dtype (`'fp32' | 'fp16' | 'q8' | 'q4'`, or `'*'`).
 */
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import type { Parameter } from '../parameter.js';
import type { PackedWeight, WeightDType } from '../quant/packed.js';
import type { AttentionOptions, KVSegment } from './attention.js';
import type { RopeTables } from './rope.js';
import { compositeOpsRequired } from '../training.js';

/** Arguments each op passes to its kernels (already validated by the op). */
export interface KernelArgs {
  linear: {
    /** [..., in] */
    x: tf.Tensor;
    /** A packed weight (fp32/fp16/q8/q4, outside the tfjs heap) or a float32 tensor. */
    weight: PackedWeight | tf.Tensor;
    /** For a tensor weight: true when it is stored `[in, out]` (see `LINEAR_WEIGHT_LAYOUT`). */
    transposed: boolean;
    /** The Parameter the weight belongs to, when the caller passed one (kernels may cache per parameter). */
    param: Parameter | null;
    bias: tf.Tensor | null;
    inFeatures: number;
    outFeatures: number;
  };
  rmsNorm: { x: tf.Tensor; weight: tf.Tensor | null; eps: number };
  layerNorm: { x: tf.Tensor; weight: tf.Tensor | null; bias: tf.Tensor | null; eps: number };
  /** x [B, H, L, dim], tables from `ropeTables`. */
  rope: { x: tf.Tensor; tables: RopeTables };
  /** q [B, H, Lq, D], segments of k/v [B, Hkv, n_i, D]; `scale` resolved. */
  attention: {
    q: tf.Tensor;
    segments: readonly KVSegment[];
    options: AttentionOptions & { scale: number };
  };
  swiglu: { gate: tf.Tensor; up: tf.Tensor };
  quickGelu: { x: tf.Tensor };
  gelu: { x: tf.Tensor };
  embedding: { weight: PackedWeight | tf.Tensor; ids: tf.Tensor | readonly number[] | Int32Array };
  /** x [B, L, H·P·Dh] → P tensors [B, H, L, Dh]. */
  splitHeads: { x: tf.Tensor; heads: number; parts: number };
  /** x [B, H, L, Dh] → [B, L, H·Dh]. */
  mergeHeads: { x: tf.Tensor };
  /** pixels [N, C, H, W], weight [D, C, p, p] → patch tokens [N, ⌊H/p⌋·⌊W/p⌋, D] (see `patchEmbed`). */
  patchEmbed: { pixels: tf.Tensor; weight: tf.Tensor };
}

/** What a kernel returns per op (a new tensor, or tensors, the caller owns). */
export type KernelResult<Op extends KernelOp> = Op extends 'splitHeads' ? tf.Tensor[] : tf.Tensor;

export type KernelOp = keyof KernelArgs;
export const KERNEL_OPS: readonly KernelOp[] = Object.freeze([
  'linear',
  'rmsNorm',
  'layerNorm',
  'rope',
  'attention',
  'swiglu',
  'quickGelu',
  'gelu',
  'embedding',
  'splitHeads',
  'mergeHeads',
  'patchEmbed',
]);

export interface KernelSpec<Op extends KernelOp = KernelOp> {
  op: Op;
  /** tfjs backend name the kernel runs on (`tf.getBackend()`), or `'*'`. */
  backend: string;
  /** Weight dtype (ops with a weight: linear, embedding); `'*'` or omitted: any. Other ops get `'fp32'`. */
  dtype?: WeightDType | '*';
  /** Shown in reports and errors (`'owlet-wasm-simd:q4'`). */
  name: string;
  /**
   * Computes the op or returns null to decline (unsupported shape, …: the next kernel or the
   * composite runs). Must return a new tensor the caller owns, and must not dispose its inputs.
   * Runs inside the op's tidy scope rules: synchronous.
   */
  run(args: KernelArgs[Op]): KernelResult<Op> | null;
  /** The kernel's result carries gradients (default false: skipped while a gradient tape records). */
  differentiable?: boolean;
}

const registry = new Map<KernelOp, KernelSpec[]>();
let enabled = true;

function checkSpec(spec: KernelSpec): void {
  if (!KERNEL_OPS.includes(spec.op)) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `registerKernel: unknown op ${JSON.stringify(spec.op)}; expected one of ${KERNEL_OPS.join(', ')}`,
    );
  }
  if (typeof spec.backend !== 'string' || spec.backend === '' || typeof spec.run !== 'function') {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, `registerKernel: ${spec.name} needs a backend name and a run()`);
  }
}

/**
 * Registers a kernel. Later registrations are tried first. Returns a function that unregisters it.
 */
export function registerKernel<Op extends KernelOp>(spec: KernelSpec<Op>): () => void {
  checkSpec(spec as unknown as KernelSpec);
  const list = registry.get(spec.op) ?? [];
  list.unshift(spec as unknown as KernelSpec);
  registry.set(spec.op, list);
  return () => unregisterKernel(spec as unknown as KernelSpec);
}

export function unregisterKernel(spec: KernelSpec): void {
  const list = registry.get(spec.op);
  if (!list) return;
  const i = list.indexOf(spec);
  if (i >= 0) list.splice(i, 1);
}

/** The kernels registered for an op on a backend and dtype, in the order they are tried. */
export function getKernels(op: KernelOp, backend = tf.getBackend(), dtype: WeightDType = 'fp32'): KernelSpec[] {
  return (registry.get(op) ?? []).filter(
    (k) =>
      (k.backend === '*' || k.backend === backend) && (k.dtype === undefined || k.dtype === '*' || k.dtype === dtype),
  );
}

/** Turns every registered kernel off (composite ops only) or back on. Returns the previous setting. */
export function setKernelsEnabled(on: boolean): boolean {
  const prev = enabled;
  enabled = on;
  return prev;
}

export function kernelsEnabled(): boolean {
  return enabled;
}

/** Runs `fn` with kernels disabled (the composite reference path), restoring the setting after. */
export function withoutKernels<T>(fn: () => T): T {
  const prev = setKernelsEnabled(false);
  try {
    return fn();
  } finally {
    setKernelsEnabled(prev);
  }
}

/** True while tf.grad / variableGrads records a tape (training): non-differentiable kernels step aside. */
export function gradientTapeActive(): boolean {
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number } }).state;
  return (state?.gradientDepth ?? 0) > 0;
}

/** The name of the kernel that computed each op's last call (for tests and reports). */
const lastUsed = new Map<KernelOp, string>();

export function lastKernel(op: KernelOp): string | undefined {
  return lastUsed.get(op);
}

/** Tries the registered kernels for `op`; null means "run the composite". Used by the ops. */
export function dispatchKernel<Op extends KernelOp>(
  op: Op,
  dtype: WeightDType,
  args: KernelArgs[Op],
): KernelResult<Op> | null {
  if (!enabled) {
    lastUsed.set(op, 'composite');
    return null;
  }
  const list = registry.get(op);
  if (list && list.length > 0) {
    const backend = tf.getBackend();
    // training (withTraining) or a recording tape: only differentiable kernels may run
    const taping = compositeOpsRequired();
    for (const k of list) {
      if (k.backend !== '*' && k.backend !== backend) continue;
      if (k.dtype !== undefined && k.dtype !== '*' && k.dtype !== dtype) continue;
      if (taping && !k.differentiable) continue;
      const y = (k as unknown as KernelSpec<Op>).run(args);
      if (y !== null) {
        lastUsed.set(op, k.name);
        return y;
      }
    }
  }
  lastUsed.set(op, 'composite');
  return null;
}
