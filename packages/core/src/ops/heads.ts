import * as tf from '@tensorflow/tfjs-core';

import { checkShape, formatShape } from './check.js';
import { dispatchKernel } from './kernels.js';

/**
 * Splits the last dimension of x [B, L, H·P·Dh] into H heads of P parts each and moves heads in
 * front of positions: P tensors [B, H, L, Dh] (part p of head h is x[..., (h·P + p)·Dh …]). With
 * P = 1 this is the usual `[B, L, H·Dh] → [B, H, L, Dh]`; the vision tower's fused q/k/v
 * projection uses P = 3. A kernel may compute it without tfjs transposes.
 */
export function splitHeads(x: tf.Tensor, heads: number, parts = 1): tf.Tensor[] {
  checkShape(x.rank === 3, 'splitHeads', `input must be [B, L, D], got ${formatShape(x.shape)}`);
  const [b, l, d] = x.shape as [number, number, number];
  checkShape(
    Number.isInteger(heads) && heads > 0 && Number.isInteger(parts) && parts > 0 && d % (heads * parts) === 0,
    'splitHeads',
    `${d} features do not split into ${heads} heads × ${parts} parts`,
  );
  const owned = dispatchKernel('splitHeads', 'fp32', { x, heads, parts });
  if (owned) return owned;
  const dh = d / (heads * parts);
  return tf.tidy(() => {
    const t = tf.transpose(tf.reshape(x, [b, l, heads, parts * dh]), [0, 2, 1, 3]); // [B, L, H, P·Dh] -> [B, H, L, P·Dh]
    return parts === 1 ? [t] : tf.split(t, parts, 3); // P × [B, H, L, Dh]
  });
}

/** x [B, H, L, Dh] → [B, L, H·Dh] (the inverse of `splitHeads` with one part). */
export function mergeHeads(x: tf.Tensor): tf.Tensor {
  checkShape(x.rank === 4, 'mergeHeads', `input must be [B, H, L, Dh], got ${formatShape(x.shape)}`);
  const owned = dispatchKernel('mergeHeads', 'fp32', { x });
  if (owned) return owned;
  const [b, h, l, dh] = x.shape as [number, number, number, number];
  return tf.tidy(() => tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, l, h * dh])); // [B, H, L, Dh] -> [B, L, H, Dh] -> [B, L, H·Dh]
}
