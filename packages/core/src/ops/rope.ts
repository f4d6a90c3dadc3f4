import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { checkShape, formatShape, lastDim } from './check.js';

/**
 * Inverse frequencies of the Hugging Face LLaMA rotary embedding, rounded to float32 at each step
 * as torch computes them: inv_freq[i] = 1 / theta^(2i / dim), i = 0 … dim/2 − 1.
 */
export function ropeInvFreq(dim: number, theta = 10000): Float32Array {
  if (!Number.isInteger(dim) || dim <= 0 || dim % 2 !== 0) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, `rope: head dim must be a positive even integer, got ${dim}`);
  }
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const e = Math.fround(Math.fround(2 * i) / dim);
    out[i] = Math.fround(1 / Math.fround(Math.pow(theta, e)));
  }
  return out;
}

export interface RopeTables {
  /** [B, 1, L, dim] */
  cos: tf.Tensor;
  /** [B, 1, L, dim] */
  sin: tf.Tensor;
}

/**
 * cos/sin tables for arbitrary position ids ([L] or [B, L], integers), half-split layout
 * `emb = [θ, θ]` (HF rotate_half). Returned as [B, 1, L, dim] to broadcast over heads.
 */
export function ropeTables(
  positionIds: tf.Tensor | readonly number[] | Int32Array,
  dim: number,
  theta = 10000,
): RopeTables {
  const invFreq = ropeInvFreq(dim, theta);
  return tf.tidy(() => {
    let pos = positionIds instanceof tf.Tensor ? positionIds : tf.tensor1d(Int32Array.from(positionIds), 'int32');
    checkShape(pos.rank === 1 || pos.rank === 2, 'rope', `position ids must be [L] or [B, L], got ${formatShape(pos.shape)}`);
    if (pos.rank === 1) pos = tf.expandDims(pos, 0); // [L] -> [1, L]
    const posF = tf.cast(pos, 'float32');
    const freqs = tf.mul(tf.expandDims(posF, -1), tf.tensor1d(invFreq)); // [B, L, 1] * [dim/2] -> [B, L, dim/2]
    const emb = tf.concat([freqs, freqs], -1); // [B, L, dim]
    const cos = tf.expandDims(tf.cos(emb), 1); // [B, 1, L, dim]
    const sin = tf.expandDims(tf.sin(emb), 1); // [B, 1, L, dim]
    return { cos, sin };
  });
}

/** rotate_half(x) = [−x₂, x₁] over the last dimension. */
export function rotateHalf(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const half = lastDim(x) / 2;
    const [x1, x2] = tf.split(x, [half, half], -1) as [tf.Tensor, tf.Tensor];
    return tf.concat([tf.neg(x2), x1], -1);
  });
}

/** x' = x·cos + rotate_half(x)·sin for x [B, H, L, dim] and tables from `ropeTables`. */
export function applyRope(x: tf.Tensor, tables: RopeTables): tf.Tensor {
  checkShape(x.rank === 4, 'rope', `input must be [B, H, L, dim], got ${formatShape(x.shape)}`);
  checkShape(
    lastDim(tables.cos) === lastDim(x) && tables.cos.shape[2] === x.shape[2],
    'rope',
    `tables ${formatShape(tables.cos.shape)} do not match input ${formatShape(x.shape)}`,
  );
  return tf.tidy(() => tf.add(tf.mul(x, tables.cos), tf.mul(rotateHalf(x), tables.sin)));
}

/** Rotary position embedding of x [B, H, L, dim] at the given positions (HF half-split variant). */
export function rope(
  x: tf.Tensor,
  positionIds: tf.Tensor | readonly number[] | Int32Array,
  options: { theta?: number } = {},
): tf.Tensor {
  return tf.tidy(() => applyRope(x, ropeTables(positionIds, lastDim(x), options.theta ?? 10000)));
}
