/**
 * One conversation with an assembled model: the chat template, image preprocessing, the visual
 * tokens of each image seen (keyed by a SHA-256 digest of its pixels), the KV cache of everything
 * said so far, and the streaming of text deltas.
 */
import * as tf from '@tensorflow/tfjs-core';
import { OwletError } from '@owlet/core';
import { KVCache, generate, type CausalLM, type GenerateOutput } from '@owlet/modality-adaptive-decoder';
import { StreamingDecoder, apply_chat_template, type ChatMessage } from '@owlet/tokenizer';
import type { ImageInput } from '@owlet/vision-encoder';

import { withGenerationDefaults } from './generation-defaults.js';
import { checkPromptFits } from './inputs.js';
import type { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
import type { SplicedSequence } from './splice.js';

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

/** The parts of a model that a session reads directly. */
export type ChatModel = Pick<
  MplugOwlPreTrainedModel,
  'templateName' | 'config' | 'tokenizer' | 'imageProcessor' | 'generationDefaults' | 'encodeImages'
>;

/** What a session needs from its model; the model builds it, so its own hooks can stay protected. */
export interface ChatHost {
  readonly model: ChatModel;
  /** The decoder + lm_head the decoding loop drives. */
  readonly causalLM: CausalLM;
  /** Whether the decoder takes modality indicators (v2). */
  readonly usesModality: boolean;
  /** Throws when the model was disposed. */
  assertReady(): void;
  /** Splices visual tokens [N, T, D] into the embedded prompt (caller owns `inputs_embeds`). */
  splice(ids: readonly number[], features: tf.Tensor3D | null): SplicedSequence;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/**
 * SHA-256 of an image's preprocessed pixels (their float32 bytes) and its shape, hex: the key of
 * its visual tokens in a conversation. node:crypto in Node, Web Crypto in browsers (as the
 * checkpoint package, Node-only modules are imported only when running in Node).
 */
export async function pixelDigest(data: Float32Array, shape: readonly number[]): Promise<string> {
  const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  let hex: string;
  if (isNode) {
    const { createHash } = await import('node:crypto');
    hex = createHash('sha256').update(bytes).digest('hex');
  } else {
    const subtle = globalThis.crypto?.subtle;
    if (!subtle) {
      throw new OwletError(
        'NOT_READY',
        'chat with images needs Web Crypto (crypto.subtle, a secure context: https or localhost) to key image features',
      );
    }
    const d = new Uint8Array(await subtle.digest('SHA-256', bytes));
    hex = Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return `${hex}:${shape.join('x')}`;
}

interface Pixels {
  key: string;
  data: Float32Array;
  shape: [number, number, number, number];
}

/**
 * A conversation: each `chat` call answers the last user message and keeps the KV cache, so a
 * follow-up whose prompt extends the previous one (same messages, same images, plus the answer and
 * a new question) only prefills what is new. Visual tokens of each image are computed once per
 * conversation, keyed by a SHA-256 digest of the pixels. One answer at a time; `dispose` (or the
 * model's `dispose`) frees the cache.
 */
export class ChatSession {
  private readonly host: ChatHost;
  /** One key per cached position: token id, or `digest#row` for image rows. */
  private keys: (number | string)[] = [];
  private cache: KVCache | null = null;
  /** Visual tokens by pixel digest, [T, D] each. */
  private readonly features = new Map<string, tf.Tensor2D>();
  private readonly onDispose: (() => void) | undefined;

  constructor(host: ChatHost, onDispose?: () => void) {
    this.host = host;
    this.onDispose = onDispose;
  }

  /** How many images' visual tokens this conversation holds. */
  get cachedImages(): number {
    return this.features.size;
  }

  /** Positions held in the KV cache. */
  get cachedTokens(): number {
    return this.cache && !this.cache.isDisposed ? this.cache.length : 0;
  }

  /** Drops the KV cache and the cached image features; the session can be used again. */
  reset(): void {
    this.cache?.dispose();
    this.cache = null;
    this.keys = [];
    for (const f of this.features.values()) f.dispose();
    this.features.clear();
  }

  /** Frees everything the session holds. */
  dispose(): void {
    this.reset();
    this.onDispose?.();
  }

  /** Answers the last user message, streaming text deltas (complete characters only). */
  chat(options: ChatOptions): ChatStream {
    const queue: string[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    let failure: unknown;
    const push = (s: string) => {
      if (s) queue.push(s);
      wake?.();
    };
    const result = this.run(options, push).then(
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

  private async run(o: ChatOptions, emit: (delta: string) => void): Promise<ChatResult> {
    const h = this.host;
    const m = h.model;
    h.assertReady();
    const tok = m.tokenizer;
    if (!tok) {
      throw new OwletError(
        'NOT_READY',
        'chat needs a tokenizer: load the model with fromPretrained or set model.tokenizer',
      );
    }
    const t0 = performance.now();
    const ids = apply_chat_template(tok, o.messages, {
      template: m.templateName,
      tokenize: true,
      ...(m.templateName === 'mplug_owl' ? { media_tokens_per_image: m.config.image_tokens } : {}),
    });
    checkPromptFits(m.config, ids); // before any image is decoded or the conversation is touched
    const pixels = await this.preprocess(o.images ?? []);
    if (o.signal?.aborted) throw new OwletError('ABORTED', 'chat was aborted');

    if (!this.cache || this.cache.isDisposed) {
      this.cache = new KVCache(m.config.text_config.num_hidden_layers);
      this.keys = [];
    }
    const cache = this.cache;
    const s = this.spliceWithCachedFeatures(ids, pixels);
    const keys = this.positionKeys(ids, pixels, s);
    let prefix = 0;
    const cached = Math.min(this.keys.length, cache.length);
    while (prefix < cached && prefix < keys.length - 1 && this.keys[prefix] === keys[prefix]) prefix++;
    if (cache.length > prefix) cache.truncate(prefix);

    const total = keys.length;
    const suffix = tf.tidy(() => tf.slice(s.inputs_embeds, [0, prefix, 0], [-1, total - prefix, -1])); // [1, L' - prefix, D]
    s.inputs_embeds.dispose();
    const modality = Array.from(s.modality_indicators.subarray(prefix));

    const decoder = new StreamingDecoder(tok, { skip_special_tokens: true });
    let text = '';
    let firstTokenAt = 0;
    const eos = new Set([m.generationDefaults.eos_token_id].flat());
    let out: GenerateOutput;
    try {
      out = await generate(h.causalLM, {
        ...withGenerationDefaults(m.generationDefaults, o),
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.stop
          ? { stop_strings: o.stop, decode: (x: number[]) => tok.decode(x, { skip_special_tokens: true }) }
          : {}),
        ...(o.signal ? { signal: o.signal } : {}),
        inputs_embeds: suffix,
        modality_indicators: h.usesModality ? [modality] : null,
        past_key_values: cache,
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
      this.reset();
      throw e;
    } finally {
      suffix.dispose();
    }
    // The cache now holds the prompt and every generated token but the last.
    this.keys = [...keys, ...out.generated_ids.slice(0, -1)];
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

  /** Preprocesses every image (host side) and identifies it by the digest of its pixels. */
  private async preprocess(images: readonly ImageInput[]): Promise<Pixels[]> {
    const out: Pixels[] = [];
    for (const img of images) {
      const proc = this.host.model.imageProcessor;
      if (!proc) throw new OwletError('NOT_READY', 'chat with images needs an image processor (model.imageProcessor)');
      const pv = await proc.preprocess(img);
      out.push({ key: await pixelDigest(pv.data, pv.shape), data: pv.data, shape: pv.shape });
    }
    return out;
  }

  /** Encodes the images not seen in this conversation yet, then splices all of them into the prompt. */
  private spliceWithCachedFeatures(ids: readonly number[], pixels: readonly Pixels[]): SplicedSequence {
    const imageFeatures: tf.Tensor2D[] = [];
    for (const p of pixels) {
      let f = this.features.get(p.key);
      if (!f) {
        f = tf.tidy(() => {
          const pv = tf.tensor4d(p.data, p.shape);
          return tf.squeeze(this.host.model.encodeImages(pv), [0]) as tf.Tensor2D; // [1, T, D] -> [T, D]
        });
        this.features.set(p.key, f);
      }
      imageFeatures.push(f);
    }
    const feats = imageFeatures.length ? (tf.stack(imageFeatures) as tf.Tensor3D) : null; // [N, T, D]
    try {
      return this.host.splice(ids, feats);
    } finally {
      feats?.dispose();
    }
  }

  /** One key per position of the spliced prompt: the token id, or `digest#row` for image rows. */
  private positionKeys(ids: readonly number[], pixels: readonly Pixels[], s: SplicedSequence): (number | string)[] {
    const keys: (number | string)[] = [];
    let img = 0;
    let i = 0;
    let pos = 0;
    while (pos < (s.inputs_embeds.shape[1] as number)) {
      const span = s.imageSpans[img];
      const px = pixels[img];
      if (span && px && span.start === pos) {
        for (let r = 0; r < span.length; r++) keys.push(`${px.key}#${r}`);
        pos += span.length;
        img++;
        // v1 placeholders keep their ids in the sequence; v2 has one −200 per image
        i += this.host.model.templateName === 'mplug_owl' ? span.length : 1;
      } else {
        keys.push(ids[i] as number);
        i++;
        pos++;
      }
    }
    return keys;
  }
}
