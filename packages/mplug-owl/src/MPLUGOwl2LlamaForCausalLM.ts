// Mirrors MPLUGOwl2LlamaForCausalLM — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/modeling_mplug_owl2.py
import type * as tf from '@tensorflow/tfjs-core';
import { Linear, type Parameter } from '@owlet/core';
import {
  LlamaForCausalLM,
  type CausalLM,
  type LlamaModel,
  type LlamaModelOptions,
} from '@owlet/modality-adaptive-decoder';
import { IMAGE_TOKEN_INDEX } from '@owlet/tokenizer';

import { resolveMplugOwlModelConfig, type MplugOwlModelConfig } from './config.js';
import { MPLUGOwl2LlamaModel } from './MPLUGOwl2LlamaModel.js';
import { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
import { spliceOwl2, type SplicedSequence } from './splice.js';
import { prepareTrainingInputsOwl2, type PreparedTrainingInputs, type TrainingBatch } from './training-inputs.js';

/**
 * mPLUG-Owl2: `model` (MPLUGOwl2LlamaModel: LLaMA-2 with the modality-adaptive module, the vision
 * tower and the abstractor) and the untied `lm_head`. Each −200 in the prompt expands into the
 * queries + 1 visual tokens of the next image, with modality 1.
 */
export class MPLUGOwl2LlamaForCausalLM extends MplugOwlPreTrainedModel {
  readonly model: MPLUGOwl2LlamaModel;
  readonly lm_head: Linear;

  /** Builds the model shape-only (no memory) from a resolved config or a parsed config.json. */
  constructor(config: MplugOwlModelConfig | Record<string, unknown>, options: LlamaModelOptions = {}) {
    const c =
      'text_config' in config && 'image_tokens' in config
        ? (config as MplugOwlModelConfig)
        : resolveMplugOwlModelConfig(config);
    if (c.model_type !== 'mplug_owl2') {
      throw new TypeError(`MPLUGOwl2LlamaForCausalLM needs an mplug_owl2 config, got ${c.model_type}`);
    }
    super(c);
    this.model = this.registerModule('model', new MPLUGOwl2LlamaModel(c, options));
    this.lm_head = this.registerModule(
      'lm_head',
      new Linear(c.text_config.hidden_size, c.text_config.vocab_size, { bias: false }),
    );
  }

  get templateName(): 'mplug_owl2' {
    return 'mplug_owl2';
  }

  protected get llm(): LlamaModel {
    return this.model;
  }

  protected get lmHeadWeight(): Parameter {
    return this.lm_head.weight;
  }

  /**
   * The Python class inherits `LlamaForCausalLM` (next to the `MPLUGOwl2MetaForCausalLM` mixin); a
   * TypeScript class has one base, so this one runs `LlamaForCausalLM`'s own forward on its `model`
   * and `lm_head`, the two members that forward reads.
   */
  protected get causalLM(): CausalLM {
    const forward = LlamaForCausalLM.prototype.forward;
    return {
      config: this.config.text_config,
      forward: (inputs) => forward.call(this as unknown as LlamaForCausalLM, inputs),
    };
  }

  encodeImages(pixelValues: tf.Tensor): tf.Tensor3D {
    return this.model.encodeImages(pixelValues);
  }

  protected splice(ids: readonly number[], features: tf.Tensor3D | null): SplicedSequence {
    return spliceOwl2(ids, features, (t) => this.embedText(t));
  }

  protected prepareTraining(batch: TrainingBatch, features: tf.Tensor3D | null): PreparedTrainingInputs {
    return prepareTrainingInputsOwl2(batch, features, (t) => this.embedText(t), this.config.text_config.hidden_size);
  }

  protected imagesUsed(batch: TrainingBatch): number[] {
    const n = batch.pixel_values ? (batch.pixel_values.shape[0] as number) : 0;
    const slots = batch.input_ids.map((r) => r.filter((id) => id === IMAGE_TOKEN_INDEX).length);
    const total = slots.reduce((a, x) => a + x, 0);
    const withZeroImages = slots.reduce((a, x) => a + Math.max(1, x), 0);
    if (n !== withZeroImages || n === total) return Array.from({ length: n }, (_, i) => i);
    // The official collator gives every text-only sample a zero image: skip those.
    const used: number[] = [];
    let i = 0;
    for (const k of slots) {
      if (k === 0) i++;
      else for (let j = 0; j < k; j++) used.push(i++);
    }
    return used;
  }
}
