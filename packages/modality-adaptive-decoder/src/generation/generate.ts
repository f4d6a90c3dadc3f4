/**
 * The decoding loop at the decoder level, as transformers' `greedy_search` / `sample` with the
 * mPLUG-Owl2 `prepare_inputs_for_generation`: one prefill forward over the prompt (token ids, or
 * embeddings with image features spliced in, plus their modality indicators), then one forward per
 * new token feeding only that token, as text (modality 0), at position = past length, with the
 * attention mask reset to all ones. Batch size 1.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, OwletError, webgpuLossError } from '@owlet/core';

import { eosIds, type LlamaConfig } from '../config.js';
import type { CausalLMOutput, LlamaForCausalLMInputs } from '../LlamaForCausalLM.js';
import { toIdRows, type IdsInput } from '../inputs.js';
import { KVCache, type KVCacheGrowth } from '../KVCache.js';
import type { ModalityIndicatorsInput } from '../ModalityRouting.js';
import {
  LogitsProcessorList,
  MinNewTokensLengthLogitsProcessor,
  RepetitionPenaltyLogitsProcessor,
  TemperatureLogitsWarper,
  TopKLogitsWarper,
  TopPLogitsWarper,
  argmax,
  sampleFromScores,
  type LogitsProcessor,
} from './logits-process.js';
import { SeededRandom } from './random.js';
import { StoppingCriteria, type FinishReason } from './stopping.js';

/**
 * Lets queued tasks run between tokens (an abort sent by a message, a timer, Ctrl-C). On the cpu and
 * wasm backends `data()` settles within the microtask queue, so without this a whole answer would
 * be generated before an abort could be delivered. A task, not a microtask: setImmediate in Node, a
 * MessageChannel message in browsers and workers (FIFO with other posted messages, no timer clamp).
 */
function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown };
  if (typeof g.setImmediate === 'function') {
    const setImmediate = g.setImmediate;
    return new Promise((resolve) => void setImmediate(resolve));
  }
  if (typeof MessageChannel === 'function') {
    return new Promise((resolve) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        resolve();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** What `generate` needs of a causal LM (LlamaForCausalLM, or an assembled model that wraps one). */
export interface CausalLM {
  readonly config: LlamaConfig;
  forward(inputs: LlamaForCausalLMInputs): CausalLMOutput;
}

/** HF-style streamer: `put` gets each new token id, `end` is called once at the end. */
export interface Streamer {
  put(ids: number[]): void;
  end(): void;
}

export interface GenerateOptions {
  /** Prompt ids [1, L] (or one row). Exactly one of input_ids / inputs_embeds. */
  input_ids?: IdsInput;
  /** Prompt embeddings [1, L, D] (image features spliced in). Not disposed. */
  inputs_embeds?: tf.Tensor;
  /** Modality of the prompt positions [1, L] (0 text, 1 image); default all text. */
  modality_indicators?: ModalityIndicatorsInput | null;
  /** Prompt position ids; default past … past + L − 1. Decode steps use position = past length. */
  position_ids?: IdsInput | null;
  /** Prompt attention mask over past + prompt; decode steps attend to everything (as the reference). */
  attention_mask?: IdsInput | null;
  /**
   * A cache to continue from (multi-turn). It is extended in place and stays the caller's; after
   * the call it holds every position except the last generated token's.
   */
  past_key_values?: KVCache | null;
  /** Growth policy of a cache created here. */
  cache_growth?: KVCacheGrowth;
  /** Keep the cache created here and return it (the caller disposes it). Default false. */
  return_past_key_values?: boolean;
  /** Default 20. */
  max_new_tokens?: number;
  /** EOS is forbidden until this many tokens exist. Default 0. */
  min_new_tokens?: number;
  /** Sample (true) or take the argmax (false, default). Warpers apply only when sampling. */
  do_sample?: boolean;
  /** Default 1. */
  temperature?: number;
  /** Default 50 (the transformers default); 0 disables. */
  top_k?: number;
  /** Default 1 (off). */
  top_p?: number;
  /** Default 1 (off). Penalises prompt ids (when given as input_ids) and generated ids. */
  repetition_penalty?: number;
  /** Seed of the sampling RNG (reproducible draws). Default: random. */
  seed?: number;
  /** Stop ids; default the config's eos_token_id. null: never stop on a token. */
  eos_token_id?: number | readonly number[] | null;
  /** Stop when the decoded new text contains one of these (needs `decode`). */
  stop_strings?: readonly string[];
  /** ids → text, for stop strings (e.g. the tokenizer's decode). */
  decode?: (ids: number[]) => string;
  /** Receives each new token as it is chosen. */
  streamer?: Streamer | ((ids: number[]) => void);
  /**
   * Stops generation (finish_reason 'abort') before the next forward. With a signal, the loop lets
   * other tasks run after each token, so an abort from a message, timer or signal handler lands.
   */
  signal?: AbortSignal;
  /** Return each step's raw logits row (Float32Array of the vocabulary). */
  output_logits?: boolean;
  /** Return each step's processed scores (after penalties and warpers). */
  output_scores?: boolean;
  /** Extra processors, applied after the built-in ones. */
  logits_processor?: readonly LogitsProcessor[];
}

export interface GenerateOutput {
  /** As transformers: prompt ids (when input_ids were given) followed by the new tokens; [new tokens] for embeddings. */
  sequences: number[][];
  /** The new tokens. */
  generated_ids: number[];
  finish_reason: FinishReason;
  stop_string?: string;
  /** Row k = logits that chose token k (output_logits). */
  logits?: Float32Array[];
  /** Processed scores per step (output_scores). */
  scores?: Float32Array[];
  /** The cache (when passed in, or when return_past_key_values). */
  past_key_values?: KVCache;
  /** Prompt length, prefill and decode time. */
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    prefill_ms: number;
    decode_ms: number;
    prefill_tokens_per_s: number;
    decode_tokens_per_s: number;
  };
}

function checkNumber(name: string, v: unknown, ok: (n: number) => boolean, expected: string): void {
  if (v !== undefined && (typeof v !== 'number' || !ok(v))) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, `${name} must be ${expected}, got ${String(v)}`, {
      details: { name, value: v },
    });
  }
}

/**
 * Refuses a prompt that leaves no room for one new token in the context window
 * (`max_position_embeddings`): `cached` positions already in the KV cache plus `promptTokens` new
 * ones must be below the window. Throws `CONTEXT_WINDOW_EXCEEDED` (checklist L3), before any work.
 * Returns how many tokens can still be generated (window − cached − prompt).
 */
export function checkContextWindow(
  config: Pick<LlamaConfig, 'max_position_embeddings'>,
  promptTokens: number,
  cached = 0,
): number {
  const window = config.max_position_embeddings;
  const room = window - cached - promptTokens;
  if (room < 1) {
    const held = cached > 0 ? ` (plus ${cached} already in the conversation)` : '';
    throw new OwletError(
      ErrorCode.CONTEXT_WINDOW_EXCEEDED,
      `the prompt is ${promptTokens} tokens${held}; the context window is ${window} tokens (max_position_embeddings), which leaves no room for an answer: shorten the prompt${cached > 0 ? ' or start a new conversation' : ''}`,
      { details: { prompt_tokens: promptTokens, cached_tokens: cached, context_window: window } },
    );
  }
  return room;
}

export async function generate(model: CausalLM, options: GenerateOptions): Promise<GenerateOutput> {
  const o = options;
  // ---- validate everything before any work (B31: bad numbers are typed errors, never reach the model)
  checkNumber('max_new_tokens', o.max_new_tokens, (n) => Number.isSafeInteger(n) && n >= 1, 'a positive integer');
  checkNumber('min_new_tokens', o.min_new_tokens, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer');
  checkNumber('temperature', o.temperature, (n) => Number.isFinite(n) && n > 0, 'a finite number > 0');
  checkNumber('top_k', o.top_k, (n) => Number.isSafeInteger(n) && n >= 0, 'a non-negative integer');
  checkNumber('top_p', o.top_p, (n) => Number.isFinite(n) && n > 0 && n <= 1, 'a number in (0, 1]');
  checkNumber('repetition_penalty', o.repetition_penalty, (n) => Number.isFinite(n) && n > 0, 'a finite number > 0');
  checkNumber('seed', o.seed, (n) => Number.isSafeInteger(n), 'a safe integer');
  const cfg = model.config;
  const requestedMaxNew = o.max_new_tokens ?? 20;
  const eos =
    o.eos_token_id === undefined
      ? eosIds(cfg)
      : o.eos_token_id === null
        ? []
        : typeof o.eos_token_id === 'number'
          ? [o.eos_token_id]
          : [...o.eos_token_id];
  for (const e of eos)
    checkNumber(
      'eos_token_id',
      e,
      (n) => Number.isSafeInteger(n) && n >= 0 && n < cfg.vocab_size,
      `an id in [0, ${cfg.vocab_size})`,
    );
  const hasIds = o.input_ids !== undefined && o.input_ids !== null;
  if (hasIds === (o.inputs_embeds !== undefined && o.inputs_embeds !== null)) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'generate: pass exactly one of input_ids and inputs_embeds');
  }
  const promptIds = hasIds ? toIdRows(o.input_ids as IdsInput, cfg.vocab_size) : null;
  const embedsShape = o.inputs_embeds?.shape ?? [];
  const batch = promptIds ? promptIds.length : (embedsShape[0] as number);
  if (batch !== 1) throw new OwletError(ErrorCode.INVALID_ARGUMENT, `generate: batch size must be 1, got ${batch}`);
  const promptRow: readonly number[] = promptIds?.[0] ?? []; // the one row (batch is 1); none for inputs_embeds
  const promptLen = promptIds ? promptRow.length : (embedsShape[1] as number);
  if (o.past_key_values?.isDisposed)
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'generate: past_key_values was disposed');
  // L3: the prompt must fit the window; whatever asked for more (a flag, generation_config.json),
  // generation stops at the window with finish reason 'length'.
  const room = checkContextWindow(cfg, promptLen, o.past_key_values?.length ?? 0);
  const maxNew = Math.min(requestedMaxNew, room);
  const stopping = new StoppingCriteria({
    maxNewTokens: maxNew,
    eosTokenIds: eos,
    stopStrings: o.stop_strings ?? [],
    decode: o.decode,
  });

  const processors = new LogitsProcessorList();
  if (o.repetition_penalty !== undefined && o.repetition_penalty !== 1)
    processors.push(new RepetitionPenaltyLogitsProcessor(o.repetition_penalty));
  const history: number[] = [...promptRow];
  const minNewTokens = o.min_new_tokens ?? 0;
  if (minNewTokens > 0) processors.push(new MinNewTokensLengthLogitsProcessor(history.length, minNewTokens, eos));
  const doSample = o.do_sample ?? false;
  if (doSample) {
    if (o.temperature !== undefined && o.temperature !== 1) processors.push(new TemperatureLogitsWarper(o.temperature));
    const k = o.top_k ?? 50;
    if (k > 0) processors.push(new TopKLogitsWarper(k));
    if (o.top_p !== undefined && o.top_p < 1) processors.push(new TopPLogitsWarper(o.top_p));
  }
  for (const p of o.logits_processor ?? []) processors.push(p);
  const rng = doSample ? new SeededRandom(o.seed ?? Math.floor(Math.random() * 2 ** 32)) : null;
  const streamer = o.streamer;
  const put = (id: number) => (typeof streamer === 'function' ? streamer([id]) : streamer?.put([id]));

  const ownCache = !o.past_key_values;
  const cache = o.past_key_values ?? new KVCache(cfg.num_hidden_layers, { growth: o.cache_growth ?? 'segmented' });
  const startLen = cache.length;
  const generated: number[] = [];
  const logitsOut: Float32Array[] = [];
  const scoresOut: Float32Array[] = [];
  let finish: FinishReason = 'length';
  let stopString: string | undefined;
  const t0 = performance.now();
  let tPrefill = t0;
  try {
    if (o.signal?.aborted) {
      finish = 'abort';
    } else {
      let out = model.forward({
        input_ids: promptIds ?? undefined,
        inputs_embeds: o.inputs_embeds,
        modality_indicators: o.modality_indicators ?? null,
        position_ids: o.position_ids ?? null,
        attention_mask: o.attention_mask ?? null,
        past_key_values: cache,
        logits_to_keep: 1,
      });
      for (;;) {
        let row: Float32Array;
        try {
          row = (await out.logits.data()) as Float32Array;
        } finally {
          tf.dispose([out.logits, out.last_hidden_state, ...(out.hidden_states ?? [])]);
        }
        if (generated.length === 0) tPrefill = performance.now();
        if (o.output_logits) logitsOut.push(row);
        const scores = Float64Array.from(row);
        processors.process(history, scores);
        if (o.output_scores) scoresOut.push(Float32Array.from(scores));
        const token = rng ? sampleFromScores(scores, rng.next()) : argmax(scores);
        generated.push(token);
        history.push(token);
        put(token);
        const stop = stopping.check(generated);
        if (stop) {
          finish = stop.reason;
          stopString = stop.stop_string;
          break;
        }
        if (o.signal) {
          await yieldToEventLoop();
          if (o.signal.aborted) {
            finish = 'abort';
            break;
          }
        }
        out = model.forward({
          input_ids: [[token]],
          modality_indicators: [[0]],
          past_key_values: cache,
          logits_to_keep: 1,
        });
      }
    }
  } catch (e) {
    if (ownCache) cache.dispose();
    else if (!cache.isDisposed) cache.truncate(startLen);
    // a WebGPU device lost mid-generation surfaces as a typed DEVICE_LOST error, not an AbortError
    throw (await webgpuLossError(e)) ?? e;
  } finally {
    if (streamer && typeof streamer !== 'function') streamer.end();
  }
  const t1 = performance.now();
  const keepCache = !ownCache || (o.return_past_key_values ?? false);
  if (!keepCache) cache.dispose();
  const prefillMs = tPrefill - t0;
  const decodeMs = t1 - tPrefill;
  const decodeSteps = Math.max(0, generated.length - 1);
  return {
    sequences: [[...promptRow, ...generated]],
    generated_ids: generated,
    finish_reason: finish,
    ...(stopString !== undefined ? { stop_string: stopString } : {}),
    ...(o.output_logits ? { logits: logitsOut } : {}),
    ...(o.output_scores ? { scores: scoresOut } : {}),
    ...(keepCache ? { past_key_values: cache } : {}),
    usage: {
      prompt_tokens: promptLen,
      completion_tokens: generated.length,
      prefill_ms: prefillMs,
      decode_ms: decodeMs,
      prefill_tokens_per_s: prefillMs > 0 ? (promptLen / prefillMs) * 1000 : 0,
      decode_tokens_per_s: decodeMs > 0 ? (decodeSteps / decodeMs) * 1000 : 0,
    },
  };
}
