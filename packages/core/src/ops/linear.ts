import * as tf from '@tensorflow/tfjs-core';

import { checkShape, formatShape, lastDim } from './check.js';

/**
 * y = x · Wᵀ + b with W kept in the checkpoint's `[out, in]` layout.
 * x: [..., in] → [..., out].
 */
export function linear(x: tf.Tensor, weight: tf.Tensor, bias?: tf.Tensor | null): tf.Tensor {
  checkShape(weight.rank === 2, 'linear', `weight must be [out, in], got ${formatShape(weight.shape)}`);
  const [out, inF] = weight.shape as [number, number];
  checkShape(
    lastDim(x) === inF,
    'linear',
    `input has ${lastDim(x)} features, weight ${formatShape(weight.shape)} expects ${inF}`,
  );
  if (bias) {
    checkShape(bias.rank === 1 && bias.shape[0] === out, 'linear', `bias ${formatShape(bias.shape)} does not match ${out} outputs`);
  }
  return tf.tidy(() => {
    const lead = x.shape.slice(0, -1);
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inF]); // [..., in] -> [N, in]
    let y = tf.matMul(x2, weight, false, true); // [N, out]
    if (bias) y = tf.add(y, bias);
    return x.rank === 2 ? y : tf.reshape(y, [...lead, out]); // [N, out] -> [..., out]
  });
}
