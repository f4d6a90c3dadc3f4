// Mirrors MplugOwlForConditionalGeneration — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl/mplug_owl/modeling_mplug_owl.py
import type * as tf from '@tensorflow/tfjs-core';
import { Init, type Parameter } from '@owlet/core';
import {
  LlamaForCausalLM,
  type CausalLM,
  type LlamaModel,
  type LlamaModelOptions,
} from '@owlet/modality-adaptive-decoder';
import { MplugOwlVisionModel } from '@owlet/vision-encoder';
import { MplugOwlVisualAbstractorModel } from '@owlet/visual-abstractor';

import { resolveMplugOwlModelConfig, type MplugOwlModelConfig } from './config.js';
import { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
import { spliceOwl1, type SplicedSequence } from './splice.js';
import { prepareTrainingInputsOwl1, type PreparedTrainingInputs, type TrainingBatch } from './training-inputs.js';

/**
 * mPLUG-Owl (v1): `vision_model`, the top-level `query_tokens`, `abstractor` and `language_model`
 * (a stock LLaMA). Each run of −1 placeholders in the prompt is overwritten by the visual tokens of
 * the next image; the sequence length does not change.
 */
export class MplugOwlForConditionalGeneration extends MplugOwlPreTrainedModel {
  readonly vision_model: MplugOwlVisionModel;
  readonly query_tokens: Parameter;
  readonly abstractor: MplugOwlVisualAbstractorModel;
  readonly language_model: LlamaForCausalLM;

  /** Builds the model shape-only (no memory) from a resolved config or a parsed config.json. */
  constructor(config: MplugOwlModelConfig | Record<string, unknown>, options: LlamaModelOptions = {}) {
    const c =
      'text_config' in config && 'image_tokens' in config
        ? (config as MplugOwlModelConfig)
        : resolveMplugOwlModelConfig(config);
    if (c.model_type !== 'mplug-owl') {
      throw new TypeError(`MplugOwlForConditionalGeneration needs an mplug-owl config, got ${c.model_type}`);
    }
    super(c);
    const a = c.abstractor_config;
    this.vision_model = this.registerModule('vision_model', new MplugOwlVisionModel(c.vision_config));
    this.query_tokens = this.registerParameter('query_tokens', [1, a.num_learnable_queries, a.hidden_size], {
      init: Init.normal(1),
    });
    this.abstractor = this.registerModule('abstractor', new MplugOwlVisualAbstractorModel(a));
    this.language_model = this.registerModule('language_model', new LlamaForCausalLM(c.text_config, options));
  }

  get templateName(): 'mplug_owl' {
    return 'mplug_owl';
  }

  protected get llm(): LlamaModel {
    return this.language_model.model;
  }

  protected get lmHeadWeight(): Parameter {
    if (!this.language_model.lm_head) throw new TypeError('mPLUG-Owl has an untied lm_head');
    return this.language_model.lm_head.weight;
  }

  protected get causalLM(): CausalLM {
    return this.language_model;
  }

  encodeImages(pixelValues: tf.Tensor): tf.Tensor3D {
    return this.scope(() => {
      const image = this.vision_model.forward(pixelValues).last_hidden_state; // [N, 1 + P, D_v]
      return this.abstractor.forward(image, { query_embeds: this.query_tokens.value }); // [N, Q + 1, D_llm]
    });
  }

  protected splice(ids: readonly number[], features: tf.Tensor3D | null): SplicedSequence {
    // Negative ids are looked up as 0 before being overwritten (the official code does the same).
    return spliceOwl1(ids, features, (t) => this.embedText(t));
  }

  protected prepareTraining(batch: TrainingBatch, features: tf.Tensor3D | null): PreparedTrainingInputs {
    return prepareTrainingInputsOwl1(batch, features, (t) => this.embedText(t));
  }

  protected imagesUsed(batch: TrainingBatch): number[] {
    const n = batch.pixel_values ? (batch.pixel_values.shape[0] as number) : 0;
    return Array.from({ length: n }, (_, i) => i);
  }
}
