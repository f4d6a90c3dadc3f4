// Mirrors MplugOwlVisualAbstractorAttention — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Module } from '@owlet/core';

import { ABSTRACTOR_TORCH_LAYER_NORM_EPS, type MplugOwlVisualAbstractorConfig } from './config.js';
import { MplugOwlVisualAbstractorCrossOutput } from './MplugOwlVisualAbstractorCrossOutput.js';
import { MplugOwlVisualAbstractorMultiHeadAttention } from './MplugOwlVisualAbstractorMultiHeadAttention.js';

/**
 * One abstractor block: `Xn = norm1(X)`, `In = normk(I)`, attention of `Xn` over `[Xn; In]`
 * (queries first), then the output block with the residual on `Xn` — the normalised queries, not
 * `X` (a quirk of the reference). norm1 and normk use eps 1e-5.
 */
export class MplugOwlVisualAbstractorAttention extends Module {
  readonly attention: MplugOwlVisualAbstractorMultiHeadAttention;
  readonly output: MplugOwlVisualAbstractorCrossOutput;
  readonly norm1: LayerNorm;
  readonly normk: LayerNorm;

  constructor(config: MplugOwlVisualAbstractorConfig) {
    super();
    const d = config.encoder_hidden_size;
    this.attention = this.registerModule('attention', new MplugOwlVisualAbstractorMultiHeadAttention(config));
    this.output = this.registerModule('output', new MplugOwlVisualAbstractorCrossOutput(config));
    this.norm1 = this.registerModule('norm1', new LayerNorm(d, ABSTRACTOR_TORCH_LAYER_NORM_EPS));
    this.normk = this.registerModule('normk', new LayerNorm(d, ABSTRACTOR_TORCH_LAYER_NORM_EPS));
  }

  /** hiddenStates: queries [N, Q, D]; encoderHiddenStates: image tokens [N, K, D] → [N, Q, D]. */
  forward(hiddenStates: tf.Tensor, encoderHiddenStates: tf.Tensor): tf.Tensor {
    return this.scope(() => {
      const xn = this.norm1.forward(hiddenStates);
      const kv = tf.concat([xn, this.normk.forward(encoderHiddenStates)], 1); // [N, Q, D] ++ [N, K, D] -> [N, Q + K, D]
      const context = this.attention.forward(xn, kv);
      return this.output.forward(context, xn);
    });
  }
}
