import * as tf from '@tensorflow/tfjs-core';

import { softmax } from './activations.js';
import { checkShape, formatShape } from './check.js';
import { dispatchKernel } from './kernels.js';
import { matMul } from './matmul.js';

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

/** Keys and values of some consecutive positions: k/v [B, Hkv, n, D]. */
export interface KVSegment {
  k: tf.Tensor;
  v: tf.Tensor;
}

/**
 * Scaled dot-product attention, float32 softmax.
 * q [B, H, Lq, D], k/v [B, Hkv, Lk, D] with H a multiple of Hkv (grouped-query) → [B, H, Lq, D].
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: AttentionOptions = {}): tf.Tensor {
  return attentionOverSegments(q, [{ k, v }], options);
}

/**
 * Attention over keys/values held in consecutive segments (a KV cache that grows without copying
 * itself), as if they were concatenated: scores are computed per segment and joined (Lk floats per
 * query row), put through one float32 softmax, and the probabilities applied segment by segment.
 * Grouped-query heads share their K/V through a reshape (`[B, H, Lq, D]` = `[B·Hkv, rep·Lq, D]`),
 * never a tile. q [B, H, Lq, D], segments of k/v [B, Hkv, n_i, D] → [B, H, Lq, D].
 */
export function attentionOverSegments(
  q: tf.Tensor,
  segments: readonly KVSegment[],
  options: AttentionOptions = {},
): tf.Tensor {
  checkShape(segments.length > 0, 'attention', 'no key/value segments');
  const first = segments[0] as KVSegment;
  checkShape(
    q.rank === 4 && segments.every((s) => s.k.rank === 4 && s.v.rank === 4),
    'attention',
    `q, k, v must be [B, H, L, D]; got ${formatShape(q.shape)}, ${formatShape(first.k.shape)}, ${formatShape(first.v.shape)}`,
  );
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  const hkv = first.k.shape[1] as number;
  for (const s of segments) {
    checkShape(
      s.k.shape[0] === b &&
        s.k.shape[1] === hkv &&
        s.k.shape[3] === d &&
        s.v.shape[0] === b &&
        s.v.shape[1] === hkv &&
        s.v.shape[2] === s.k.shape[2] &&
        s.v.shape[3] === d,
      'attention',
      `q ${formatShape(q.shape)}, k ${formatShape(s.k.shape)} and v ${formatShape(s.v.shape)} disagree`,
    );
  }
  checkShape(h % hkv === 0, 'attention', `${h} query heads are not a multiple of ${hkv} key/value heads`);
  const lens = segments.map((s) => s.k.shape[2] as number);
  const lk = lens.reduce((x, n) => x + n, 0);
  checkShape(
    !options.causal || lk >= lq,
    'attention',
    `causal attention needs at least as many keys (${lk}) as queries (${lq})`,
  );
  const rep = h / hkv;
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const owned = dispatchKernel('attention', 'fp32', { q, segments, options: { ...options, scale } });
  if (owned) return owned;
  return tf.tidy(() => {
    // [B, H, Lq, D] = [B, Hkv, rep, Lq, D] -> [B·Hkv, rep·Lq, D]
    const q3 = tf.reshape(q, [b * hkv, rep * lq, d]);
    const parts = segments.map((s) => matMul(q3, tf.reshape(s.k, [b * hkv, -1, d]), false, true)); // [B·Hkv, rep·Lq, n_i]
    let scores = tf.mul(parts.length === 1 ? (parts[0] as tf.Tensor) : tf.concat(parts, 2), scale); // [B·Hkv, rep·Lq, Lk]
    scores = tf.reshape(scores, [b, h, lq, lk]); // -> [B, H, Lq, Lk]
    if (options.causal) scores = tf.add(scores, causalMask(lq, lk));
    if (options.mask) scores = tf.add(scores, options.mask);
    const probs = tf.reshape(softmax(scores, -1), [b * hkv, rep * lq, lk]); // [B·Hkv, rep·Lq, Lk]
    const pieces = segments.length === 1 ? [probs] : tf.split(probs, lens, 2); // n_i columns each
    let out: tf.Tensor | null = null;
    segments.forEach((s, i) => {
      const o = matMul(pieces[i] as tf.Tensor, tf.reshape(s.v, [b * hkv, -1, d])); // [B·Hkv, rep·Lq, D]
      out = out === null ? o : tf.add(out, o);
    });
    return tf.reshape(out as unknown as tf.Tensor, [b, h, lq, d]); // [B·Hkv, rep·Lq, D] -> [B, H, Lq, D]
  });
}
