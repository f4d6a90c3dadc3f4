/**
 * What the two assembled models share: image encoding and splicing hooks, the full-sequence
 * `forward`, `generate` (the decoder package's loop over spliced embeddings) and a high-level
 * `chat` that streams text and keeps the KV cache across the turns of one conversation.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ErrorCode,
  Module,
  OwletError,
  causalLmLoss,
  linear,
  ropeInvFreq,
  type CausalLmLoss,
  type Parameter,
} from '@owlet/core';
import {
  KVCache,
  checkContextWindow,
  generate,
  type CausalLM,
  type GenerateOptions,
  type GenerateOutput,
  type LlamaModel,
} from '@owlet/modality-adaptive-decoder';
import { StreamingDecoder, apply_chat_template, type ChatMessage, type LlamaTokenizer } from '@owlet/tokenizer';
import type { ImageInput, MplugOwlImageProcessor } from '@owlet/vision-encoder';

import type { MplugOwlModelConfig } from './config.js';
import { splicedLength, type SplicedSequence } from './splice.js';
import { checkTrainingBatch, type PreparedTrainingInputs, type TrainingBatch } from './training-inputs.js';

export interface MplugOwlForwardInputs {
  /** Prompt ids, one row (batch 1): −200 per image (v2), or runs of −1 (v1). */
  input_ids: readonly number[] | readonly (readonly number[])[];
  /** [N, 3, S, S] preprocessed images, one per image slot; omit for text-only prompts. */
  pixel_values?: tf.Tensor | null;
  /** Must be all ones (batch 1, no padding), as the official inference. */
  attention_mask?: readonly number[] | readonly (readonly number[])[] | null;
  output_hidden_states?: boolean;
}

export interface MplugOwlForwardOutput {
  /** [1, L', vocab] over the spliced sequence. */
  logits: tf.Tensor;
  /** [1, L', D] after the final norm. */
  last_hidden_state: tf.Tensor;
  hidden_states?: tf.Tensor[];
}

export interface MplugOwlGenerateOptions
  extends Omit<
    GenerateOptions,
    'input_ids' | 'inputs_embeds' | 'modality_indicators' | 'position_ids' | 'attention_mask' | 'streamer'
  > {
  input_ids: readonly number[] | readonly (readonly number[])[];
  pixel_values?: tf.Tensor | null;
  attention_mask?: readonly number[] | readonly (readonly number[])[] | null;
  /** HF `stop` alias of stop_strings. */
  stop?: readonly string[];
  /** Receives new token ids as they are chosen (a TextStreamer or a function). */
  streamer?: GenerateOptions['streamer'];
}

export interface ChatOptions {
  /** OpenAI-style messages; user content may hold `{type: 'image'}` / `{type: 'image_url'}` parts. */
  messages: readonly ChatMessage[];
  /** The images, in the order their parts appear in the messages. */
  images?: readonly ImageInput[];
  max_new_tokens?: number;
  do_sample?: boolean;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  stop?: readonly string[];
  seed?: number;
  signal?: AbortSignal;
  /**
   * Receives the ids of each new token as it is chosen (before detokenizing; the EOS token too), as
   * transformers.js' `TextStreamer` option of the same name: count tokens or measure tokens/s while
   * the text deltas stream.
   */
  token_callback_function?: (tokens: number[]) => void;
}

export interface ChatUsage {
  prompt_tokens: number;
  /** Prompt positions that were served from the conversation's KV cache. */
  cached_prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  time_to_first_token_s: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  e2e_latency_s: number;
}

export interface ChatResult {
  text: string;
  finish_reason: GenerateOutput['finish_reason'];
  usage: ChatUsage;
}

/** An answer being generated: iterate it for text deltas (complete characters), await `result`. */
export interface ChatStream extends AsyncIterable<string> {
  readonly result: Promise<ChatResult>;
}

/** Default generation settings read from `generation_config.json` (and the model's defaults). */
export interface GenerationDefaults {
  max_new_tokens: number;
  do_sample: boolean;
  temperature: number;
  top_k: number;
  top_p: number;
  repetition_penalty: number;
  eos_token_id: number | number[];
}

interface ConversationState {
  /** One key per cached position: token id, or `image#row` for image rows. */
  keys: (number | string)[];
  cache: KVCache;
  /** Image features by content hash, [T, D] each. */
  features: Map<string, tf.Tensor2D>;
}

function hashPixels(data: Float32Array | Int32Array | Uint8Array): string {
  // FNV-1a over the float bits: identifies an image's preprocessed pixels within one conversation.
  const u = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >> 2);
  let h = 0x811c9dc5;
  for (let i = 0; i < u.length; i++) h = Math.imul(h ^ (u[i] as number), 0x01000193) >>> 0;
  return `${h.toString(16)}:${u.length}`;
}

function firstRow(ids: readonly number[] | readonly (readonly number[])[]): number[] {
  if (ids.length > 0 && Array.isArray(ids[0])) {
    if (ids.length !== 1) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `batch size ${ids.length} is not supported; the official inference is batch 1 (left padding is wrong there)`,
      );
    }
    return [...(ids[0] as readonly number[])];
  }
  return [...(ids as readonly number[])];
}

export abstract class MplugOwlPreTrainedModel extends Module {
  readonly config: MplugOwlModelConfig;
  /** Set by `fromPretrained`, or by the caller for hand-built models. */
  tokenizer: LlamaTokenizer | null = null;
  imageProcessor: MplugOwlImageProcessor | null = null;
  generationDefaults: GenerationDefaults;
  private conversation: ConversationState | null = null;

  /** Checkpoint keys the model knows it does not need (`rotary_emb.inv_freq`, position tables). */
  static readonly IGNORE_ON_LOAD: readonly RegExp[] = [
    /\.rotary_emb\.inv_freq$/,
    /(^|\.)crossattention\.attention\.[qk]_pos_embed$/,
  ];

  protected constructor(config: MplugOwlModelConfig) {
    super();
    this.config = config;
    const t = config.text_config;
    this.generationDefaults = {
      max_new_tokens: 512,
      do_sample: false,
      temperature: 1,
      top_k: 50,
      top_p: 1,
      repetition_penalty: 1,
      eos_token_id: (t.eos_token_id as number | number[] | null) ?? 2,
    };
  }

  /** The chat template of this model (`mplug_owl2` or `mplug_owl`). */
  abstract get templateName(): 'mplug_owl2' | 'mplug_owl';
  /** The LLaMA decoder (embeddings, layers, final norm). */
  protected abstract get llm(): LlamaModel;
  /** The untied output projection. */
  protected abstract get lmHeadWeight(): Parameter;
  /** pixel_values [N, 3, S, S] → visual tokens [N, T, D_llm]; caller owns the result. */
  abstract encodeImages(pixelValues: tf.Tensor): tf.Tensor3D;
  /** Splices visual tokens into the embedded prompt (caller owns `inputs_embeds`). */
  protected abstract splice(ids: readonly number[], features: tf.Tensor3D | null): SplicedSequence;
  /**
   * Builds the batched training inputs (spliced embeddings, modality, mask, labels) from a batch
   * and the visual tokens of the images it uses ([slots, T, D], slot order).
   */
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

  /** The decoder + lm_head as the `CausalLM` that the decoding loop drives. */
  protected get causalLM(): CausalLM {
    return {
      config: this.config.text_config,
      forward: (inputs) => {
        const keep = inputs.logits_to_keep;
        const out = this.llm.forward(inputs);
        return tf.tidy(() => {
          const len = out.last_hidden_state.shape[1] as number;
          const h =
            keep !== undefined && keep < len
              ? tf.slice(out.last_hidden_state, [0, len - keep, 0], [-1, keep, -1])
              : out.last_hidden_state;
          const logits = linear(h, this.lmHeadWeight); // [1, L, vocab]
          return {
            logits,
            last_hidden_state: tf.keep(out.last_hidden_state),
            ...(out.hidden_states ? { hidden_states: out.hidden_states.map((t) => tf.keep(t)) } : {}),
          };
        });
      },
    };
  }

  private checkMask(mask: MplugOwlForwardInputs['attention_mask'], length: number): void {
    if (!mask) return;
    const row = firstRow(mask);
    if (row.length !== length || row.some((m) => m !== 1)) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `attention_mask must be ${length} ones (batch 1, no padding), got ${row.length} values with ${row.filter((m) => m !== 1).length} not 1`,
      );
    }
  }

  /** Refuses (CONTEXT_WINDOW_EXCEEDED) a prompt whose spliced length leaves no room for an answer. */
  private checkContextWindow(ids: readonly number[]): void {
    checkContextWindow(
      this.config.text_config,
      splicedLength(ids, this.config.image_tokens, this.templateName === 'mplug_owl2'),
    );
  }

  /** Encodes the images and splices them into the prompt (caller owns `inputs_embeds`). */
  prepareInputs(inputIds: MplugOwlForwardInputs['input_ids'], pixelValues?: tf.Tensor | null): SplicedSequence {
    this.assertNotDisposed();
    const ids = firstRow(inputIds);
    if (ids.length === 0) throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'input_ids is empty');
    this.checkContextWindow(ids);
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
    this.checkMask(inputs.attention_mask, ids.length);
    const s = this.prepareInputs(ids, inputs.pixel_values);
    try {
      const out = this.causalLM.forward({
        inputs_embeds: s.inputs_embeds,
        modality_indicators: this.usesModality ? [Array.from(s.modality_indicators)] : null,
        ...(inputs.output_hidden_states ? { output_hidden_states: true } : {}),
      } as Parameters<CausalLM['forward']>[0]);
      return out;
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
      let features: tf.Tensor3D | null = null;
      if (batch.pixel_values && used.length > 0) {
        const n = batch.pixel_values.shape[0] as number;
        const pixels =
          used.length === n && used.every((u, i) => u === i)
            ? batch.pixel_values
            : tf.gather(batch.pixel_values, tf.tensor1d(used, 'int32')); // [slots, 3, S, S]
        features = this.encodeImages(pixels);
      }
      const p = this.prepareTraining(batch, features);
      const out = this.llm.forward({
        inputs_embeds: p.inputs_embeds,
        modality_indicators: this.usesModality ? p.modality_indicators : null,
        attention_mask: p.attention_mask,
      });
      const r = causalLmLoss(out.last_hidden_state, this.lmHeadWeight, p.labels);
      return r as unknown as tf.TensorContainer;
    }) as unknown as CausalLmLoss;
  }

  /**
   * Persistent buffers the official checkpoints carry besides the parameters: each LLaMA layer's
   * `self_attn.rotary_emb.inv_freq` (computed, as torch does). For exporting checkpoints with the
   * released key set; the caller owns the tensors.
   */
  persistentBuffers(): Map<string, tf.Tensor> {
    const t = this.config.text_config;
    const inv = ropeInvFreq(t.head_dim, t.rope_theta);
    const out = new Map<string, tf.Tensor>();
    for (const [k] of this.namedParameters()) {
      const m = /^(.*\.layers\.\d+\.self_attn)\.q_proj\.weight$/.exec(k);
      if (m && !k.includes('vision_model') && !k.includes('abstractor')) {
        out.set(`${m[1]}.rotary_emb.inv_freq`, tf.tensor1d(inv));
      }
    }
    return out;
  }

  /**
   * Generation as the official pipeline: images spliced at prefill, then one text token per step.
   * Returns HF-shaped `sequences` (prompt ids + new tokens) and usage figures.
   */
  async generate(options: MplugOwlGenerateOptions): Promise<GenerateOutput> {
    const ids = firstRow(options.input_ids);
    this.checkMask(options.attention_mask, ids.length);
    const s = this.prepareInputs(ids, options.pixel_values);
    const { input_ids: _i, pixel_values: _p, attention_mask: _a, stop, ...rest } = options;
    const tokenizer = this.tokenizer;
    try {
      const out = await generate(this.causalLM, {
        ...this.generationOptions(rest),
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

  private generationOptions(o: Partial<GenerateOptions>): Partial<GenerateOptions> {
    const d = this.generationDefaults;
    return {
      max_new_tokens: o.max_new_tokens ?? d.max_new_tokens,
      do_sample: o.do_sample ?? d.do_sample,
      temperature: o.temperature ?? d.temperature,
      top_k: o.top_k ?? d.top_k,
      top_p: o.top_p ?? d.top_p,
      repetition_penalty: o.repetition_penalty ?? d.repetition_penalty,
      eos_token_id: o.eos_token_id === undefined ? d.eos_token_id : o.eos_token_id,
    };
  }

  /** Drops the conversation's KV cache and cached image features. */
  resetChat(): void {
    const c = this.conversation;
    this.conversation = null;
    if (c) {
      c.cache.dispose();
      for (const f of c.features.values()) f.dispose();
    }
  }

  /**
   * Answers the last user message, streaming text deltas (complete characters only). The model
   * keeps the KV cache of the conversation: a follow-up whose prompt extends the previous one
   * (same messages, same images, plus the answer and a new question) only prefills what is new.
   */
  chat(options: ChatOptions): ChatStream {
    const queue: string[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    let failure: unknown;
    const push = (s: string) => {
      if (s) queue.push(s);
      wake?.();
    };
    const result = this.runChat(options, push).then(
      (r) => {
        finished = true;
        wake?.();
        return r;
      },
      (e: unknown) => {
        finished = true;
        failure = e;
        wake?.();
        throw e;
      },
    );
    result.catch(() => {}); // surfaced through iteration or `result`
    return {
      result,
      async *[Symbol.asyncIterator]() {
        for (;;) {
          while (queue.length) yield queue.shift() as string;
          if (finished) {
            if (failure !== undefined) throw failure;
            return;
          }
          await new Promise<void>((r) => (wake = r));
          wake = null;
        }
      },
    };
  }

  private async runChat(o: ChatOptions, emit: (delta: string) => void): Promise<ChatResult> {
    this.assertNotDisposed();
    const tok = this.tokenizer;
    const proc = this.imageProcessor;
    if (!tok)
      throw new OwletError(
        'NOT_READY',
        'chat needs a tokenizer: load the model with fromPretrained or set model.tokenizer',
      );
    const t0 = performance.now();
    const ids = apply_chat_template(tok, o.messages, {
      template: this.templateName,
      tokenize: true,
      ...(this.templateName === 'mplug_owl' ? { media_tokens_per_image: this.config.image_tokens } : {}),
    });
    this.checkContextWindow(ids); // before any image is decoded or the conversation is touched
    const images = o.images ?? [];

    // Preprocess every image (host side) and identify it by its pixels.
    const pixels: { key: string; data: Float32Array; shape: [number, number, number, number] }[] = [];
    for (const img of images) {
      if (!proc) throw new OwletError('NOT_READY', 'chat with images needs an image processor (model.imageProcessor)');
      const pv = await proc.preprocess(img);
      pixels.push({ key: hashPixels(pv.data), data: pv.data, shape: pv.shape });
    }
    if (o.signal?.aborted) throw new OwletError('ABORTED', 'chat was aborted');

    let conv = this.conversation;
    if (!conv || conv.cache.isDisposed) {
      conv = { keys: [], cache: new KVCache(this.config.text_config.num_hidden_layers), features: new Map() };
      this.conversation = conv;
    }
    // Visual tokens for images not seen in this conversation yet.
    const imageFeatures: tf.Tensor2D[] = [];
    for (const p of pixels) {
      let f = conv.features.get(p.key);
      if (!f) {
        f = tf.tidy(() => {
          const pv = tf.tensor4d(p.data, p.shape);
          return tf.squeeze(this.encodeImages(pv), [0]) as tf.Tensor2D; // [1, T, D] -> [T, D]
        });
        conv.features.set(p.key, f);
      }
      imageFeatures.push(f);
    }
    const feats = imageFeatures.length ? (tf.stack(imageFeatures) as tf.Tensor3D) : null; // [N, T, D]
    let s: SplicedSequence;
    try {
      s = this.splice(ids, feats);
    } finally {
      feats?.dispose();
    }
    const spliced = { embeds: s.inputs_embeds, modality: s.modality_indicators, spans: s.imageSpans };

    // Keys of the spliced prompt; reuse the cached prefix.
    const keys: (number | string)[] = [];
    {
      let img = 0;
      let i = 0;
      let pos = 0;
      const spans = spliced.spans;
      while (pos < (spliced.embeds.shape[1] as number)) {
        const span = spans[img];
        const px = pixels[img];
        if (span && px && span.start === pos) {
          for (let r = 0; r < span.length; r++) keys.push(`${px.key}#${r}`);
          pos += span.length;
          img++;
          // v1 placeholders keep their ids in the sequence; v2 has one −200 per image
          i += this.templateName === 'mplug_owl' ? span.length : 1;
        } else {
          keys.push(ids[i] as number);
          i++;
          pos++;
        }
      }
    }
    let prefix = 0;
    const cached = Math.min(conv.keys.length, conv.cache.length);
    while (prefix < cached && prefix < keys.length - 1 && conv.keys[prefix] === keys[prefix]) prefix++;
    if (conv.cache.length > prefix) conv.cache.truncate(prefix);

    const total = keys.length;
    const suffix = tf.tidy(() => tf.slice(spliced.embeds, [0, prefix, 0], [-1, total - prefix, -1])); // [1, L' - prefix, D]
    spliced.embeds.dispose();
    const modality = Array.from(spliced.modality.subarray(prefix));

    const decoder = new StreamingDecoder(tok, { skip_special_tokens: true });
    let text = '';
    let firstTokenAt = 0;
    const eos = new Set([this.generationDefaults.eos_token_id].flat());
    let out: GenerateOutput;
    try {
      out = await generate(this.causalLM, {
        ...this.generationOptions(o),
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.stop
          ? { stop_strings: o.stop, decode: (x: number[]) => tok.decode(x, { skip_special_tokens: true }) }
          : {}),
        ...(o.signal ? { signal: o.signal } : {}),
        inputs_embeds: suffix,
        modality_indicators: this.usesModality ? [modality] : null,
        past_key_values: conv.cache,
        streamer: (newIds: number[]) => {
          if (!firstTokenAt) firstTokenAt = performance.now();
          o.token_callback_function?.(newIds);
          for (const id of newIds) {
            if (eos.has(id)) continue;
            const d = decoder.push(id);
            text += d;
            emit(d);
          }
        },
      });
    } catch (e) {
      this.resetChat();
      throw e;
    } finally {
      suffix.dispose();
    }
    // The cache now holds the prompt and every generated token but the last.
    conv.keys = [...keys, ...out.generated_ids.slice(0, -1)];
    const end = performance.now();
    const u = out.usage;
    let answer = text;
    if (out.stop_string) {
      const cut = answer.indexOf(out.stop_string);
      if (cut >= 0) answer = answer.slice(0, cut);
    }
    return {
      text: answer.trim(),
      finish_reason: out.finish_reason,
      usage: {
        prompt_tokens: total,
        cached_prompt_tokens: prefix,
        completion_tokens: u.completion_tokens,
        total_tokens: total + u.completion_tokens,
        time_to_first_token_s: ((firstTokenAt || end) - t0) / 1000,
        prefill_tokens_per_s: u.prefill_tokens_per_s,
        decode_tokens_per_s: u.decode_tokens_per_s,
        e2e_latency_s: (end - t0) / 1000,
      },
    };
  }

  protected override disposeOwn(): void {
    this.resetChat();
  }
}
