/**
 * `fromPretrained(source, options)`: a checkpoint folder (a directory, a base URL, or a set of
 * File/Blob objects) → a ready model with its tokenizer, image processor and generation defaults.
 *
 * Reads `config.json` (mPLUG-Owl2 `mplug_owl2` or mPLUG-Owl `mplug-owl`), `preprocessor_config.json`,
 * `tokenizer.model` (or `tokenizer.json`), `generation_config.json` if present, and the weights in
 * any format checkpoint I/O reads (safetensors single or sharded, the official `.bin` shards).
 * Loading is strict (every key and shape checked before any tensor is read), reports progress per
 * file in the transformers.js event shape, and is cancellable with an AbortSignal.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  OwletError,
  enableWebGPUEngine,
  getBackendInfo,
  initBackend,
  loadCheckpointInto,
  loadPeftAdapter,
  uploadWebGPUWeights,
  webgpuEngineEnabled,
  type BackendInfo,
  type BackendRequest,
} from '@owlet/core';
import {
  MAX_JSON_DEPTH,
  openCheckpointFolder,
  parsePlainJson,
  type ByteSourceFolder,
  type CheckpointProgress,
  type FetchLimits,
  type CheckpointSource,
} from '@owlet/checkpoint';
import { CPU_ENGINE_BACKENDS, enableCpuEngine, type DTypeRequest, type WeightDTypeReport } from '@owlet/core';
import { LlamaTokenizer } from '@owlet/tokenizer';
import { MplugOwlImageProcessor, type EntryPoint } from '@owlet/vision-encoder';

import { detectModelType, resolveMplugOwlModelConfig } from './config.js';
import { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
import { MplugOwlForConditionalGeneration } from './MplugOwlForConditionalGeneration.js';
import { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';

export type MplugOwlModel = MPLUGOwl2LlamaForCausalLM | MplugOwlForConditionalGeneration;

/** Progress of a load: the checkpoint's per-file events, plus the same for the side files. */
export type LoadProgress = CheckpointProgress;

export interface FromPretrainedOptions {
  /** Backend to initialise first (`initBackend`); default: keep the active one, else `auto`. */
  backend?: BackendRequest;
  /** transformers.js alias of `backend`. */
  device?: BackendRequest;
  onProgress?: (event: LoadProgress) => void;
  /** transformers.js alias of `onProgress`. */
  progress_callback?: (event: LoadProgress) => void;
  signal?: AbortSignal;
  /** Image entry point: `pad` (mPLUG-Owl2 CLI default), `resize` (README / eval scripts), `v1`. */
  image_entry_point?: EntryPoint;
  /** fetch for URL sources (default globalThis.fetch). */
  fetch?: typeof fetch;
  /**
   * Limits of every request to a URL source: connect and read timeouts (defaults 10 s and 30 s),
   * the largest body kept in memory, the origins a redirect may go to (default: the same origin;
   * huggingface.co may redirect to its download hosts). Side files are capped at 64 MiB.
   */
  fetch_limits?: FetchLimits;
  /** Accept an index whose `total_size` disagrees with its tensors (default false: strict). */
  ignore_total_size?: boolean;
  /**
   * How Linear weights are stored (transformers.js names): `'q4'` / `'q8'` (GGUF Q4_0 / Q8_0),
   * `'fp16'`, `'fp32'`, or a per-module map `{ decoder, lm_head, vision_encoder, visual_abstractor }`.
   * A string applies to the language model (decoder and lm_head); the vision side, norms and
   * embeddings stay float32 unless the map names them. Weights are quantized while loading, tensor
   * by tensor. Default (`'auto'`, omitted): float32 tfjs tensors everywhere (trainable).
   */
  dtype?: DTypeRequest;
  /**
   * Threads of owlet's CPU engine (WebAssembly SIMD kernels over shared memory), used for packed
   * weights on the `cpu` and `wasm` backends; default: every hardware thread. In a browser more than
   * one needs a cross-origin isolated page and the model running in a Web Worker (else one thread;
   * `cpuEngineInfo().note` says why).
   */
  threads?: number;
  /**
   * A PEFT LoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`, as
   * `PeftModel.save_pretrained` and owlet's trainer write it) applied on top of the base weights.
   */
  adapter?: CheckpointSource;
  /** Fold the adapter into the base weights after loading (faster inference; default false). */
  merge_adapter?: boolean;
}

const MAX_SIDE_FILE = 64 * 1024 * 1024;

async function readSideFile(
  folder: ByteSourceFolder,
  name: string,
  emit: (e: LoadProgress) => void,
  signal: AbortSignal | undefined,
): Promise<Uint8Array | undefined> {
  if (!(await folder.exists(name, signal))) return undefined;
  emit({ status: 'initiate', name: folder.description, file: name });
  const src = await folder.open(name, signal, { maxBytes: MAX_SIDE_FILE });
  if (!src) return undefined;
  try {
    if (src.size > MAX_SIDE_FILE) {
      throw new OwletError('CHECKPOINT_INVALID', `${name} is ${src.size} bytes; expected at most ${MAX_SIDE_FILE}`);
    }
    const bytes = await src.read(0, src.size, signal);
    emit({
      status: 'progress',
      name: folder.description,
      file: name,
      loaded: src.size,
      total: src.size,
      progress: 100,
    });
    emit({ status: 'done', name: folder.description, file: name });
    return bytes.slice();
  } finally {
    await src.close();
  }
}

/** Parses a side file as JSON: nesting deeper than MAX_JSON_DEPTH or a duplicate key is INVALID_CONFIG. */
function parseJson(bytes: Uint8Array, file: string): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new OwletError('INVALID_CONFIG', `${file} is not valid UTF-8`, { cause: e });
  }
  try {
    return parsePlainJson(text);
  } catch (e) {
    const m = (e as Error).message;
    const why = /nesting deeper/.test(m) ? `nests deeper than ${MAX_JSON_DEPTH} levels` : `is not valid JSON: ${m}`;
    throw new OwletError('INVALID_CONFIG', `${file} ${why}`, { cause: e });
  }
}

/**
 * Loads mPLUG-Owl2 or mPLUG-Owl from a checkpoint folder; the class is chosen by `config.json`.
 * The caller owns the model (`dispose()` / `using`).
 */
export async function fromPretrained(
  source: CheckpointSource,
  options: FromPretrainedOptions = {},
): Promise<MplugOwlModel> {
  const emit = options.onProgress ?? options.progress_callback ?? (() => {});
  const { signal } = options;
  const wanted = options.backend ?? options.device;
  let backend: BackendInfo | undefined = getBackendInfo();
  if (wanted !== undefined || !backend) backend = await initBackend(wanted ?? 'auto');

  const urlOptions = { ...options.fetch_limits, ...(options.fetch ? { fetch: options.fetch } : {}) };
  const folder = await openCheckpointFolder(source, urlOptions);
  const configBytes = await readSideFile(folder, 'config.json', emit, signal);
  if (!configBytes) {
    throw new OwletError(
      'CHECKPOINT_NOT_FOUND',
      `no config.json in ${folder.description}: is this an mPLUG-Owl checkpoint folder?`,
    );
  }
  const json = parseJson(configBytes, 'config.json');
  const type = detectModelType(json);
  const config = resolveMplugOwlModelConfig(json);

  // Side files first: a missing tokenizer fails before gigabytes of weights are read.
  const spBytes = await readSideFile(folder, 'tokenizer.model', emit, signal);
  let tokenizer: LlamaTokenizer;
  if (spBytes) {
    tokenizer = LlamaTokenizer.fromModelProto(spBytes);
  } else {
    const tj = await readSideFile(folder, 'tokenizer.json', emit, signal);
    if (!tj)
      throw new OwletError('CHECKPOINT_NOT_FOUND', `no tokenizer.model or tokenizer.json in ${folder.description}`);
    tokenizer = LlamaTokenizer.fromTokenizerJson(new TextDecoder().decode(tj));
  }
  const ppBytes = await readSideFile(folder, 'preprocessor_config.json', emit, signal);
  const entryPoint: EntryPoint = options.image_entry_point ?? (type === 'mplug_owl2' ? 'pad' : 'v1');
  // Without preprocessor_config.json: the released CLIP settings at the vision model's size.
  const side = config.vision_config.image_size;
  const ppJson = ppBytes
    ? (parseJson(ppBytes, 'preprocessor_config.json') as Record<string, unknown>)
    : { size: side, crop_size: side, ...(type === 'mplug-owl' ? { resolution: side } : {}) };
  const imageProcessor = new MplugOwlImageProcessor(ppJson, { entryPoint });
  if (imageProcessor.config.crop_height !== config.vision_config.image_size) {
    throw new OwletError(
      'INVALID_CONFIG',
      `preprocessor_config.json crops to ${imageProcessor.config.crop_height} px but the vision model takes ${config.vision_config.image_size} px images`,
    );
  }
  const genBytes = await readSideFile(folder, 'generation_config.json', emit, signal);

  // Packed weights on a host-memory backend go to the CPU engine's memories and kernels.
  const packs = options.dtype !== undefined && options.dtype !== 'auto';
  if ((packs || options.threads !== undefined) && CPU_ENGINE_BACKENDS.includes(backend.name)) {
    await enableCpuEngine(options.threads !== undefined ? { threads: options.threads } : {});
  }
  // On WebGPU the owned WGSL kernels run the model, packed weights held in GPU buffers.
  const onWebGPU = backend.name === 'webgpu';
  if (onWebGPU && !webgpuEngineEnabled()) enableWebGPUEngine();
  const model: MplugOwlModel =
    type === 'mplug_owl2' ? new MPLUGOwl2LlamaForCausalLM(config) : new MplugOwlForConditionalGeneration(config);
  try {
    // Marks the Linear weights to pack before any is read: each is encoded as it streams in.
    if (options.dtype !== undefined) weightDTypes.set(model, model.setWeightDTypes(options.dtype));
    await loadCheckpointInto(model, folder, {
      onProgress: emit,
      ...(signal ? { signal } : {}),
      ...urlOptions,
      checkTotalSize: !options.ignore_total_size,
      strict: true,
      ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD,
    });
    if (options.adapter !== undefined) {
      await loadPeftAdapter(model, options.adapter, {
        ...(signal ? { signal } : {}),
        ...(options.fetch ? { fetch: options.fetch } : {}),
        ...(options.merge_adapter ? { merge: true } : {}),
      });
    }
    // Every weight (a merged adapter included) goes to the GPU now (limits and out-of-memory fail the load, not the first
    // token), and packed weights drop their host copy: the GPU holds them.
    if (onWebGPU && webgpuEngineEnabled()) await uploadWebGPUWeights(model, { releaseHostBytes: true });
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.tokenizer = tokenizer;
  model.imageProcessor = imageProcessor;
  if (genBytes) applyGenerationConfig(model, parseJson(genBytes, 'generation_config.json'));
  void tf; // the model's tensors live on the backend chosen above
  return model;
}

const weightDTypes = new WeakMap<MplugOwlModel, WeightDTypeReport>();

/** What `fromPretrained`'s `dtype` did to a model it loaded (undefined when no dtype was given). */
export function weightDTypeReport(model: MplugOwlModel): WeightDTypeReport | undefined {
  return weightDTypes.get(model);
}

/** Reads the fields of a `generation_config.json` that owlet's generate understands. */
export function applyGenerationConfig(model: MplugOwlPreTrainedModel, json: unknown): void {
  if (typeof json !== 'object' || json === null) return;
  const g = json as Record<string, unknown>;
  const d = model.generationDefaults;
  const num = (k: string, ok: (n: number) => boolean): number | undefined => {
    const v = g[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !ok(v))
      throw new OwletError(
        'INVALID_CONFIG',
        `generation_config.json ${k} must be a valid number, got ${JSON.stringify(v)}`,
      );
    return v;
  };
  const maxLen = num('max_new_tokens', (n) => Number.isSafeInteger(n) && n > 0);
  if (maxLen !== undefined) d.max_new_tokens = maxLen;
  if (typeof g.do_sample === 'boolean') d.do_sample = g.do_sample;
  d.temperature = num('temperature', (n) => n > 0 && Number.isFinite(n)) ?? d.temperature;
  d.top_k = num('top_k', (n) => Number.isSafeInteger(n) && n >= 0) ?? d.top_k;
  d.top_p = num('top_p', (n) => n > 0 && n <= 1) ?? d.top_p;
  d.repetition_penalty = num('repetition_penalty', (n) => n > 0 && Number.isFinite(n)) ?? d.repetition_penalty;
  const eos = g.eos_token_id;
  if (typeof eos === 'number' || (Array.isArray(eos) && eos.every((x) => typeof x === 'number')))
    d.eos_token_id = eos as number | number[];
}
