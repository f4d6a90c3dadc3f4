import * as tf from '@tensorflow/tfjs-core';

import { softmax } from './activations.js';
import { checkShape, formatShape } from './check.js';

/** Additive value for masked positions: large enough to zero a softmax weight, never −inf. */
export const MASK_VALUE = -1e9;

export interface AttentionOptions {
  /**
   * Causal masking. Query i sits at absolute position `Lk − Lq + i` (the keys before the queries
   * come from a KV cache) and sees keys 0 … that position.
   */
  causal?: boolean;
  /** Additive mask broadcastable to [B, H, Lq, Lk] (0 keep, large negative drop). */
  mask?: tf.Tensor | null;
  /** Score scale; default 1/sqrt(head dim). */
  scale?: number;
}

/** The additive causal mask [Lq, Lk] for queries at the end of a key sequence. */
export function causalMask(lq: number, lk: number): tf.Tensor2D {
  const past = lk - lq;
  const data = new Float32Array(lq * lk);
  for (let i = 0; i < lq; i++) {
    for (let j = past + i + 1; j < lk; j++) data[i * lk + j] = MASK_VALUE;
  }
  return tf.tensor2d(data, [lq, lk]);
}

/**
 * Scaled dot-product attention, float32 softmax.
 * q [B, H, Lq, D], k/v [B, Hkv, Lk, D] with H a multiple of Hkv (grouped-query) → [B, H, Lq, D].
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: AttentionOptions = {}): tf.Tensor {
  checkShape(q.rank === 4 && k.rank === 4 && v.rank === 4, 'attention', `q, k, v must be [B, H, L, D]; got ${formatShape(q.shape)}, ${formatShape(k.shape)}, ${formatShape(v.shape)}`);
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  const [bk, hkv, lk, dk] = k.shape as [number, number, number, number];
  checkShape(
    bk === b && dk === d && v.shape[0] === b && v.shape[1] === hkv && v.shape[2] === lk,
    'attention',
    `q ${formatShape(q.shape)}, k ${formatShape(k.shape)} and v ${formatShape(v.shape)} disagree`,
  );
  checkShape(h % hkv === 0, 'attention', `${h} query heads are not a multiple of ${hkv} key/value heads`);
  checkShape(!options.causal || lk >= lq, 'attention', `causal attention needs at least as many keys (${lk}) as queries (${lq})`);
  const scale = options.scale ?? 1 / Math.sqrt(d);
  return tf.tidy(() => {
    let kk = k;
    let vv = v;
    if (hkv !== h) {
      const rep = h / hkv;
      // [B, Hkv, Lk, D] -> [B, Hkv, rep, Lk, D] -> [B, H, Lk, D]
      kk = tf.reshape(tf.tile(tf.expandDims(k, 2), [1, 1, rep, 1, 1]), [b, h, lk, d]);
      vv = tf.reshape(tf.tile(tf.expandDims(v, 2), [1, 1, rep, 1, 1]), [b, h, lk, d]);
    }
    const q3 = tf.reshape(q, [b * h, lq, d]); // [B, H, Lq, D] -> [B·H, Lq, D]
    const k3 = tf.reshape(kk, [b * h, lk, d]); // [B, H, Lk, D] -> [B·H, Lk, D]
    const v3 = tf.reshape(vv, [b * h, lk, d]);
    let scores = tf.mul(tf.matMul(q3, k3, false, true), scale); // [B·H, Lq, Lk]
    scores = tf.reshape(scores, [b, h, lq, lk]); // [B·H, Lq, Lk] -> [B, H, Lq, Lk]
    if (options.causal) scores = tf.add(scores, causalMask(lq, lk));
    if (options.mask) scores = tf.add(scores, options.mask);
    const probs = softmax(scores, -1);
    const out = tf.matMul(tf.reshape(probs, [b * h, lq, lk]), v3); // [B·H, Lq, D]
    return tf.reshape(out, [b, h, lq, d]); // [B·H, Lq, D] -> [B, H, Lq, D]
  });
}
