// Mirrors MplugOwlVisualAbstractorLayer — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import type * as tf from '@tensorflow/tfjs-core';
import { Module } from '@owlet/core';

import type { MplugOwlVisualAbstractorConfig } from './config.js';
import { MplugOwlVisualAbstractorAttention } from './MplugOwlVisualAbstractorAttention.js';

/** A layer is its cross attention block (`crossattention`), nothing else. */
export class MplugOwlVisualAbstractorLayer extends Module {
  readonly layerIdx: number;
  readonly crossattention: MplugOwlVisualAbstractorAttention;

  constructor(config: MplugOwlVisualAbstractorConfig, layerIdx: number) {
    super();
    this.layerIdx = layerIdx;
    this.crossattention = this.registerModule('crossattention', new MplugOwlVisualAbstractorAttention(config));
  }

  /** queries [N, Q, D], image tokens [N, K, D] → queries [N, Q, D] */
  forward(hiddenStates: tf.Tensor, encoderHiddenStates: tf.Tensor): tf.Tensor {
    return this.scope(() => this.crossattention.forward(hiddenStates, encoderHiddenStates));
  }
}
