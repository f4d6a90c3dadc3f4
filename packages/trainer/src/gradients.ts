/**
 * Registers the gradient function of every tfjs op, which training needs and inference does not.
 * tfjs-core's own builds ship without them (its `register_all_gradients` module has extensionless
 * imports that plain Node ESM cannot load), so the `@tensorflow/tfjs` bundle registers them here, in
 * the one owlet package that differentiates. @owlet/core stays on tfjs-core alone and says
 * GRADIENTS_NOT_REGISTERED (`assertGradientsRegistered`) when a training step starts without them.
 */
import '@tensorflow/tfjs';
