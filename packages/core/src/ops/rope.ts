import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { checkShape, formatShape, lastDim } from './check.js';
import { dispatchKernel } from './kernels.js';

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
 *
 * The tables are computed on the host: the angle `pos · inv_freq` is rounded to float32 as torch
 * computes it, and cos/sin are taken in float64 then rounded. WGSL's sin/cos only promise an
 * absolute error of 2^-11, too coarse for logit parity, so they are not computed on the device.
 */
export function ropeTables(
  positionIds: tf.Tensor | readonly number[] | readonly (readonly number[])[] | Int32Array,
  dim: number,
  theta = 10000,
): RopeTables {
  const invFreq = ropeInvFreq(dim, theta);
  let rows: number[][];
  if (positionIds instanceof tf.Tensor) {
    checkShape(
      positionIds.rank === 1 || positionIds.rank === 2,
      'rope',
      `position ids must be [L] or [B, L], got ${formatShape(positionIds.shape)}`,
    );
    const a = positionIds.arraySync() as number[] | number[][];
    rows = positionIds.rank === 1 ? [a as number[]] : (a as number[][]);
  } else if (positionIds.length > 0 && Array.isArray(positionIds[0])) {
    rows = (positionIds as readonly (readonly number[])[]).map((r) => [...r]);
  } else {
    rows = [Array.from(positionIds as ArrayLike<number>)];
  }
  const b = rows.length;
  const l = rows[0]?.length ?? 0;
  const half = dim / 2;
  const cos = new Float32Array(b * l * dim);
  const sin = new Float32Array(b * l * dim);
  for (let bi = 0; bi < b; bi++) {
    const row = rows[bi] as number[];
    checkShape(row.length === l, 'rope', `position id rows differ in length (${row.length} vs ${l})`);
    for (let li = 0; li < l; li++) {
      const p = row[li] as number;
      if (!Number.isInteger(p) || p < 0) {
        throw new OwletError(ErrorCode.INVALID_ARGUMENT, `rope: position id ${p} is not a non-negative integer`);
      }
      const base = (bi * l + li) * dim;
      for (let i = 0; i < half; i++) {
        const angle = Math.fround(Math.fround(p) * (invFreq[i] as number));
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        cos[base + i] = c;
        cos[base + half + i] = c;
        sin[base + i] = s;
        sin[base + half + i] = s;
      }
    }
  }
  return {
    cos: tf.tensor4d(cos, [b, 1, l, dim]), // [B, 1, L, dim]
    sin: tf.tensor4d(sin, [b, 1, l, dim]),
  };
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
  const owned = dispatchKernel('rope', 'fp32', { x, tables });
  if (owned) return owned;
  return tf.tidy(() => tf.add(tf.mul(x, tables.cos), tf.mul(rotateHalf(x), tables.sin)));
}

/** Rotary position embedding of x [B, H, L, dim] at the given positions (HF half-split variant). */
export function rope(
  x: tf.Tensor,
  positionIds: tf.Tensor | readonly number[] | readonly (readonly number[])[] | Int32Array,
  options: { theta?: number } = {},
): tf.Tensor {
  return tf.tidy(() => applyRope(x, ropeTables(positionIds, lastDim(x), options.theta ?? 10000)));
}
