import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `fn` and fails if it leaves tensors behind: `tf.memory().numTensors` must be unchanged.
 * Returns what `fn` returned (which must not be a tensor, or it would count as a leak).
 */
export async function expectNoLeaks<T>(fn: () => T | Promise<T>, label = 'block'): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const after = tf.memory().numTensors;
  if (after !== before) {
    throw new Error(`${label} leaked ${after - before} tensor(s): ${before} live before, ${after} after`);
  }
  return result;
}
