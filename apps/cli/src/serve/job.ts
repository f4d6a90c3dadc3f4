/**
 * One chat-completion job on a loaded model: the engine worker's whole business, kept free of the
 * worker plumbing so it can be tested in-process.
 *
 * The job counts the prompt (text tokens plus the image rows each image becomes) before any image
 * is decoded, refuses a prompt that does not fit the context window and caps the completion at
 * what is left of it (checklist L3), then runs `model.generate` once per choice. The request's
 * stop callback is read at every new token, in the decoding loop itself, so a cancelled request
 * stops before the next forward (L4); generate's KV cache lives only for its call, so nothing of
 * a request survives it (the server is stateless per request).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MplugOwlModel } from '@owlet/mplug-owl';
import { IMAGE_TOKEN_INDEX, StreamingDecoder, apply_chat_template } from '@owlet/tokenizer';

import { EXIT, classify } from '../errors.js';
import { DeltaFilter } from './delta-filter.js';
import type { EngineJob, OpenAIFinishReason, TfMemory, WireError, WorkerToMain } from './protocol.js';

export interface JobHooks {
  post(message: WorkerToMain): void;
  /** True once the client has gone (read before every decode step). */
  shouldStop(): boolean;
}

export interface JobLimits {
  /** max_position_embeddings of the language model. */
  context_window: number;
  /** Completion tokens when the request gives none. */
  default_max_tokens: number;
}

export function modelLimits(model: MplugOwlModel): JobLimits {
  return {
    context_window: model.config.text_config.max_position_embeddings,
    default_max_tokens: model.generationDefaults.max_new_tokens,
  };
}

export function tfMemory(): TfMemory {
  const m = tf.memory();
  return { numTensors: m.numTensors, numBytes: m.numBytes };
}

/** The prompt ids of a conversation, as the model's chat template tokenizes it. */
export function promptIds(model: MplugOwlModel, messages: EngineJob['messages']): number[] {
  const tok = model.tokenizer;
  if (!tok) throw new Error('the model has no tokenizer');
  return apply_chat_template(tok, messages, {
    template: model.templateName,
    tokenize: true,
    ...(model.templateName === 'mplug_owl' ? { media_tokens_per_image: model.config.image_tokens } : {}),
  });
}

/**
 * Positions the prompt takes in the language model: each mPLUG-Owl2 image slot (−200) becomes the
 * image's `image_tokens` rows; mPLUG-Owl v1 prompts already hold one placeholder per row.
 */
export function promptLength(model: MplugOwlModel, ids: readonly number[]): number {
  let n = 0;
  for (const id of ids) n += id === IMAGE_TOKEN_INDEX ? model.config.image_tokens : 1;
  return n;
}

/** An error the job reports to its client. */
export class JobError extends Error {
  constructor(readonly wire: WireError) {
    super(wire.message);
  }
}

/** An exception from the model → what the client is told. Bad input is 400, the rest 500. */
export function toWireError(e: unknown): WireError {
  if (e instanceof JobError) return e.wire;
  const c = classify(e);
  if (c.exitCode === EXIT.BAD_INPUT) {
    return { status: 400, type: 'invalid_request_error', code: c.code.toLowerCase(), param: null, message: c.message };
  }
  return { status: 500, type: 'server_error', code: null, param: null, message: c.message };
}

function finishReason(r: string): OpenAIFinishReason {
  return r === 'length' ? 'length' : 'stop';
}

/**
 * Runs one job to the end, posting `started`, `delta` (when `stream`), `choice` for each choice
 * and finally `done` (or `failed`).
 */
export async function runJob(model: MplugOwlModel, job: EngineJob, limits: JobLimits, hooks: JobHooks): Promise<void> {
  const stream = job.stream;
  const t0 = performance.now();
  const controller = new AbortController();
  const stopNow = () => {
    if (!controller.signal.aborted && hooks.shouldStop()) controller.abort();
    return controller.signal.aborted;
  };
  let pixels: tf.Tensor4D | null = null;
  let generated = 0;
  const done = (aborted: boolean) =>
    hooks.post({ type: 'done', id: job.id, aborted, completion_tokens: generated, memory: tfMemory() });
  try {
    // 1. Count the prompt before decoding any image.
    const ids = promptIds(model, job.messages);
    const promptTokens = promptLength(model, ids);
    const window = limits.context_window;
    if (promptTokens >= window) {
      throw new JobError({
        status: 400,
        type: 'invalid_request_error',
        code: 'context_length_exceeded',
        param: 'messages',
        message: `This model's maximum context length is ${window} tokens. However, your messages resulted in ${promptTokens} tokens (images count ${model.config.image_tokens} tokens each).`,
      });
    }
    const maxTokens = Math.min(job.max_tokens ?? limits.default_max_tokens, window - promptTokens);
    // 2. Decode and preprocess the images, one at a time (a cancelled request stops in between).
    if (job.images.length > 0) {
      const proc = model.imageProcessor;
      if (!proc) throw new Error('the model has no image processor');
      const parts: Float32Array[] = [];
      let shape: [number, number, number, number] | null = null;
      for (const img of job.images) {
        if (stopNow()) break;
        const pv = await proc.preprocess(img); // [1, 3, S, S]
        parts.push(pv.data);
        shape = pv.shape;
      }
      if (!stopNow() && shape) {
        const data = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
        let off = 0;
        for (const p of parts) {
          data.set(p, off);
          off += p.length;
        }
        pixels = tf.tensor4d(data, [parts.length, shape[1], shape[2], shape[3]]); // [N, 3, S, S]
      }
    }
    if (stopNow()) {
      done(true);
      return;
    }
    hooks.post({ type: 'started', id: job.id, prompt_tokens: promptTokens, max_tokens: maxTokens });

    // 3. One generate per choice.
    const tok = model.tokenizer;
    if (!tok) throw new Error('the model has no tokenizer');
    const eos = new Set([model.generationDefaults.eos_token_id].flat());
    const greedy = job.temperature === 0;
    for (let index = 0; index < job.n; index++) {
      if (stopNow()) break;
      const tStart = performance.now();
      let firstTokenAt = 0;
      const decoder = new StreamingDecoder(tok, { skip_special_tokens: true });
      const filter = new DeltaFilter(job.stop ?? []);
      const out = await model.generate({
        input_ids: ids,
        pixel_values: pixels,
        max_new_tokens: maxTokens,
        ...(greedy ? { do_sample: false } : {}),
        ...(job.temperature !== undefined && !greedy ? { do_sample: true, temperature: job.temperature } : {}),
        ...(job.top_p !== undefined ? { top_p: job.top_p } : {}),
        ...(job.top_k !== undefined ? { top_k: job.top_k } : {}),
        ...(job.repetition_penalty !== undefined ? { repetition_penalty: job.repetition_penalty } : {}),
        ...(job.seed !== undefined ? { seed: job.seed + index } : {}),
        ...(job.stop && job.stop.length > 0 ? { stop: job.stop } : {}),
        signal: controller.signal,
        streamer: (newIds: number[]) => {
          if (!firstTokenAt) firstTokenAt = performance.now();
          generated += newIds.length;
          for (const id of newIds) {
            if (eos.has(id)) continue;
            const d = filter.push(decoder.push(id));
            if (d && stream) hooks.post({ type: 'delta', id: job.id, index, text: d });
          }
          // Read at every token: the loop checks the signal right after this callback.
          stopNow();
        },
      });
      if (out.finish_reason === 'abort') break;
      const tail = filter.end();
      if (tail && stream) hooks.post({ type: 'delta', id: job.id, index, text: tail });
      const end = performance.now();
      const u = out.usage;
      hooks.post({
        type: 'choice',
        id: job.id,
        index,
        text: filter.text,
        finish_reason: finishReason(out.finish_reason),
        usage: {
          prompt_tokens: u.prompt_tokens,
          cached_prompt_tokens: 0,
          completion_tokens: u.completion_tokens,
          // the first choice's first token includes the image preprocessing
          time_to_first_token_s: ((firstTokenAt || end) - (index === 0 ? t0 : tStart)) / 1000,
          prefill_tokens_per_s: u.prefill_tokens_per_s,
          decode_tokens_per_s: u.decode_tokens_per_s,
          e2e_latency_s: (end - tStart) / 1000,
        },
      });
    }
    pixels?.dispose();
    pixels = null;
    done(controller.signal.aborted);
  } catch (e) {
    pixels?.dispose();
    pixels = null;
    if (controller.signal.aborted) {
      done(true);
      return;
    }
    hooks.post({ type: 'failed', id: job.id, error: toWireError(e), memory: tfMemory() });
  }
}
