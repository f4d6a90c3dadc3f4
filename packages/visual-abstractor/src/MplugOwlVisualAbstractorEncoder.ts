// Mirrors MplugOwlVisualAbstractorEncoder — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '@owlet/core';

import type { MplugOwlVisualAbstractorConfig } from './config.js';
import { MplugOwlVisualAbstractorLayer } from './MplugOwlVisualAbstractorLayer.js';

/** `num_hidden_layers` layers; every layer reads the same raw image tokens. */
export class MplugOwlVisualAbstractorEncoder extends Module {
  readonly layers: ModuleList<MplugOwlVisualAbstractorLayer>;

  constructor(config: MplugOwlVisualAbstractorConfig) {
    super();
    this.layers = this.registerModule('layers', new ModuleList<MplugOwlVisualAbstractorLayer>());
    for (let l = 0; l < config.num_hidden_layers; l++) this.layers.push(new MplugOwlVisualAbstractorLayer(config, l));
  }

  /** queries [N, Q, D], image tokens [N, K, D] → the queries after the last layer [N, Q, D] */
  forward(hiddenStates: tf.Tensor, encoderHiddenStates: tf.Tensor): tf.Tensor {
    return this.scope(() => {
      let x = hiddenStates;
      for (const layer of this.layers) x = layer.forward(x, encoderHiddenStates);
      return x === hiddenStates ? tf.clone(x) : x;
    });
  }
}
