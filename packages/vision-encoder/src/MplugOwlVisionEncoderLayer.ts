// Mirrors MplugOwlVisionEncoderLayer — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Module } from '@owlet/core';

import type { MplugOwlVisionConfig } from './config.js';
import { MplugOwlMLP } from './MplugOwlMLP.js';
import { MplugOwlVisionAttention } from './MplugOwlVisionAttention.js';

/**
 * Pre-LN transformer block:
 * `x = x + self_attn(input_layernorm(x)); x = x + mlp(post_attention_layernorm(x))`, eps 1e-6.
 *
 * Keys: `self_attn.…`, `input_layernorm.{weight,bias}`, `mlp.…`, `post_attention_layernorm.{weight,bias}`.
 */
export class MplugOwlVisionEncoderLayer extends Module {
  readonly config: MplugOwlVisionConfig;
  readonly self_attn: MplugOwlVisionAttention;
  readonly input_layernorm: LayerNorm;
  readonly mlp: MplugOwlMLP;
  readonly post_attention_layernorm: LayerNorm;

  constructor(config: MplugOwlVisionConfig) {
    super();
    this.config = config;
    // Registration order follows the reference's __init__.
    this.self_attn = this.registerModule('self_attn', new MplugOwlVisionAttention(config));
    this.input_layernorm = this.registerModule(
      'input_layernorm',
      new LayerNorm(config.hidden_size, config.layer_norm_eps),
    );
    this.mlp = this.registerModule('mlp', new MplugOwlMLP(config));
    this.post_attention_layernorm = this.registerModule(
      'post_attention_layernorm',
      new LayerNorm(config.hidden_size, config.layer_norm_eps),
    );
  }

  /** x [B, L, D] → [B, L, D] */
  forward(x: tf.Tensor): tf.Tensor3D {
    return this.scope(() => {
      const h = tf.add(x, this.self_attn.forward(this.input_layernorm.forward(x)));
      return tf.add(h, this.mlp.forward(this.post_attention_layernorm.forward(h))) as tf.Tensor3D;
    });
  }
}
