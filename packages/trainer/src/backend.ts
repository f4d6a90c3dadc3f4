/**
 * Which backends can train. Training differentiates the seam's composite ops with tfjs autograd;
 * the backward pass then runs the kernels below, and a backend that lacks one of them would fail
 * in the middle of the first step. The trainer checks the kernel registry before training starts.
 *
 * The list is what a training step of mPLUG-Owl2 / mPLUG-Owl (vision encoder, abstractor,
 * multiway decoder, LoRA with dropout, the loss, clipping and AdamW) runs, measured with
 * `tf.profile` (see backend.test.ts, which fails when the list misses one).
 *
 * | backend    | trains | notes |
 * |------------|--------|-------|
 * | cpu        | yes    | the reference: resume is bit-identical here |
 * | wasm       | yes    | tfjs-wasm lacks UnsortedSegmentSum and Conv2DBackpropFilter; owlet's gathers and patch embedding avoid them |
 * | webgpu     | yes    | every kernel registered; float32 results differ from cpu in the last bits |
 * | tensorflow | yes    | tfjs-node registers every TensorFlow kernel (not tested here: optional dependency) |
 */
import * as tf from '@tensorflow/tfjs-core';
import { OwletError } from '@owlet/core';

import { TrainerErrorCode } from './errors.js';

/** Kernels the forward + backward pass and the optimizer of a training step run. */
export const TRAINING_KERNELS: readonly string[] = Object.freeze([
  'Add',
  'BatchMatMul',
  'Cast',
  'Concat',
  'Exp',
  'ExpandDims',
  'GatherV2',
  'GreaterEqual',
  'Identity',
  'Log',
  'Max',
  'Mean',
  'Multiply',
  'Neg',
  'Pack',
  'PadV2',
  'Pow',
  'RealDiv',
  'Reshape',
  'Rsqrt',
  'ScatterNd',
  'Sigmoid',
  'Slice',
  'Softmax',
  'SplitV',
  'Sqrt',
  'Square',
  'Sub',
  'Sum',
  'Tile',
  'Transpose',
  'Unpack',
  'ZerosLike',
]);

export interface TrainingBackendReport {
  backend: string;
  /** Kernels of TRAINING_KERNELS the backend has no implementation of. */
  missing: string[];
}

/** Lists the training kernels `backend` (default: the active one) does not register. */
export function trainingBackendReport(
  backend: string = tf.getBackend(),
  kernels = TRAINING_KERNELS,
): TrainingBackendReport {
  return { backend, missing: kernels.filter((k) => tf.getKernel(k, backend) === undefined) };
}

/**
 * Throws `OwletError(BACKEND_CANNOT_TRAIN)` naming the missing kernels when the backend cannot run
 * a training step; call before the first step.
 */
export function checkTrainingBackend(backend: string = tf.getBackend(), kernels = TRAINING_KERNELS): void {
  if (!backend) {
    throw new OwletError(TrainerErrorCode.BACKEND_CANNOT_TRAIN, 'no tfjs backend is active: call initBackend first');
  }
  const r = trainingBackendReport(backend, kernels);
  if (r.missing.length > 0) {
    throw new OwletError(
      TrainerErrorCode.BACKEND_CANNOT_TRAIN,
      `the ${backend} backend cannot train: it has no kernel for ${r.missing.join(', ')}, which the backward pass needs (cpu and wasm can train)`,
      { details: { backend, missing: r.missing } },
    );
  }
}
