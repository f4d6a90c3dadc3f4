import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { checkShape, formatShape } from './check.js';
import { gatherRows } from './gather.js';
import { dispatchKernel } from './kernels.js';

/**
 * Row lookup: weight [V, D], ids of any shape → [...ids.shape, D]. Ids given as numbers are
 * range-checked (a typed error names the offending id); ids given as a tensor must be int32.
 * Differentiable with respect to `weight` on every backend (see `gatherRows`).
 */
export function embedding(weight: tf.Tensor, ids: tf.Tensor | readonly number[] | Int32Array): tf.Tensor {
  checkShape(weight.rank === 2, 'embedding', `weight must be [vocab, dim], got ${formatShape(weight.shape)}`);
  const vocab = weight.shape[0] as number;
  if (!(ids instanceof tf.Tensor)) {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (!Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `embedding: id ${id} at position ${i} is outside the vocabulary [0, ${vocab})`,
          {
            details: { id, position: i, vocab },
          },
        );
      }
    }
  } else {
    checkShape(ids.dtype === 'int32', 'embedding', `ids must be int32, got ${ids.dtype}`);
  }
  const owned = dispatchKernel('embedding', 'fp32', { weight, ids });
  if (owned) return owned;
  return tf.tidy(() => {
    const t = ids instanceof tf.Tensor ? ids : tf.tensor1d(Int32Array.from(ids), 'int32');
    return gatherRows(weight, t); // [..., D]
  });
}
