import * as tf from '@tensorflow/tfjs-core';

import { checkShape, formatShape } from './check.js';
import { dispatchKernel } from './kernels.js';

/** SiLU / swish: x · σ(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/** QuickGELU (CLIP): x · σ(1.702 x). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  const owned = dispatchKernel('quickGelu', 'fp32', { x });
  if (owned) return owned;
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

/** Exact GELU: 0.5 · x · (1 + erf(x / √2)). */
export function gelu(x: tf.Tensor): tf.Tensor {
  const owned = dispatchKernel('gelu', 'fp32', { x });
  if (owned) return owned;
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** SwiGLU gating: silu(gate) · up (the two projections are done with `linear`). */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  checkShape(
    gate.shape.length === up.shape.length && gate.shape.every((d, i) => d === up.shape[i]),
    'swiglu',
    `gate ${formatShape(gate.shape)} and up ${formatShape(up.shape)} differ`,
  );
  const owned = dispatchKernel('swiglu', 'fp32', { gate, up });
  if (owned) return owned;
  return tf.tidy(() => tf.mul(silu(gate), up));
}

/** Softmax over `axis` (default last), always computed in float32. */
export function softmax(x: tf.Tensor, axis = -1): tf.Tensor {
  return tf.tidy(() => {
    const xf = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
    const ax = axis < 0 ? xf.rank + axis : axis;
    if (ax === xf.rank - 1) return tf.softmax(xf);
    // tf.softmax works on the last axis only: move `axis` there and back.
    const perm = [...Array(xf.rank).keys()];
    perm[ax] = xf.rank - 1;
    perm[xf.rank - 1] = ax;
    return tf.transpose(tf.softmax(tf.transpose(xf, perm)), perm);
  });
}
