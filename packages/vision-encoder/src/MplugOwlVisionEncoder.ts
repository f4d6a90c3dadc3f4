// Mirrors MplugOwlVisionEncoder — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList } from '@owlet/core';

import type { MplugOwlVisionConfig } from './config.js';
import { MplugOwlVisionEncoderLayer } from './MplugOwlVisionEncoderLayer.js';

export interface MplugOwlVisionEncoderOptions {
  /** Also return the input of every layer and the last layer's output (HF `output_hidden_states`). */
  output_hidden_states?: boolean;
}

export interface MplugOwlVisionEncoderOutput {
  /** Output of the last layer [B, L, D] (before `post_layernorm`). */
  last_hidden_state: tf.Tensor3D;
  /**
   * With `output_hidden_states`: num_hidden_layers + 1 tensors [B, L, D]: the encoder input (a copy),
   * then the output of each layer (the last equals `last_hidden_state`, as a separate tensor).
   */
  hidden_states?: tf.Tensor3D[];
}

/**
 * `num_hidden_layers` MplugOwlVisionEncoderLayer blocks, no attention mask.
 *
 * Keys: `layers.{j}.…`.
 */
export class MplugOwlVisionEncoder extends Module {
  readonly config: MplugOwlVisionConfig;
  readonly layers: ModuleList<MplugOwlVisionEncoderLayer>;

  constructor(config: MplugOwlVisionConfig) {
    super();
    this.config = config;
    this.layers = this.registerModule(
      'layers',
      new ModuleList(Array.from({ length: config.num_hidden_layers }, () => new MplugOwlVisionEncoderLayer(config))),
    );
  }

  /** inputs_embeds [B, L, D] → { last_hidden_state [B, L, D], hidden_states? } */
  forward(inputsEmbeds: tf.Tensor, options: MplugOwlVisionEncoderOptions = {}): MplugOwlVisionEncoderOutput {
    const keep = options.output_hidden_states === true;
    return this.scope(() => {
      const states: tf.Tensor3D[] = [];
      if (keep) states.push(tf.clone(inputsEmbeds) as tf.Tensor3D);
      let x = inputsEmbeds as tf.Tensor3D;
      for (const layer of this.layers) {
        const next = layer.forward(x);
        // Free each intermediate activation as soon as the next exists (unless it is returned).
        if (!keep && x !== inputsEmbeds) x.dispose();
        x = next;
        if (keep) states.push(x);
      }
      if (!keep) return { last_hidden_state: x === inputsEmbeds ? (tf.clone(x) as tf.Tensor3D) : x };
      return { last_hidden_state: tf.clone(x) as tf.Tensor3D, hidden_states: states };
    });
  }
}
