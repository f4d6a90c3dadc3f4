// Mirrors torch.nn.Conv2d(3, hidden_size, kernel_size=patch_size, stride=patch_size, bias=False), the
// `patch_embed` of MplugOwlVisionEmbeddings — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import type * as tf from '@tensorflow/tfjs-core';
import {
  ErrorCode,
  Init,
  Module,
  OwletError,
  formatShape,
  patchEmbed,
  resolvePatchConvImpl,
  type Parameter,
  type PatchConvImpl,
} from '@owlet/core';

/** The implementations and the per-backend choice live with the op in core (`patchEmbed`). */
export { PATCH_CONV_IMPL, type PatchConvImpl } from '@owlet/core';

export interface PatchConv2dOptions {
  /** Initialiser std for `initialize()` (default 0.02). */
  std?: number;
  /** `auto` (default): `PATCH_CONV_IMPL` of the active backend. */
  impl?: PatchConvImpl | 'auto';
}

/**
 * A non-overlapping patch convolution without bias: pixels [N, C, H, W] → tokens [N, P, D] with the
 * patches in row-major order (token n = row·grid + col, as `flatten(2).transpose(1, 2)`). Like the
 * strided convolution, trailing rows/columns that do not fill a whole patch are dropped.
 *
 * Key: `weight` [D, C, p, p] (checkpoint layout).
 */
export class PatchConv2d extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly patchSize: number;
  readonly impl: PatchConvImpl | 'auto';
  readonly weight: Parameter;

  constructor(inChannels: number, outChannels: number, patchSize: number, options: PatchConv2dOptions = {}) {
    super();
    this.inChannels = inChannels;
    this.outChannels = outChannels;
    this.patchSize = patchSize;
    this.impl = options.impl ?? 'auto';
    this.weight = this.registerParameter('weight', [outChannels, inChannels, patchSize, patchSize], {
      init: Init.normal(options.std ?? 0.02),
    });
  }

  /**
   * The implementation a forward on the active backend uses (`resolvePatchConvImpl`): while training
   * (or under a gradient tape) `auto` is always `matmul`.
   */
  resolvedImpl(): PatchConvImpl {
    return resolvePatchConvImpl(this.impl);
  }

  /** pixels [N, C, H, W] → patch tokens [N, ⌊H/p⌋·⌊W/p⌋, D] */
  forward(pixels: tf.Tensor): tf.Tensor3D {
    const p = this.patchSize;
    const c = this.inChannels;
    if (
      pixels.rank !== 4 ||
      pixels.shape[1] !== c ||
      (pixels.shape[2] as number) < p ||
      (pixels.shape[3] as number) < p
    ) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `${this.path || 'patch_embed'}: expected pixels [N, ${c}, H ≥ ${p}, W ≥ ${p}], got ${formatShape(pixels.shape)}`,
        { details: { expected: ['N', c, 'H', 'W'], actual: pixels.shape } },
      );
    }
    return this.scope(() => patchEmbed(pixels, this.weight.value, { impl: this.impl }));
  }
}
