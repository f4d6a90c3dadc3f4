// The patch embedding of a ViT: torch.nn.Conv2d(C, D, kernel_size=p, stride=p, bias=False), as the
// `patch_embed` of MplugOwlVisionEmbeddings — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import * as tf from '@tensorflow/tfjs-core';

import { compositeOpsRequired } from '../training.js';
import { checkShape, formatShape } from './check.js';
import { dispatchKernel } from './kernels.js';
import { linear } from './linear.js';

/**
 * How the patch convolution is computed:
 * - `matmul`: cut the image into p×p patches and multiply by the weight viewed as [D, C·p·p]
 *   through the `linear` op;
 * - `conv2d`: `tf.conv2d` (NHWC, stride p, valid padding).
 * Both give the same result (and gradients).
 */
export type PatchConvImpl = 'matmul' | 'conv2d';

/**
 * The implementation `auto` picks per backend. Measured with vision-encoder's bench/vision.ts on the
 * full 448-px input (1024 patches, D = 1024) on this project's shared 2-core x86 machine (noisy): on
 * tfjs-wasm `tf.conv2d` (XNNPACK) took 73–823 ms against 0.9–6.9 s for the patch matmul in the same
 * runs (8–12×: a 4-D weight cannot use the seam's `[in, out]` Linear storage, so the product runs with
 * a transposed B, which is slow on wasm); on tfjs-cpu the two are within noise of each other
 * (matmul/conv2d 2.9/3.9 s, 11.2/13.5 s, 6.6/6.3 s). WebGPU is unmeasured on hardware here; conv2d
 * is one kernel there. The patch embedding is < 1 % of the model's FLOPs either way.
 */
export const PATCH_CONV_IMPL: Readonly<Record<string, PatchConvImpl>> = {
  cpu: 'matmul',
  wasm: 'conv2d',
  webgpu: 'conv2d',
  tensorflow: 'conv2d',
};

export interface PatchEmbedOptions {
  /** `auto` (default): `PATCH_CONV_IMPL` of the active backend, `matmul` while training. */
  impl?: PatchConvImpl | 'auto';
}

/**
 * The composite `patchEmbed` runs for `impl` on the active backend. While training (or under a
 * gradient tape) `auto` is always `matmul`: its gradient is two matmuls on every backend, while the
 * filter gradient of `tf.conv2d` (Conv2DBackpropFilter) has no tfjs-wasm kernel.
 */
export function resolvePatchConvImpl(impl: PatchConvImpl | 'auto' = 'auto'): PatchConvImpl {
  if (impl !== 'auto') return impl;
  if (compositeOpsRequired()) return 'matmul';
  return PATCH_CONV_IMPL[tf.getBackend()] ?? 'conv2d';
}

/**
 * A non-overlapping patch convolution without bias: pixels [N, C, H, W] and weight [D, C, p, p]
 * (checkpoint layout) → tokens [N, ⌊H/p⌋·⌊W/p⌋, D], patches in row-major order (token n = row·grid + col,
 * as `flatten(2).transpose(1, 2)`). Like the strided convolution, trailing rows/columns that do not
 * fill a whole patch are dropped. A registered `patchEmbed` kernel of the active backend runs first.
 */
export function patchEmbed(pixels: tf.Tensor, weight: tf.Tensor, options: PatchEmbedOptions = {}): tf.Tensor3D {
  checkShape(
    weight.rank === 4 && weight.shape[2] === weight.shape[3],
    'patchEmbed',
    `expected weight [D, C, p, p], got ${formatShape(weight.shape)}`,
  );
  const [, c, p] = weight.shape as [number, number, number, number];
  checkShape(
    pixels.rank === 4 && pixels.shape[1] === c && (pixels.shape[2] as number) >= p && (pixels.shape[3] as number) >= p,
    'patchEmbed',
    `expected pixels [N, ${c}, H ≥ ${p}, W ≥ ${p}] for weight ${formatShape(weight.shape)}, got ${formatShape(pixels.shape)}`,
  );
  const owned = dispatchKernel('patchEmbed', 'fp32', { pixels, weight });
  if (owned) return owned as tf.Tensor3D;
  const impl = resolvePatchConvImpl(options.impl);
  return tf.tidy(() => (impl === 'conv2d' ? viaConv2d(pixels, weight) : viaMatmul(pixels, weight)));
}

function viaMatmul(pixels: tf.Tensor, weight: tf.Tensor): tf.Tensor3D {
  const [d, c, p] = weight.shape as [number, number, number, number];
  const [n, , h, w] = pixels.shape as [number, number, number, number];
  const gh = Math.floor(h / p);
  const gw = Math.floor(w / p);
  let x = pixels;
  if (h !== gh * p || w !== gw * p) x = tf.slice(x, [0, 0, 0, 0], [n, c, gh * p, gw * p]);
  x = tf.reshape(x, [n * c * gh, p, gw, p]); // [N, C, gh·p, gw·p] -> [N·C·gh, p(kh), gw, p(kw)]
  x = tf.transpose(x, [0, 2, 1, 3]); // -> [N·C·gh, gw, kh, kw]
  x = tf.reshape(x, [n, c, gh * gw, p * p]); // -> [N, C, P, kh·kw]   (patch index = row·gw + col)
  x = tf.transpose(x, [0, 2, 1, 3]); // -> [N, P, C, kh·kw]
  x = tf.reshape(x, [n * gh * gw, c * p * p]); // -> [N·P, C·kh·kw]
  const w2 = tf.reshape(weight, [d, c * p * p]); // [D, C, p, p] -> [D, C·p·p]
  const y = linear(x, w2); // [N·P, D]
  return tf.reshape(y, [n, gh * gw, d]); // [N·P, D] -> [N, P, D]
}

function viaConv2d(pixels: tf.Tensor, weight: tf.Tensor): tf.Tensor3D {
  const [d, , p] = weight.shape as [number, number, number, number];
  const n = pixels.shape[0] as number;
  const nhwc = tf.transpose(pixels, [0, 2, 3, 1]) as tf.Tensor4D; // [N, C, H, W] -> [N, H, W, C]
  const filter = tf.transpose(weight, [2, 3, 1, 0]) as tf.Tensor4D; // [D, C, kh, kw] -> [kh, kw, C, D]
  const y = tf.conv2d(nhwc, filter, p, 'valid'); // [N, ⌊H/p⌋, ⌊W/p⌋, D]
  return tf.reshape(y, [n, -1, d]); // [N, gh, gw, D] -> [N, P, D] (row-major)
}
