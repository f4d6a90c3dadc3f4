// Mirrors LlamaDecoderLayer — transformers 4.31 models/llama/modeling_llama.py, as patched by
// X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/modeling_llama2.py (multiway RMSNorms)
import * as tf from '@tensorflow/tfjs-core';
import { Module, RMSNorm } from '@owlet/core';

import type { LlamaConfig } from './config.js';
import { LlamaAttention, type LlamaLayerContext } from './LlamaAttention.js';
import { LlamaMLP } from './LlamaMLP.js';
import { MultiwayNetwork } from './MultiwayNetwork.js';

type Norm = RMSNorm | MultiwayNetwork<RMSNorm>;

/**
 * One pre-norm LLaMA block: `input_layernorm` → `self_attn` → residual, `post_attention_layernorm` →
 * `mlp` → residual. With the modality-adaptive module both norms are `MultiwayNetwork(RMSNorm)`.
 */
export class LlamaDecoderLayer extends Module {
  readonly self_attn: LlamaAttention;
  readonly mlp: LlamaMLP;
  readonly input_layernorm: Norm;
  readonly post_attention_layernorm: Norm;

  constructor(config: LlamaConfig) {
    super();
    const norm = (): RMSNorm => new RMSNorm(config.hidden_size, config.rms_norm_eps);
    // Registration order follows the reference module (self_attn, mlp, then the norms).
    this.self_attn = this.registerModule('self_attn', new LlamaAttention(config));
    this.mlp = this.registerModule('mlp', new LlamaMLP(config));
    this.input_layernorm = this.registerModule(
      'input_layernorm',
      config.multiway ? new MultiwayNetwork(norm, config.num_multiway) : norm(),
    );
    this.post_attention_layernorm = this.registerModule(
      'post_attention_layernorm',
      config.multiway ? new MultiwayNetwork(norm, config.num_multiway) : norm(),
    );
  }

  /** x [B, L, D] → [B, L, D] */
  forward(x: tf.Tensor, ctx: LlamaLayerContext): tf.Tensor {
    return this.scope(() => {
      const normed = (n: Norm, h: tf.Tensor) =>
        n instanceof MultiwayNetwork ? n.forward(h, ctx.routing) : n.forward(h);
      const h = tf.add(x, this.self_attn.forward(normed(this.input_layernorm, x), ctx));
      return tf.add(h, this.mlp.forward(normed(this.post_attention_layernorm, h)));
    });
  }
}
