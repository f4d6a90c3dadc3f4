import * as tf from '@tensorflow/tfjs-core';

import { checkShape, formatShape } from './check.js';

/**
 * Rows of `x` [N, ...] at `indices` (int32, any shape) → [...indices.shape, ...x.shape[1:]].
 *
 * Same values as `tf.gather(x, indices)`, with a gradient that works and is fast on every backend:
 * tfjs differentiates GatherV2 through UnsortedSegmentSum, which tfjs-wasm lacks and which
 * tfjs-cpu runs as one masked sum per row of `x` (a 32000-row embedding table costs 32000 ops).
 * Here the gradient is one ScatterNd (duplicate indices add up, as in torch's embedding backward).
 */
export function gatherRows(x: tf.Tensor, indices: tf.Tensor): tf.Tensor {
  checkShape(x.rank >= 1, 'gatherRows', `x must have rank ≥ 1, got ${formatShape(x.shape)}`);
  checkShape(indices.dtype === 'int32', 'gatherRows', `indices must be int32, got ${indices.dtype}`);
  const rows = x.shape[0] as number;
  const rest = x.shape.slice(1);
  const width = rest.reduce((a, b) => a * b, 1);
  const outShape = [...indices.shape, ...rest];
  return tf.tidy(() => {
    const flat = indices.rank === 1 ? indices : tf.reshape(indices, [-1]); // [...] -> [n]
    const n = flat.shape[0] as number;
    const f = tf.customGrad(((t: tf.Tensor, save: tf.GradSaveFunc) => {
      save([flat]);
      const x2 = t.rank === 2 ? t : tf.reshape(t, [rows, width]); // [N, ...] -> [N, W]
      const value = tf.reshape(tf.gather(x2, flat), outShape); // [n, W] -> [...indices, ...rest]
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const idx = tf.reshape(saved[0] as tf.Tensor, [n, 1]); // [n] -> [n, 1]
          const g = tf.scatterND(idx, tf.reshape(dy, [n, width]), [rows, width]); // [N, W], duplicates summed
          return [t.rank === 2 ? g : tf.reshape(g, t.shape)];
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    return f(x);
  });
}
