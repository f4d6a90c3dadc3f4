import * as tf from '@tensorflow/tfjs-core';

/**
 * A named tidy scope. Use the checkpoint path of the module doing the work as the name
 * (`model.layers.3.self_attn`) so profiles and leak reports point at the model tree.
 * `fn` must be synchronous: no `await` inside a scope.
 */
export function scope<T extends tf.TensorContainer>(name: string, fn: () => T): T {
  return tf.tidy(name, fn);
}

/** Live tensor count and bytes, as tf.memory() reports them for the active backend. */
export function memoryStats(): { numTensors: number; numBytes: number; numBytesInGPU?: number } {
  const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
  return {
    numTensors: m.numTensors,
    numBytes: m.numBytes,
    ...(m.numBytesInGPU !== undefined ? { numBytesInGPU: m.numBytesInGPU } : {}),
  };
}
