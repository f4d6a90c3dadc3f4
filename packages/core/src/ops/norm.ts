import * as tf from '@tensorflow/tfjs-core';

import { checkShape, formatShape, lastDim } from './check.js';
import { dispatchKernel } from './kernels.js';

function checkAffine(op: string, x: tf.Tensor, p: tf.Tensor | null | undefined, name: string): void {
  if (!p) return;
  checkShape(
    p.rank === 1 && p.shape[0] === lastDim(x),
    op,
    `${name} ${formatShape(p.shape)} does not match the last dimension of the input ${formatShape(x.shape)}`,
  );
}

/**
 * LayerNorm over the last dimension (biased variance, as PyTorch):
 * y = (x − mean) / sqrt(var + eps) · weight + bias. Computed in float32.
 */
export function layerNorm(
  x: tf.Tensor,
  weight: tf.Tensor | null | undefined,
  bias: tf.Tensor | null | undefined,
  eps: number,
): tf.Tensor {
  checkAffine('layerNorm', x, weight, 'weight');
  checkAffine('layerNorm', x, bias, 'bias');
  const owned = dispatchKernel('layerNorm', 'fp32', { x, weight: weight ?? null, bias: bias ?? null, eps });
  if (owned) return owned;
  return tf.tidy(() => {
    const xf = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
    const { mean, variance } = tf.moments(xf, -1, true);
    let y = tf.mul(tf.sub(xf, mean), tf.rsqrt(tf.add(variance, eps)));
    if (weight) y = tf.mul(y, weight);
    if (bias) y = tf.add(y, bias);
    return y;
  });
}

/**
 * RMSNorm (LLaMA, transformers 4.31): y = weight · x / sqrt(mean(x², last dim) + eps), in float32.
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor | null | undefined, eps: number): tf.Tensor {
  checkAffine('rmsNorm', x, weight, 'weight');
  const owned = dispatchKernel('rmsNorm', 'fp32', { x, weight: weight ?? null, eps });
  if (owned) return owned;
  return tf.tidy(() => {
    const xf = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
    const ms = tf.mean(tf.square(xf), -1, true);
    const y = tf.mul(xf, tf.rsqrt(tf.add(ms, eps)));
    return weight ? tf.mul(weight, y) : y;
  });
}
