/**
 * Registers the gradient functions of every tfjs op. tfjs-core's own Node build ships without them;
 * the `@tensorflow/tfjs` bundle registers them (and the cpu backend) when imported. Without this,
 * `tf.grads` fails with "gradient function not found" and training is impossible.
 */
import '@tensorflow/tfjs';
