/**
 * Training mode for the ops seam.
 *
 * Training differentiates through the seam's composite ops (tfjs ops with registered gradients).
 * Owned inference kernels (WGSL, WASM SIMD, quantized weights) have no gradients, so the kernel
 * registry (ops/kernels.ts) skips every kernel not marked differentiable whenever
 * `compositeOpsRequired()` is true: inside `withTraining(…)` / `withCompositeOps(…)` and whenever a
 * tfjs gradient tape is recording (`tf.grads`, `tf.variableGrads`).
 *
 * `withTraining` also carries the seed of the training step, from which `dropout` derives one
 * seed per call, so a step's randomness is a pure function of (step seed, call order): resuming a
 * run replays it bit for bit.
 */
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from './errors.js';

interface TrainingState {
  seed: number;
  calls: number;
}

let state: TrainingState | null = null;
let compositeDepth = 0;

/** Whether a tfjs gradient tape is recording right now (inside `tf.grads` / `tf.variableGrads`). */
export function isGradientRecording(): boolean {
  const engine = tf.engine() as unknown as { state?: { gradientDepth?: number } };
  return (engine.state?.gradientDepth ?? 0) > 0;
}

/**
 * True when seam ops must use their composite (differentiable) path: during training or while a
 * gradient tape records. Owned kernels check this before dispatching.
 */
export function compositeOpsRequired(): boolean {
  return compositeDepth > 0 || state !== null || isGradientRecording();
}

/** Runs `fn` with every seam op on its composite path (no owned kernels). `fn` is synchronous. */
export function withCompositeOps<T>(fn: () => T): T {
  compositeDepth++;
  try {
    return fn();
  } finally {
    compositeDepth--;
  }
}

/**
 * Runs the synchronous `fn` in training mode: dropout is active (seeded from `seed`) and the seam
 * stays on its composite path. Nested calls are refused (one training step at a time).
 */
export function withTraining<T>(seed: number, fn: () => T): T {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, `withTraining: seed must be a non-negative integer, got ${seed}`);
  }
  if (state !== null) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'withTraining: already in a training step (nested call)');
  }
  state = { seed, calls: 0 };
  try {
    return fn();
  } finally {
    state = null;
  }
}

/** Whether the current code runs inside `withTraining` (dropout active). */
export function isTraining(): boolean {
  return state !== null;
}

/**
 * The seed for the next random op of the current training step: a hash of the step seed and the
 * call index (splitmix32), so every dropout in a step draws a different, reproducible mask.
 */
export function nextTrainingSeed(): number {
  if (state === null) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'nextTrainingSeed: not inside withTraining');
  }
  let z = (Math.imul(state.seed | 0, 0x9e3779b1) + Math.imul(++state.calls, 0x85ebca6b)) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}
