import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { isTraining, nextTrainingSeed } from '../training.js';

/**
 * torch.nn.functional.dropout: inside `withTraining(…)` each element is zeroed with probability
 * `rate` and the rest scaled by 1 / (1 − rate); the mask is seeded from the training step (see
 * `nextTrainingSeed`), so it replays exactly. Outside training (inference) it returns `x` itself.
 */
export function dropout(x: tf.Tensor, rate: number): tf.Tensor {
  if (!(rate >= 0 && rate < 1)) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, `dropout: rate must be in [0, 1), got ${rate}`);
  }
  if (rate === 0 || !isTraining()) return x;
  const seed = nextTrainingSeed();
  return tf.tidy(() => {
    const keep = tf.cast(tf.greaterEqual(tf.randomUniform(x.shape, 0, 1, 'float32', seed), rate), 'float32');
    return tf.mul(x, tf.mul(keep, 1 / (1 - rate)));
  });
}
