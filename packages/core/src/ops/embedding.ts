import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { Parameter } from '../parameter.js';
import { PackedWeight } from '../quant/packed.js';
import { checkShape, formatShape } from './check.js';
import { gatherRows } from './gather.js';
import { dispatchKernel } from './kernels.js';

function checkIds(ids: ArrayLike<number>, vocab: number): void {
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
}

/**
 * Row lookup: weight [V, D], ids of any shape → [...ids.shape, D]. Ids given as numbers are
 * range-checked (a typed error names the offending id); ids given as a tensor must be int32.
 * Differentiable with respect to a float32 tensor `weight` on every backend (see `gatherRows`).
 *
 * `weight` is a tensor, a `PackedWeight` (fp32/fp16/q8/q4 rows outside the tfjs heap), or an
 * embedding `Parameter` holding either. A packed table is decoded only at the rows looked up, on
 * the host (its ids are read back from a tensor), unless a kernel registered for (embedding,
 * backend, dtype) does it.
 */
export function embedding(
  weight: tf.Tensor | Parameter | PackedWeight,
  ids: tf.Tensor | readonly number[] | Int32Array,
): tf.Tensor {
  const param = weight instanceof Parameter ? weight : null;
  const packed = weight instanceof PackedWeight ? weight : (param?.packed ?? null);
  const table = packed ?? (param ? param.value : (weight as tf.Tensor));
  const shape = packed ? packed.shape : (table as tf.Tensor).shape;
  checkShape(shape.length === 2, 'embedding', `weight must be [vocab, dim], got ${formatShape(shape)}`);
  const [vocab, dim] = shape as [number, number];
  if (!(ids instanceof tf.Tensor)) {
    checkIds(ids, vocab);
  } else {
    checkShape(ids.dtype === 'int32', 'embedding', `ids must be int32, got ${ids.dtype}`);
  }
  const owned = dispatchKernel('embedding', packed?.dtype ?? 'fp32', { weight: table, ids });
  if (owned) return owned;
  if (packed) {
    const flat = ids instanceof tf.Tensor ? (ids.dataSync() as Int32Array) : ids;
    if (ids instanceof tf.Tensor) checkIds(flat, vocab);
    const rows = new Float32Array(flat.length * dim);
    for (let i = 0; i < flat.length; i++) {
      const id = flat[i] as number;
      packed.dequantizeRows(id, id + 1, rows.subarray(i * dim, (i + 1) * dim));
    }
    const lead = ids instanceof tf.Tensor ? ids.shape : [flat.length];
    return tf.tensor(rows, [...lead, dim], 'float32'); // [..., D]
  }
  return tf.tidy(() => {
    const w = table as tf.Tensor;
    const t = ids instanceof tf.Tensor ? ids : tf.tensor1d(Int32Array.from(ids), 'int32');
    return gatherRows(w, t); // [..., D]
  });
}
