import * as tf from '@tensorflow/tfjs-core';

import { Parameter } from '../parameter.js';
import { checkShape, formatShape, lastDim } from './check.js';

/**
 * y = x · Wᵀ + b, x: [..., in] → [..., out].
 *
 * `weight` is either a tensor in the checkpoint's `[out, in]` layout, or a Linear weight
 * `Parameter`, which the seam may store `[in, out]` on backends where that is faster
 * (`LINEAR_WEIGHT_LAYOUT`); both give the same result.
 */
export function linear(x: tf.Tensor, weight: tf.Tensor | Parameter, bias?: tf.Tensor | Parameter | null): tf.Tensor {
  const transposed = weight instanceof Parameter && weight.storedTransposed;
  const w = weight instanceof Parameter ? weight.value : weight;
  const b = bias instanceof Parameter ? bias.value : bias;
  checkShape(w.rank === 2, 'linear', `weight must be [out, in], got ${formatShape(w.shape)}`);
  const [out, inF] = (transposed ? [w.shape[1], w.shape[0]] : w.shape) as [number, number];
  checkShape(
    lastDim(x) === inF,
    'linear',
    `input has ${lastDim(x)} features, weight ${formatShape(transposed ? [out, inF] : w.shape)} expects ${inF}`,
  );
  if (b) {
    checkShape(
      b.rank === 1 && b.shape[0] === out,
      'linear',
      `bias ${formatShape(b.shape)} does not match ${out} outputs`,
    );
  }
  return tf.tidy(() => {
    const lead = x.shape.slice(0, -1);
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inF]); // [..., in] -> [N, in]
    // [N, in] · [in, out]: either stored so, or [out, in] transposed inside the matmul
    let y = transposed ? tf.matMul(x2, w) : tf.matMul(x2, w, false, true); // [N, out]
    if (b) y = tf.add(y, b);
    return x.rank === 2 ? y : tf.reshape(y, [...lead, out]); // [N, out] -> [..., out]
  });
}
