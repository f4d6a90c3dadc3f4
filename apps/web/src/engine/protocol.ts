/**
 * What the page and the model worker say to each other. The shape follows the transformers.js
 * WebGPU chat demos (`check`, `load`, `generate`, `interrupt`, `reset` in; `loading`, progress events,
 * `ready`, `start`, `update {output, tps, numTokens}`, `complete`, `error` out), with a request `id`
 * so the page can match answers to calls, and owlet's additions (`unload`, `clear_cache`, `memory`,
 * and the test-only `lose_device`).
 */
import type { BackendName, BackendRequest } from '@owlet/core';
import type { ChatOptions, ChatUsage, LoadProgress } from '@owlet/mplug-owl';

import type { SerializedError } from './errors.js';
import type { ModelManifest } from './manifest.js';
import type { StoreEvent } from './model-store.js';

export type ChatMessage = ChatOptions['messages'][number];

/** Where the model comes from. */
export type ModelSource =
  /** A folder URL (the bundled model: with the manifest built into the app). */
  | { kind: 'url'; url: string; manifest?: ModelManifest }
  /**
   * Files the user picked (`<input type=file webkitdirectory>`) or dropped, with their paths in the
   * picked folder (`webkitRelativePath` does not survive postMessage).
   */
  | { kind: 'files'; files: File[]; paths?: string[] };

export interface EngineLoadOptions {
  /** transformers.js' name: `webgpu`, `wasm`, `cpu` or `auto` (WebGPU → WASM → CPU). */
  device?: BackendRequest;
  /** transformers.js `env.useBrowserCache`: keep the files in Cache Storage (default true). */
  useBrowserCache?: boolean;
  /** Cached URLs under this prefix that the new model does not use are deleted (older bundled models). */
  prunePrefix?: string;
}

/** Progress of a load: getting the files (`fetch`), then reading the weights onto the device (`load`). */
export type EngineProgress =
  | (StoreEvent & { phase: 'fetch' })
  | (LoadProgress & { phase: 'load' })
  | { status: 'loading'; phase: 'backend' | 'fetch' | 'load'; data: string };

export interface EngineBackendInfo {
  name: BackendName;
  requested: BackendRequest;
  /** Why this backend (auto's reasoning, or that it was asked for). */
  reason: string;
  /** Set when the requested backend could not run and another was used instead. */
  fallback?: string;
  device?: {
    description: string;
    vendor: string;
    architecture: string;
    isFallbackAdapter: boolean;
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
  };
}

export interface LoadInfo {
  model: {
    id: string;
    /** `mplug_owl2` or `mplug-owl`. */
    type: string;
    random_weights: boolean;
    /** Every file matched a sha256 recorded before this load. */
    verified: boolean;
    files: number;
    bytes: number;
  };
  backend: EngineBackendInfo;
  cache: { fromCache: string[]; fromNetwork: string[]; refetched: string[]; cached: boolean };
  warnings: SerializedError[];
  load_s: number;
}

export interface EngineChatRequest {
  messages: ChatMessage[];
  /** The images of the conversation, in the order their parts appear in the messages. */
  images: Blob[];
  max_new_tokens?: number;
  do_sample?: boolean;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  seed?: number;
}

export interface EngineChatUpdate {
  /** The new text since the last update (append it). */
  output: string;
  /** Tokens per second since the first token. */
  tps: number;
  numTokens: number;
}

export interface EngineChatResult {
  /** The whole answer (trimmed). */
  output: string;
  finish_reason: string;
  numTokens: number;
  tps: number;
  usage: ChatUsage;
}

export interface WebGPUCheck {
  available: boolean;
  reason: string;
  isFallbackAdapter?: boolean;
  description?: string;
}

export interface MemoryInfo {
  numTensors: number;
  numBytes: number;
  backend: string;
}

export type WorkerRequest =
  | { type: 'check'; id: number }
  | { type: 'load'; id: number; source: ModelSource; options: EngineLoadOptions }
  | { type: 'generate'; id: number; request: EngineChatRequest }
  | { type: 'interrupt' }
  | { type: 'reset'; id: number }
  | { type: 'unload'; id: number }
  | { type: 'clear_cache'; id: number }
  | { type: 'memory'; id: number }
  /** Test hook: destroys the WebGPU device as a driver reset would (checklist F10). */
  | { type: 'lose_device'; id: number; when?: 'now' | 'during-next-load' };

export type WorkerResponse =
  | { status: 'check'; id: number; webgpu: WebGPUCheck; crossOriginIsolated: boolean }
  | ({ id: number } & EngineProgress)
  | { status: 'ready'; id: number; info: LoadInfo }
  | { status: 'start'; id: number }
  | ({ status: 'update'; id: number } & EngineChatUpdate)
  | { status: 'complete'; id: number; result: EngineChatResult }
  | { status: 'ok'; id: number }
  | { status: 'memory'; id: number; memory: MemoryInfo }
  /** `id` is absent for errors no request asked about (the device lost while idle). */
  | { status: 'error'; id?: number; error: SerializedError; memory?: MemoryInfo };
