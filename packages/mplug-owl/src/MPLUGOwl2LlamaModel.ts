// Mirrors MPLUGOwl2LlamaModel — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/modeling_mplug_owl2.py
import type * as tf from '@tensorflow/tfjs-core';
import { LlamaModel, type LlamaModelOptions } from '@owlet/modality-adaptive-decoder';
import { MplugOwlVisionModel } from '@owlet/vision-encoder';
import { MplugOwlVisualAbstractorModel } from '@owlet/visual-abstractor';

import type { MplugOwlModelConfig } from './config.js';

/**
 * The mPLUG-Owl2 LLaMA decoder with the vision tower and the abstractor registered inside it:
 * keys `model.vision_model.…`, `model.visual_abstractor.…`, `model.embed_tokens.…`, `model.layers.…`,
 * `model.norm.…`.
 */
export class MPLUGOwl2LlamaModel extends LlamaModel {
  readonly vision_model: MplugOwlVisionModel;
  readonly visual_abstractor: MplugOwlVisualAbstractorModel;

  constructor(config: MplugOwlModelConfig, options: LlamaModelOptions = {}) {
    super(config.text_config, options);
    this.vision_model = this.registerModule('vision_model', new MplugOwlVisionModel(config.vision_config));
    this.visual_abstractor = this.registerModule(
      'visual_abstractor',
      new MplugOwlVisualAbstractorModel(config.abstractor_config),
    );
  }

  /** `encode_images`: pixel_values [N, 3, S, S] → visual tokens [N, Q + 1, D_llm]. Caller owns the result. */
  encodeImages(pixelValues: tf.Tensor): tf.Tensor3D {
    return this.scope(() => {
      const image = this.vision_model.forward(pixelValues).last_hidden_state; // [N, 1 + P, D_v]
      return this.visual_abstractor.forward(image); // [N, Q + 1, D_llm]
    });
  }
}
