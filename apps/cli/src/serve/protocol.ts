/**
 * Messages between the HTTP thread and the engine worker. The worker owns the model and runs one
 * job at a time; the HTTP thread owns the queue, the sockets and the metrics, so it stays
 * responsive (health checks, 503s, SSE pings) while a prefill or a decode step runs.
 *
 * Cancellation does not go through messages (the worker's event loop is busy while it decodes):
 * the HTTP thread writes the id of the job to stop into a shared Int32Array, which the worker
 * reads before every decode step.
 */
import type { ChatMessage } from '@owlet/tokenizer';

/** What an engine job asks for (the request, validated and with its images fetched). */
export interface EngineJob {
  id: number;
  /** Chat messages with `{ type: 'image' }` parts in the places of the request's images. */
  messages: ChatMessage[];
  /** Encoded image bytes, in the order of the image parts. */
  images: Uint8Array[];
  /** Post each text delta (streaming requests); otherwise only the finished choices. */
  stream: boolean;
  /** Number of choices (each generated in turn; they share the prompt's KV cache). */
  n: number;
  /** Requested completion tokens; capped at the context window minus the prompt. */
  max_tokens?: number;
  /** 0 = greedy; absent = the model's generation_config. */
  temperature?: number;
  top_p?: number;
  top_k?: number;
  repetition_penalty?: number;
  /** Choice i samples with seed + i. */
  seed?: number;
  stop?: string[];
}

/** An error as the HTTP API reports it (OpenAI shape plus the status). */
export interface WireError {
  status: number;
  type: string;
  code: string | null;
  param: string | null;
  message: string;
}

export interface ChoiceUsage {
  prompt_tokens: number;
  cached_prompt_tokens: number;
  completion_tokens: number;
  time_to_first_token_s: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  e2e_latency_s: number;
}

export type OpenAIFinishReason = 'stop' | 'length';

export interface ModelInfo {
  /** Where the weights came from (folder or URL). */
  source: string;
  model_type: string;
  /** max_position_embeddings of the language model. */
  context_window: number;
  /** Completion tokens when a request gives no max_tokens (generation_config.json). */
  default_max_tokens: number;
  random_weights: boolean;
  backend: string;
  backend_reason: string;
  /** The dtype asked for (`auto` = float32 tfjs tensors). */
  dtype: string;
  load_ms: number;
}

export interface TfMemory {
  numTensors: number;
  numBytes: number;
}

export type WorkerToMain =
  | { type: 'ready'; info: ModelInfo; memory: TfMemory }
  | { type: 'load-failed'; exitCode: number; message: string }
  | { type: 'started'; id: number; prompt_tokens: number; max_tokens: number }
  | { type: 'delta'; id: number; index: number; text: string }
  | {
      type: 'choice';
      id: number;
      index: number;
      text: string;
      finish_reason: OpenAIFinishReason;
      usage: ChoiceUsage;
    }
  | {
      type: 'done';
      id: number;
      aborted: boolean;
      /** Tokens generated over all choices, those of a stopped choice included. */
      completion_tokens: number;
      memory: TfMemory;
    }
  | { type: 'failed'; id: number; error: WireError; memory: TfMemory };

export type MainToWorker = { type: 'job'; job: EngineJob } | { type: 'shutdown' };

/** What the worker is started with (`workerData`). */
export interface WorkerInit {
  /** --model as given (undefined: the CLI's default model). */
  model?: string;
  backend: string;
  /** Weight storage of the language model (fromPretrained's `dtype`); undefined: float32. */
  dtype?: 'auto' | 'fp32' | 'fp16' | 'q8' | 'q4';
  quiet: boolean;
  /** Int32Array over a SharedArrayBuffer: slot 0 holds the id of the job to stop. */
  abort: SharedArrayBuffer;
}
