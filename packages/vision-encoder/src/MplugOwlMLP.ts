// Mirrors MplugOwlMLP — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import type * as tf from '@tensorflow/tfjs-core';
import { Init, Linear, Module, gelu, quickGelu } from '@owlet/core';

import type { MplugOwlVisionConfig } from './config.js';

/**
 * `fc2(act(fc1(x)))` with act = quick_gelu (x·σ(1.702x)) in both released models.
 *
 * Keys: `fc1.{weight [I, D], bias [I]}`, `fc2.{weight [D, I], bias [D]}`.
 */
export class MplugOwlMLP extends Module {
  readonly config: MplugOwlVisionConfig;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(config: MplugOwlVisionConfig) {
    super();
    this.config = config;
    const init = Init.normal(config.initializer_range);
    this.fc1 = this.registerModule('fc1', new Linear(config.hidden_size, config.intermediate_size, { init }));
    this.fc2 = this.registerModule('fc2', new Linear(config.intermediate_size, config.hidden_size, { init }));
  }

  /** x [..., D] → [..., D] */
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => {
      const hidden = this.fc1.forward(x); // [..., I]
      const act = this.config.hidden_act === 'quick_gelu' ? quickGelu(hidden) : gelu(hidden);
      return this.fc2.forward(act);
    });
  }
}
