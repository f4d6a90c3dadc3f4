import type * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError, formatShape } from '../errors.js';

/** Throws SHAPE_MISMATCH naming both sides when `cond` is false. */
export function checkShape(cond: boolean, op: string, message: string, details: Record<string, unknown> = {}): void {
  if (!cond) throw new OwletError(ErrorCode.SHAPE_MISMATCH, `${op}: ${message}`, { details });
}

export function lastDim(t: tf.Tensor): number {
  return t.shape[t.rank - 1] ?? 0;
}

export { formatShape };
