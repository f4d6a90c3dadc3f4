import * as tf from '@tensorflow/tfjs-core';

import { Parameter } from '../parameter.js';
import { PackedWeight } from '../quant/packed.js';
import { checkShape, formatShape, lastDim } from './check.js';
import { dispatchKernel } from './kernels.js';
import { matMul } from './matmul.js';

/**
 * y = x · Wᵀ + b, x: [..., in] → [..., out].
 *
 * `weight` is a tensor in the checkpoint's `[out, in]` layout, a `PackedWeight` (fp32/fp16/q8/q4
 * outside the tfjs heap), or a Linear weight `Parameter`, which the seam may store `[in, out]` on
 * backends where that is faster (`LINEAR_WEIGHT_LAYOUT`) or packed; all give the same result.
 * A kernel registered for (linear, backend, weight dtype) computes it when one accepts; otherwise
 * the composite runs (a packed weight is decoded to float32 for a tfjs matMul).
 */
export function linear(
  x: tf.Tensor,
  weight: tf.Tensor | Parameter | PackedWeight,
  bias?: tf.Tensor | Parameter | null,
): tf.Tensor {
  const param = weight instanceof Parameter ? weight : null;
  const packed = weight instanceof PackedWeight ? weight : (param?.packed ?? null);
  const transposed = packed === null && param !== null && param.storedTransposed;
  const w = packed ?? (param ? param.value : (weight as tf.Tensor));
  const b = bias instanceof Parameter ? bias.value : (bias ?? null);
  const wShape = packed ? packed.shape : (w as tf.Tensor).shape;
  checkShape(wShape.length === 2, 'linear', `weight must be [out, in], got ${formatShape(wShape)}`);
  const [out, inF] = (transposed ? [wShape[1], wShape[0]] : wShape) as [number, number];
  checkShape(
    lastDim(x) === inF,
    'linear',
    `input has ${lastDim(x)} features, weight ${formatShape(transposed ? [out, inF] : wShape)} expects ${inF}`,
  );
  if (b) {
    checkShape(
      b.rank === 1 && b.shape[0] === out,
      'linear',
      `bias ${formatShape(b.shape)} does not match ${out} outputs`,
    );
  }
  const owned = dispatchKernel('linear', packed?.dtype ?? 'fp32', {
    x,
    weight: w,
    transposed,
    param,
    bias: b,
    inFeatures: inF,
    outFeatures: out,
  });
  if (owned) return owned;
  return tf.tidy(() => {
    const lead = x.shape.slice(0, -1);
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, inF]); // [..., in] -> [N, in]
    // [N, in] · [in, out]: either stored so, or [out, in] transposed inside the matmul
    const wt = packed ? packed.toTensor() : (w as tf.Tensor); // packed: decoded [out, in]
    let y = transposed ? matMul(x2, wt) : matMul(x2, wt, false, true); // [N, out]
    if (b) y = tf.add(y, b);
    return x.rank === 2 ? y : tf.reshape(y, [...lead, out]); // [N, out] -> [..., out]
  });
}
