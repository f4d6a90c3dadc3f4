// Mirrors LlamaForCausalLM — transformers 4.31 models/llama/modeling_llama.py (the forward patched by
// X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/modeling_llama2.py passes modality_indicators)
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, Linear, Module, OwletError, linear } from '@owlet/core';

import type { LlamaConfig } from './config.js';
import { LlamaModel, type LlamaModelInputs, type LlamaModelOptions } from './LlamaModel.js';
import { generate, type GenerateOptions, type GenerateOutput } from './generation/generate.js';

export interface LlamaForCausalLMInputs extends LlamaModelInputs {
  /** Compute logits for the last `logits_to_keep` positions only (generation needs 1). Default: all. */
  logits_to_keep?: number;
}

export interface CausalLMOutput {
  /** [B, L (or logits_to_keep), vocab] */
  logits: tf.Tensor;
  /** [B, L, D] after the final norm. */
  last_hidden_state: tf.Tensor;
  hidden_states?: tf.Tensor[];
}

/**
 * `model` (LlamaModel) + `lm_head` (untied unless `tie_word_embeddings`). Keys relative to this
 * module: `model.embed_tokens.weight`, `model.layers.{i}.…`, `model.norm.weight`, `lm_head.weight`
 * (mPLUG-Owl v1 nests this module under `language_model.`).
 */
export class LlamaForCausalLM extends Module {
  readonly config: LlamaConfig;
  readonly model: LlamaModel;
  readonly lm_head: Linear | null;

  constructor(config: LlamaConfig, options: LlamaModelOptions = {}) {
    super();
    this.config = config;
    this.model = this.registerModule('model', new LlamaModel(config, options));
    this.lm_head = config.tie_word_embeddings
      ? null
      : this.registerModule('lm_head', new Linear(config.hidden_size, config.vocab_size, { bias: false }));
  }

  forward(inputs: LlamaForCausalLMInputs): CausalLMOutput {
    const keep = inputs.logits_to_keep;
    if (keep !== undefined && (!Number.isSafeInteger(keep) || keep < 1)) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `logits_to_keep must be a positive integer, got ${keep}`);
    }
    const prepared = this.model.prepare(inputs);
    return this.scope(() => {
      const out = this.model.forwardPrepared(prepared, inputs.output_hidden_states ?? false);
      let h = out.last_hidden_state;
      if (keep !== undefined && keep < prepared.length) {
        h = tf.slice(h, [0, prepared.length - keep, 0], [-1, keep, -1]); // [B, L, D] -> [B, keep, D]
      }
      // Pass the Parameter: the ops seam may store Linear weights transposed on some backends.
      const logits = linear(h, this.lm_head ? this.lm_head.weight : this.model.embed_tokens.weight);
      return out.hidden_states
        ? { logits, last_hidden_state: out.last_hidden_state, hidden_states: out.hidden_states }
        : { logits, last_hidden_state: out.last_hidden_state };
    });
  }

  /** Greedy or sampled generation with a KV cache (see `generate`). */
  generate(options: GenerateOptions): Promise<GenerateOutput> {
    return generate(this, options);
  }
}
