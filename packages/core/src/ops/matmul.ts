import * as tf from '@tensorflow/tfjs-core';

import { compositeOpsRequired } from '../training.js';

/**
 * Backends whose matMul with a transposed operand is much slower than a transpose plus a plain
 * matMul. Measured with the shapes of a training step on this project's 2-core machine (tfjs-wasm,
 * XNNPACK): dy·Wᵀ for [48, 32000]·[32000, 96] 106 ms with `transposeB`, 24 ms with an explicit
 * transpose; xᵀ·dy 160 ms against 50 ms; [192, 256]·[256, 96]-sized products 3–8× likewise. On
 * tfjs-cpu the two are within noise of each other.
 */
export const EXPLICIT_TRANSPOSE_BACKENDS: ReadonlySet<string> = new Set(['wasm']);

/** [..., m, n] -> [..., n, m] */
function swapLast(x: tf.Tensor): tf.Tensor {
  const perm = [...Array(x.rank).keys()];
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return tf.transpose(x, perm);
}

function plain(a: tf.Tensor, b: tf.Tensor, ta: boolean, tb: boolean, explicit: boolean): tf.Tensor {
  if (!explicit || (!ta && !tb)) return tf.matMul(a, b, ta, tb);
  return tf.matMul(ta ? swapLast(a) : a, tb ? swapLast(b) : b);
}

/**
 * `tf.matMul(a, b, transposeA, transposeB)` (rank 2 or 3, same batch) for the training path: the
 * same values, and a gradient whose products never use a transposed operand on the backends of
 * `EXPLICIT_TRANSPOSE_BACKENDS` (tfjs' own BatchMatMul gradient uses transposed products, the slow
 * case there). Outside training it is `tf.matMul` itself.
 */
export function matMul(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  const explicit = EXPLICIT_TRANSPOSE_BACKENDS.has(tf.getBackend());
  if (!explicit || !compositeOpsRequired()) return tf.matMul(a, b, transposeA, transposeB);
  const f = tf.customGrad(((x: tf.Tensor, y: tf.Tensor, save: tf.GradSaveFunc) => {
    save([x, y]);
    return {
      value: plain(x, y, transposeA, transposeB, true),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as [tf.Tensor, tf.Tensor];
        // y = op(a)·op(b): d op(a) = dy·op(b)ᵀ, d op(b) = op(a)ᵀ·dy, then undo op.
        const opA = transposeA ? swapLast(sa) : sa;
        const opB = transposeB ? swapLast(sb) : sb;
        const dOpA = tf.matMul(dy, swapLast(opB));
        const dOpB = tf.matMul(swapLast(opA), dy);
        return [transposeA ? swapLast(dOpA) : dOpA, transposeB ? swapLast(dOpB) : dOpB];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(a, b);
}
