/**
 * What the two assembled models share: image encoding and splicing hooks, the full-sequence
 * `forward`, `generate` (the decoder package's loop over spliced embeddings), the training loss and
 * `chat` (a {@link ChatSession} per conversation).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, Module, OwletError, causalLmLoss, type CausalLmLoss, type Parameter } from '@owlet/core';
import { generate, type CausalLM, type GenerateOutput, type LlamaModel } from '@owlet/modality-adaptive-decoder';
import type { LlamaTokenizer } from '@owlet/tokenizer';
import type { MplugOwlImageProcessor } from '@owlet/vision-encoder';
import { ABSTRACTOR_POSITION_BUFFER_KEYS } from '@owlet/visual-abstractor';

import { ChatSession, type ChatHost, type ChatOptions, type ChatStream } from './chat.js';
import type { MplugOwlModelConfig } from './config.js';
import { defaultGenerationDefaults, withGenerationDefaults, type GenerationDefaults } from './generation-defaults.js';
import {
  checkAllOnesMask,
  checkPromptFits,
  firstRow,
  type MplugOwlForwardInputs,
  type MplugOwlForwardOutput,
  type MplugOwlGenerateOptions,
} from './inputs.js';
import type { SplicedSequence } from './splice.js';
import { checkTrainingBatch, usedPixels, type PreparedTrainingInputs, type TrainingBatch } from './training-inputs.js';

/**
 * The base of `MPLUGOwl2LlamaForCausalLM` (v2) and `MplugOwlForConditionalGeneration` (v1): the
 * subclasses say how images become visual tokens and where those go in the prompt; this class runs
 * `forward`, `generate`, `computeLoss` and `chat` on top.
 */
export abstract class MplugOwlPreTrainedModel extends Module {
  readonly config: MplugOwlModelConfig;
  /** Set by `fromPretrained`, or by the caller for hand-built models. */
  tokenizer: LlamaTokenizer | null = null;
  imageProcessor: MplugOwlImageProcessor | null = null;
  generationDefaults: GenerationDefaults;
  /** The conversation `chat` continues; others come from `createChatSession`. */
  private session: ChatSession | null = null;
  private readonly sessions = new Set<ChatSession>();

  /** Checkpoint keys the model knows it does not need (`rotary_emb.inv_freq`, position tables). */
  static readonly IGNORE_ON_LOAD: readonly RegExp[] = [/\.rotary_emb\.inv_freq$/, ABSTRACTOR_POSITION_BUFFER_KEYS];

  protected constructor(config: MplugOwlModelConfig) {
    super();
    this.config = config;
    this.generationDefaults = defaultGenerationDefaults(config.text_config);
  }

  /** The chat template of this model (`mplug_owl2` or `mplug_owl`). */
  abstract get templateName(): 'mplug_owl2' | 'mplug_owl';
  /** The LLaMA decoder (embeddings, layers, final norm). */
  protected abstract get llm(): LlamaModel;
  /** The untied output projection. */
  protected abstract get lmHeadWeight(): Parameter;
  /** The decoder + lm_head as the `CausalLM` the decoding loop drives: the decoder package's `LlamaForCausalLM`. */
  protected abstract get causalLM(): CausalLM;
  /** pixel_values [N, 3, S, S] → visual tokens [N, T, D_llm]; caller owns the result. */
  abstract encodeImages(pixelValues: tf.Tensor): tf.Tensor3D;
  /** Splices visual tokens into the embedded prompt (caller owns `inputs_embeds`). */
  protected abstract splice(ids: readonly number[], features: tf.Tensor3D | null): SplicedSequence;
  /** Batched training inputs (spliced embeddings, modality, mask, labels) from a batch and its visual tokens ([slots, T, D]). */
  protected abstract prepareTraining(batch: TrainingBatch, features: tf.Tensor3D | null): PreparedTrainingInputs;
  /** Indices into `pixel_values` of the images the batch's slots use (v2 skips zero images of text-only samples). */
  protected abstract imagesUsed(batch: TrainingBatch): number[];
  /** Whether the decoder has the modality-adaptive module (v2). */
  protected get usesModality(): boolean {
    return this.config.text_config.multiway;
  }

  /** Text ids → embeddings [n, D]. */
  protected embedText(ids: number[]): tf.Tensor2D {
    return this.llm.embed_tokens.forward(ids) as tf.Tensor2D;
  }

  /** Encodes the images and splices them into the prompt (caller owns `inputs_embeds`). */
  prepareInputs(inputIds: MplugOwlForwardInputs['input_ids'], pixelValues?: tf.Tensor | null): SplicedSequence {
    this.assertNotDisposed();
    const ids = firstRow(inputIds);
    if (ids.length === 0) throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'input_ids is empty');
    checkPromptFits(this.config, ids);
    const features = pixelValues ? this.encodeImages(pixelValues) : null;
    try {
      return this.splice(ids, features);
    } finally {
      features?.dispose();
    }
  }

  /** Full-sequence logits over the spliced prompt (no cache), as the official `forward`. */
  forward(inputs: MplugOwlForwardInputs): MplugOwlForwardOutput {
    const ids = firstRow(inputs.input_ids);
    checkAllOnesMask(inputs.attention_mask, ids.length);
    const s = this.prepareInputs(ids, inputs.pixel_values);
    try {
      return this.causalLM.forward({
        inputs_embeds: s.inputs_embeds,
        modality_indicators: this.usesModality ? [Array.from(s.modality_indicators)] : null,
        ...(inputs.output_hidden_states ? { output_hidden_states: true } : {}),
      });
    } finally {
      s.inputs_embeds.dispose();
    }
  }

  /**
   * The training loss of the official `forward(input_ids, attention_mask, labels, images)`: mean
   * token cross-entropy of logits[:, :-1] against labels[:, 1:] over labels ≠ −100, on a right-padded
   * batch as the official collator makes it (see `TrainingBatch`). Synchronous, so it can run under
   * `tf.variableGrads`; the caller owns `loss`.
   */
  computeLoss(batch: TrainingBatch): CausalLmLoss {
    this.assertNotDisposed();
    checkTrainingBatch(batch);
    const used = batch.pixel_values ? this.imagesUsed(batch) : [];
    return tf.tidy(() => {
      const pixels = usedPixels(batch.pixel_values, used); // [slots, 3, S, S]
      const features = pixels ? this.encodeImages(pixels) : null;
      const p = this.prepareTraining(batch, features);
      const out = this.llm.forward({
        inputs_embeds: p.inputs_embeds,
        modality_indicators: this.usesModality ? p.modality_indicators : null,
        attention_mask: p.attention_mask,
      });
      return causalLmLoss(out.last_hidden_state, this.lmHeadWeight, p.labels) as unknown as tf.TensorContainer;
    }) as unknown as CausalLmLoss;
  }

  /**
   * Persistent buffers the official checkpoints carry besides the parameters: each LLaMA layer's
   * `self_attn.rotary_emb.inv_freq` (computed, as torch does). For exporting checkpoints with the
   * released key set; the caller owns the tensors.
   */
  persistentBuffers(): Map<string, tf.Tensor> {
    return this.llm.persistentBuffers();
  }

  /**
   * Generation as the official pipeline: images spliced at prefill, then one text token per step.
   * Returns HF-shaped `sequences` (prompt ids + new tokens) and usage figures.
   */
  async generate(options: MplugOwlGenerateOptions): Promise<GenerateOutput> {
    const ids = firstRow(options.input_ids);
    checkAllOnesMask(options.attention_mask, ids.length);
    const s = this.prepareInputs(ids, options.pixel_values);
    const { input_ids: _i, pixel_values: _p, attention_mask: _a, stop, ...rest } = options;
    const tokenizer = this.tokenizer;
    try {
      const out = await generate(this.causalLM, {
        ...withGenerationDefaults(this.generationDefaults, rest),
        ...rest,
        ...(stop ? { stop_strings: stop } : {}),
        ...(tokenizer && (stop || rest.stop_strings) ? { decode: (x: number[]) => tokenizer.decode(x) } : {}),
        inputs_embeds: s.inputs_embeds,
        modality_indicators: this.usesModality ? [Array.from(s.modality_indicators)] : null,
      });
      return { ...out, sequences: [[...ids, ...out.generated_ids]] };
    } finally {
      s.inputs_embeds.dispose();
    }
  }

  /** A new conversation with this model (its own KV cache and image features); disposed with the model. */
  createChatSession(): ChatSession {
    const host: ChatHost = {
      model: this,
      causalLM: this.causalLM,
      usesModality: this.usesModality,
      assertReady: () => this.assertNotDisposed(),
      splice: (ids, f) => this.splice(ids, f),
    };
    const session = new ChatSession(host, () => this.sessions.delete(session));
    this.sessions.add(session);
    return session;
  }

  /** Answers the last user message of the model's own conversation (see {@link ChatSession.chat}). */
  chat(options: ChatOptions): ChatStream {
    this.session ??= this.createChatSession();
    return this.session.chat(options);
  }

  /** Drops the KV cache and cached image features of the model's own conversation. */
  resetChat(): void {
    this.session?.reset();
  }

  protected override disposeOwn(): void {
    for (const s of [...this.sessions]) s.dispose();
    this.session = null;
  }
}
