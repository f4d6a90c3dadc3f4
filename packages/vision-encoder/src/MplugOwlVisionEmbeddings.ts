// Mirrors MplugOwlVisionEmbeddings — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
// (v1: mPLUG-Owl/mplug_owl/modeling_mplug_owl.py, same math with LayerNormFp32).
import * as tf from '@tensorflow/tfjs-core';
import { Init, LayerNorm, Module, type Parameter } from '@owlet/core';

import { mplugOwlVisionDims, type MplugOwlVisionConfig } from './config.js';
import { PatchConv2d } from './PatchConv2d.js';

/** The reference builds `patch_embed` with `in_channels=3` whatever `num_channels` says. */
export const PATCH_EMBED_IN_CHANNELS = 3;

/**
 * pixels [N, 3, S, S] → `pre_layernorm(concat([cls_token, patch_embed(pixels)]) + position_embedding)`
 * [N, 1 + P, D]: CLS first, then the patches in row-major order, learned positions, eps 1e-6.
 *
 * Keys: `cls_token` [1, 1, D] (when `use_cls_token`), `patch_embed.weight` [D, 3, p, p] (no bias),
 * `position_embedding` [1, 1 + P, D] (without a CLS token: [256, D]), `pre_layernorm.{weight,bias}`.
 */
export class MplugOwlVisionEmbeddings extends Module {
  readonly config: MplugOwlVisionConfig;
  readonly cls_token: Parameter | null;
  readonly patch_embed: PatchConv2d;
  readonly position_embedding: Parameter;
  readonly pre_layernorm: LayerNorm;

  constructor(config: MplugOwlVisionConfig) {
    super();
    this.config = config;
    const dims = mplugOwlVisionDims(config);
    const std = config.initializer_range;
    const d = config.hidden_size;
    // Registration order follows the reference's __init__ (cls_token, patch_embed, position_embedding, pre_layernorm).
    this.cls_token = config.use_cls_token
      ? this.registerParameter('cls_token', [1, 1, d], { init: Init.normal(std) })
      : null;
    this.patch_embed = this.registerModule(
      'patch_embed',
      new PatchConv2d(PATCH_EMBED_IN_CHANNELS, d, config.patch_size, { std }),
    );
    this.position_embedding = this.registerParameter('position_embedding', dims.position_embedding_shape, {
      init: Init.normal(std),
    });
    this.pre_layernorm = this.registerModule('pre_layernorm', new LayerNorm(d, config.layer_norm_eps));
  }

  /** pixels [N, 3, S, S] → [N, 1 + P, D] (the caller checks the pixel shape; see MplugOwlVisionModel). */
  forward(pixels: tf.Tensor): tf.Tensor3D {
    return this.scope(() => {
      const n = pixels.shape[0] as number;
      let x: tf.Tensor = this.patch_embed.forward(pixels); // [N, P, D]
      if (this.cls_token) {
        const d = this.config.hidden_size;
        const cls = tf.broadcastTo(this.cls_token.value, [n, 1, d]); // [1, 1, D] -> [N, 1, D]
        x = tf.concat([cls, x], 1); // [N, 1 + P, D], CLS first
      }
      // [1, 1 + P, D] (or [P, D] without CLS) broadcasts over the batch.
      x = tf.add(x, this.position_embedding.value);
      return this.pre_layernorm.forward(x) as tf.Tensor3D;
    });
  }
}
