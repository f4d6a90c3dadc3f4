// Mirrors MplugOwlVisualAbstractorCrossOutput — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Linear, Module } from '@owlet/core';

import { ABSTRACTOR_TORCH_LAYER_NORM_EPS, type MplugOwlVisualAbstractorConfig } from './config.js';
import { MplugOwlVisualAbstractorMLP } from './MplugOwlVisualAbstractorMLP.js';

/**
 * `y = input + out_proj(context)`, then `y + mlp(norm2(y))`. In the abstractor `input` is the
 * NORMALISED queries `norm1(X)` (see MplugOwlVisualAbstractorAttention). norm2 uses eps 1e-5.
 */
export class MplugOwlVisualAbstractorCrossOutput extends Module {
  readonly out_proj: Linear;
  readonly norm2: LayerNorm;
  readonly mlp: MplugOwlVisualAbstractorMLP;

  constructor(config: MplugOwlVisualAbstractorConfig) {
    super();
    const d = config.encoder_hidden_size;
    this.out_proj = this.registerModule('out_proj', new Linear(d, d));
    this.norm2 = this.registerModule('norm2', new LayerNorm(d, ABSTRACTOR_TORCH_LAYER_NORM_EPS));
    this.mlp = this.registerModule('mlp', new MplugOwlVisualAbstractorMLP(config));
  }

  /** hiddenStates: attention context [N, Q, D]; inputTensor: the residual [N, Q, D]. */
  forward(hiddenStates: tf.Tensor, inputTensor: tf.Tensor): tf.Tensor {
    return this.scope(() => {
      const y = tf.add(inputTensor, this.out_proj.forward(hiddenStates));
      return tf.add(y, this.mlp.forward(this.norm2.forward(y)));
    });
  }
}
