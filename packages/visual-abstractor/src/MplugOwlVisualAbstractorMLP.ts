// Mirrors MplugOwlVisualAbstractorMLP — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import type * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Linear, Module, swiglu } from '@owlet/core';

import type { MplugOwlVisualAbstractorConfig } from './config.js';

/**
 * SwiGLU with an inner LayerNorm: `w2(ffn_ln(silu(w1 x) · w3 x))`. All three Linears have biases;
 * `ffn_ln` runs over the inner width with `layer_norm_eps` (1e-6 in the released models).
 */
export class MplugOwlVisualAbstractorMLP extends Module {
  readonly w1: Linear;
  readonly w2: Linear;
  readonly w3: Linear;
  readonly ffn_ln: LayerNorm;

  constructor(config: MplugOwlVisualAbstractorConfig) {
    super();
    const d = config.hidden_size;
    const inner = config.intermediate_size;
    this.w1 = this.registerModule('w1', new Linear(d, inner));
    this.w2 = this.registerModule('w2', new Linear(inner, d));
    this.w3 = this.registerModule('w3', new Linear(d, inner));
    this.ffn_ln = this.registerModule('ffn_ln', new LayerNorm(inner, config.layer_norm_eps));
  }

  /** x [..., D] → [..., D] */
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => this.w2.forward(this.ffn_ln.forward(swiglu(this.w1.forward(x), this.w3.forward(x)))));
  }
}
