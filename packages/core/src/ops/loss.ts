import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import type { Parameter } from '../parameter.js';
import { isGradientRecording } from '../training.js';
import { checkShape, formatShape } from './check.js';
import { gatherRows } from './gather.js';
import { linear } from './linear.js';

/** Label value that contributes no loss (torch's CrossEntropyLoss `ignore_index`, HF `IGNORE_INDEX`). */
export const IGNORE_INDEX = -100;

/**
 * Summed token cross-entropy: −Σ log softmax(logits[i])[targets[i]] over rows i, logits [N, V]
 * (float32, softmax over the last axis), targets N class ids in [0, V). A scalar the caller owns.
 */
export function crossEntropySum(logits: tf.Tensor, targets: readonly number[] | Int32Array): tf.Scalar {
  checkShape(logits.rank === 2, 'crossEntropy', `logits must be [N, V], got ${formatShape(logits.shape)}`);
  const [n, v] = logits.shape as [number, number];
  checkShape(targets.length === n, 'crossEntropy', `${n} logit rows but ${targets.length} targets`);
  for (let i = 0; i < n; i++) {
    const t = targets[i] as number;
    if (!Number.isInteger(t) || t < 0 || t >= v) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `crossEntropy: target ${t} at row ${i} is outside the ${v} classes (use ${IGNORE_INDEX} to ignore a position)`,
        { details: { row: i, target: t, classes: v } },
      );
    }
  }
  if (HOST_LOSS_BACKENDS.has(tf.getBackend())) return hostCrossEntropySum(logits, targets);
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits); // [N, V]
    // pick logp[i, targets[i]] through a flat gather: [N·V] at i·V + t
    const flat = Int32Array.from({ length: n }, (_, i) => i * v + (targets[i] as number));
    const picked = gatherRows(tf.reshape(logp, [n * v]), tf.tensor1d(flat, 'int32')); // [N]
    return tf.neg(tf.sum(picked)) as tf.Scalar;
  });
}

/**
 * Backends on which the cross-entropy runs as one float64 pass over the logits on the host: on
 * tfjs-cpu every elementwise kernel is a JS loop of its own, and log-softmax + its gradient over
 * [48, 32000] logits took ~1.5 s of a training step (the host pass: ~20 ms). Device backends keep
 * the composite.
 */
export const HOST_LOSS_BACKENDS: ReadonlySet<string> = new Set(['cpu']);

function hostCrossEntropySum(logits: tf.Tensor, targets: ArrayLike<number>): tf.Scalar {
  const [n, v] = logits.shape as [number, number];
  const withGrad = isGradientRecording();
  const f = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const vals = x.dataSync() as Float32Array;
    const grad = withGrad ? new Float32Array(n * v) : null;
    let loss = 0;
    for (let i = 0; i < n; i++) {
      const o = i * v;
      let max = -Infinity;
      for (let j = 0; j < v; j++) if ((vals[o + j] as number) > max) max = vals[o + j] as number;
      let z = 0;
      for (let j = 0; j < v; j++) z += Math.exp((vals[o + j] as number) - max);
      const lse = max + Math.log(z);
      const t = targets[i] as number;
      loss += lse - (vals[o + t] as number);
      if (grad) {
        for (let j = 0; j < v; j++) grad[o + j] = Math.exp((vals[o + j] as number) - lse); // softmax
        grad[o + t] = (grad[o + t] as number) - 1;
      }
    }
    const g = grad ? tf.tensor2d(grad, [n, v]) : tf.zeros([n, v]);
    save([g]);
    return {
      value: tf.scalar(loss),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.mul(saved[0] as tf.Tensor, dy)],
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(logits) as tf.Scalar;
}

/** Rows with a loss and their targets under the standard causal shift. */
export interface ShiftedTargets {
  /** Flat indices b·L + t of the positions whose next token is a label (labels[b][t + 1] ≠ −100). */
  rows: Int32Array;
  /** labels[b][t + 1] for each of those rows. */
  targets: Int32Array;
}

/**
 * The standard causal-LM shift of the official `forward(labels=…)`: logits[:, :-1] are scored
 * against labels[:, 1:], positions whose label is −100 are ignored.
 */
export function shiftedTargets(labels: readonly (readonly number[])[], length: number): ShiftedTargets {
  const rows: number[] = [];
  const targets: number[] = [];
  labels.forEach((row, b) => {
    if (row.length !== length) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `labels row ${b} has ${row.length} positions, the sequence has ${length}`,
      );
    }
    for (let t = 0; t + 1 < length; t++) {
      const y = row[t + 1] as number;
      if (y === IGNORE_INDEX) continue;
      rows.push(b * length + t);
      targets.push(y);
    }
  });
  return { rows: Int32Array.from(rows), targets: Int32Array.from(targets) };
}

export interface CausalLmLoss {
  /** Mean token cross-entropy over the labelled positions (0 when there are none). */
  loss: tf.Scalar;
  /** Number of labelled positions (the mean's denominator). */
  num_tokens: number;
}

/**
 * The causal-LM loss of the official `forward(labels=…)` (CrossEntropyLoss, mean over labels ≠
 * −100 with the standard shift), from the final hidden states [B, L, D] and the untied output
 * projection `lmHead` ([V, D], a Linear weight Parameter or tensor). Only the labelled rows go
 * through the projection: the same loss and gradients as projecting every position, without
 * the B·L·V logits.
 */
export function causalLmLoss(
  hidden: tf.Tensor,
  lmHead: tf.Tensor | Parameter,
  labels: readonly (readonly number[])[],
): CausalLmLoss {
  checkShape(hidden.rank === 3, 'causalLmLoss', `hidden states must be [B, L, D], got ${formatShape(hidden.shape)}`);
  const [b, l, d] = hidden.shape as [number, number, number];
  checkShape(labels.length === b, 'causalLmLoss', `${labels.length} label rows for a batch of ${b}`);
  const { rows, targets } = shiftedTargets(labels, l);
  const n = rows.length;
  const loss = tf.tidy(() => {
    if (n === 0) return tf.mul(tf.sum(hidden), 0) as tf.Scalar; // no labelled token: 0, still connected
    const h = gatherRows(tf.reshape(hidden, [b * l, d]), tf.tensor1d(rows, 'int32')); // [B·L, D] -> [n, D]
    const logits = linear(h, lmHead); // [n, V]
    return tf.div(crossEntropySum(logits, targets), n) as tf.Scalar;
  });
  return { loss, num_tokens: n };
}
