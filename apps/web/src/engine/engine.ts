/**
 * The engine: one loaded model, its backend, the conversation and the GPU device's health.
 *
 * `OwletEngine` is the interface the page programs against. `LocalOwletEngine` implements it in the
 * current thread (the worker runs one; tests run one in Node); `WebWorkerOwletEngine`
 * (worker-engine.ts) implements the same interface by messages to a worker, as WebLLM's
 * `CreateWebWorkerMLCEngine` mirrors its `MLCEngine`.
 *
 * Device loss (checklist F10): when the WebGPU device is lost without owlet asking (a driver reset,
 * `device.destroy()` by someone else), a running answer fails with `DeviceLostError`, the model and
 * every tensor on the dead device are released, and the next `load` creates a new device. An
 * intentional `unload()` also destroys the device, and reports nothing.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  OwletError,
  getWebGPUDevice,
  initBackend,
  isOwletError,
  type BackendInfo,
  type BackendRequest,
  type InitBackendOptions,
} from '@owlet/core';
import { fromPretrained, type MplugOwlModel } from '@owlet/mplug-owl';

import { checkModelFitsDevice } from './device-limits.js';
import { EngineErrorCode } from './errors.js';
import { DeviceLostError } from './typed-errors.js';
import {
  clearBrowserCache,
  fetchModel,
  localModel,
  openBrowserCache,
  type LoadedFiles,
  type StoreEvent,
} from './model-store.js';
import type {
  EngineBackendInfo,
  EngineChatRequest,
  EngineChatResult,
  EngineChatUpdate,
  EngineLoadOptions,
  EngineProgress,
  LoadInfo,
  MemoryInfo,
  ModelSource,
  WebGPUCheck,
} from './protocol.js';

export interface OwletEngine {
  /** Loads a model (replacing the current one) on `options.device`; progress in transformers.js' shape. */
  load(
    source: ModelSource,
    options?: EngineLoadOptions & { progress_callback?: (e: EngineProgress) => void },
  ): Promise<LoadInfo>;
  /** Answers the last user message; `onUpdate` gets each new piece of text. */
  chat(
    request: EngineChatRequest,
    callbacks?: { onStart?: () => void; onUpdate?: (u: EngineChatUpdate) => void },
  ): Promise<EngineChatResult>;
  /** Stops the running answer; it completes with what it has (`finish_reason: 'abort'`). */
  interruptGenerate(): void;
  /** Forgets the conversation (its KV cache and image features). */
  resetChat(): Promise<void>;
  /** Releases the model and, on WebGPU, the device. */
  unload(): Promise<void>;
  /** Deletes every cached model file. */
  clearCache(): Promise<void>;
  checkWebGPU(): Promise<WebGPUCheck>;
  memory(): Promise<MemoryInfo>;
}

export interface LocalEngineOptions {
  /** Options for initBackend (the wasm binaries' URLs in a browser bundle). */
  backendOptions?: InitBackendOptions;
  /** Called when the device is lost while no request is running (an answer in flight gets the error itself). */
  onDeviceLost?: (error: DeviceLostError, memory: MemoryInfo) => void;
}

/** How long a failure from the GPU waits for `device.lost` before being reported as itself. */
const LOSS_GRACE_MS = 15_000;

/** How long a lost request may take to unwind (and dispose what it made) before the loss is reported. */
const UNWIND_MS = 5_000;

/** Waits for `p` to settle, at most `ms`. */
function settle(p: Promise<unknown> | null, ms: number): Promise<void> {
  if (!p) return Promise.resolve();
  return Promise.race([p.then(noop, noop), new Promise<void>((r) => setTimeout(r, ms))]);
}
const noop = () => {};

function disposeQuietly(m: MplugOwlModel): void {
  try {
    m.dispose();
  } catch {
    // disposing the tensors of a lost device must not hide the loss
  }
}

function emptyUsage(): EngineChatResult['usage'] {
  return {
    prompt_tokens: 0,
    cached_prompt_tokens: 0,
    completion_tokens: 0,
    total_tokens: 0,
    time_to_first_token_s: 0,
    prefill_tokens_per_s: 0,
    decode_tokens_per_s: 0,
    e2e_latency_s: 0,
  };
}

function memoryNow(): MemoryInfo {
  const m = tf.memory();
  return { numTensors: m.numTensors, numBytes: m.numBytes, backend: tf.getBackend() ?? '' };
}

function backendSummary(info: BackendInfo, fallback?: string): EngineBackendInfo {
  return {
    name: info.name,
    requested: info.requested,
    reason: info.reason,
    ...(fallback ? { fallback } : {}),
    ...(info.device
      ? {
          device: {
            description: info.device.description,
            vendor: info.device.vendor,
            architecture: info.device.architecture,
            isFallbackAdapter: info.device.isFallbackAdapter,
            maxStorageBufferBindingSize: info.device.maxStorageBufferBindingSize,
            maxBufferSize: info.device.maxBufferSize,
          },
        }
      : {}),
  };
}

export class LocalOwletEngine implements OwletEngine {
  private model: MplugOwlModel | null = null;
  private info: LoadInfo | null = null;
  private controller: AbortController | null = null;
  private loading: AbortController | null = null;
  /** Rejects the running request when the device is lost. */
  private failRunning: ((e: DeviceLostError) => void) | null = null;
  /** Set after a loss until the next load: chat says why it cannot answer. */
  private lost: DeviceLostError | null = null;
  /** Devices owlet destroys on purpose: their loss is not an error. */
  private readonly releasing = new WeakSet<GPUDevice>();
  private readonly watched = new WeakSet<GPUDevice>();
  /** Devices whose loss was already handled (the watcher and a failed request may both see it). */
  private readonly handled = new WeakSet<GPUDevice>();
  /** The device the loaded model lives on (webgpu only). */
  private device: GPUDevice | null = null;
  /** Test hook: destroy the device once the next load starts reading weights. */
  private loseDuringNextLoad = false;

  constructor(private readonly options: LocalEngineOptions = {}) {}

  get loaded(): LoadInfo | null {
    return this.info;
  }

  async checkWebGPU(): Promise<WebGPUCheck> {
    const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
    if (!gpu) {
      const secure = (globalThis as { isSecureContext?: boolean }).isSecureContext !== false;
      return {
        available: false,
        reason: secure
          ? 'this browser has no WebGPU (navigator.gpu is missing); owlet uses WASM instead'
          : 'WebGPU needs a secure context (https or localhost); owlet uses WASM instead',
      };
    }
    try {
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter)
        return { available: false, reason: 'the browser offers no WebGPU adapter (GPU blocklisted or disabled)' };
      const ai = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
      const desc = `${ai?.vendor ?? ''} ${ai?.architecture ?? ''} ${ai?.description ?? ''}`.trim();
      const fallback =
        Boolean((ai as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter) ||
        /swiftshader|llvmpipe|lavapipe/i.test(desc);
      return {
        available: true,
        reason: fallback ? `software adapter (${desc || 'fallback'}): correct but slow` : desc || 'WebGPU adapter',
        isFallbackAdapter: fallback,
        description: desc,
      };
    } catch (e) {
      return { available: false, reason: `requestAdapter failed: ${(e as Error).message}` };
    }
  }

  async memory(): Promise<MemoryInfo> {
    return memoryNow();
  }

  private async startBackend(request: BackendRequest): Promise<EngineBackendInfo> {
    const opts = this.options.backendOptions ?? {};
    try {
      return backendSummary(await initBackend(request, opts));
    } catch (e) {
      if (request === 'auto' || !isOwletError(e, 'BACKEND_UNAVAILABLE')) throw e;
      // An explicit backend that cannot run here: say so, and take the best one that can.
      const label = request === 'webgpu' ? 'WebGPU' : request.toUpperCase();
      const why = (e.details.attempts as { reason: string }[] | undefined)?.[0]?.reason ?? e.message;
      const info = await initBackend('auto', opts);
      return backendSummary(info, `${label} is not available here (${why}); using ${info.name} instead.`);
    }
  }

  private watchDevice(backend: EngineBackendInfo): void {
    const device = backend.name === 'webgpu' ? (getWebGPUDevice() ?? null) : null;
    this.device = device;
    if (!device || this.watched.has(device)) return;
    this.watched.add(device);
    void device.lost.then((info) => {
      if (this.releasing.has(device)) return; // an intentional unload
      this.onLost(device, info);
    });
  }

  /**
   * After a request failed on WebGPU: was it the device? A read pending on a destroyed device fails
   * ("Buffer was unmapped before mapping was resolved") well before `device.lost` resolves (seconds
   * later when the GPU process is busy), so a failure that comes from the GPU waits for the loss to
   * be reported before being called anything else.
   */
  private async lostCause(error: unknown): Promise<DeviceLostError | null> {
    if (this.lost) return this.lost;
    const device = this.device;
    if (!device || this.releasing.has(device)) return null;
    const message = String((error as Error)?.message ?? error);
    const fromGpu =
      (typeof DOMException !== 'undefined' && error instanceof DOMException) ||
      /mapAsync|GPUBuffer|GPUDevice|device (is |was )?(lost|destroyed)/i.test(message);
    const info = await Promise.race([
      device.lost,
      new Promise<null>((r) => setTimeout(() => r(null), fromGpu ? LOSS_GRACE_MS : 0)),
    ]);
    if (!info || this.releasing.has(device)) return null;
    this.onLost(device, info);
    return this.lost;
  }

  private onLost(device: GPUDevice, info: GPUDeviceLostInfo): void {
    if (this.handled.has(device)) return;
    this.handled.add(device);
    if (this.device === device) this.device = null;
    const err = new DeviceLostError(
      `The GPU device was lost (${info.reason}${info.message ? `: ${info.message.replace(/\.$/, '')}` : ''}). ` +
        `The model's GPU memory was released; load the model again to continue (no page reload needed).`,
      { details: { reason: info.reason, message: info.message } },
    );
    this.lost = err;
    this.controller?.abort(err);
    this.loading?.abort(err);
    this.releaseModel();
    const running = this.failRunning;
    this.failRunning = null;
    if (running) running(err);
    else this.options.onDeviceLost?.(err, memoryNow());
  }

  private releaseModel(): void {
    const m = this.model;
    this.model = null;
    this.info = null;
    if (m) disposeQuietly(m);
  }

  /** Races `p` against the device being lost (a dead device may never settle a pending read). */
  private guard<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.failRunning = reject;
      p.then(resolve, reject);
    });
  }

  async load(
    source: ModelSource,
    options: EngineLoadOptions & { progress_callback?: (e: EngineProgress) => void } = {},
  ): Promise<LoadInfo> {
    if (this.loading) throw new OwletError(EngineErrorCode.BUSY, 'a model is already loading');
    if (this.controller) throw new OwletError(EngineErrorCode.BUSY, 'an answer is being generated; stop it first');
    const emit = options.progress_callback ?? (() => {});
    const ctl = new AbortController();
    this.loading = ctl;
    const t0 = performance.now();
    let building: Promise<MplugOwlModel> | null = null;
    try {
      this.releaseModel();
      this.lost = null;
      emit({ status: 'loading', phase: 'backend', data: 'Starting the backend…' });
      const backend = await this.guard(this.startBackend(options.device ?? 'auto'));
      this.watchDevice(backend);
      emit({ status: 'loading', phase: 'fetch', data: 'Getting the model files…' });
      const cache = options.useBrowserCache === false ? null : await openBrowserCache();
      const onEvent = (e: StoreEvent) => emit({ ...e, phase: 'fetch' });
      let files: LoadedFiles;
      if (source.kind === 'url') {
        files = await this.guard(
          fetchModel(source.url, {
            ...(source.manifest ? { manifest: source.manifest } : {}),
            cache,
            onEvent,
            signal: ctl.signal,
          }),
        );
        if (cache && options.prunePrefix) {
          const keep = new Set([...files.files.keys()].map((n) => new URL(n, source.url).href));
          for (const k of await cache.keys())
            if (k.startsWith(options.prunePrefix) && !keep.has(k)) await cache.delete(k);
        }
      } else {
        files = await this.guard(
          localModel(source.files, { onEvent, signal: ctl.signal, ...(source.paths ? { paths: source.paths } : {}) }),
        );
      }
      if (backend.device) await checkModelFitsDevice(files.files, backend.device);
      emit({ status: 'loading', phase: 'load', data: `Loading the weights onto ${backend.name}…` });
      let tensorsRead = 0;
      building = fromPretrained(files.files, {
        progress_callback: (e) => {
          emit({ ...e, phase: 'load' });
          if (
            e.status === 'progress' &&
            /\.(safetensors|bin)$/.test(e.file) &&
            ++tensorsRead === 1 &&
            this.loseDuringNextLoad
          ) {
            this.loseDuringNextLoad = false;
            this.device?.destroy(); // F10 test hook: lost with weights half on the device
          }
        },
        signal: ctl.signal,
      });
      const model = await this.guard(building);
      if (this.lost) throw this.lost; // released below
      this.model = model;
      const info: LoadInfo = {
        model: {
          id: files.id,
          type: model.config.model_type,
          random_weights: files.manifest.random_weights ?? typeof model.config.raw.owlet_note === 'string',
          verified: files.verified,
          files: files.files.size,
          bytes: [...files.files.values()].reduce((a, b) => a + b.size, 0),
        },
        backend,
        cache: {
          fromCache: files.fromCache,
          fromNetwork: files.fromNetwork,
          refetched: files.refetched,
          cached: files.cached,
        },
        warnings: files.warnings,
        load_s: (performance.now() - t0) / 1000,
      };
      this.info = info;
      return info;
    } catch (e) {
      const lost = await this.lostCause(e);
      // The aborted load unwinds (fromPretrained disposes its half-built model); a model that
      // finished anyway on the dead device is released here. Then nothing of it is left.
      await settle(building, UNWIND_MS);
      void building?.then((m) => {
        if (m !== this.model) disposeQuietly(m);
      }, noop);
      this.releaseModel();
      throw lost ?? e;
    } finally {
      this.loading = null;
      this.failRunning = null;
    }
  }

  async chat(
    request: EngineChatRequest,
    callbacks: { onStart?: () => void; onUpdate?: (u: EngineChatUpdate) => void } = {},
  ): Promise<EngineChatResult> {
    if (this.lost) throw this.lost;
    const model = this.model;
    if (!model) throw new OwletError(EngineErrorCode.NOT_READY, 'no model is loaded: load one first');
    if (this.controller || this.loading)
      throw new OwletError(EngineErrorCode.BUSY, 'an answer or a load is already running');
    const controller = new AbortController();
    this.controller = controller;
    let numTokens = 0;
    let firstAt = 0;
    const tps = () => (numTokens > 1 && firstAt ? ((numTokens - 1) * 1000) / (performance.now() - firstAt) : 0);
    let running: Promise<unknown> | null = null;
    try {
      callbacks.onStart?.();
      const stream = model.chat({
        messages: request.messages,
        images: request.images,
        ...(request.max_new_tokens !== undefined ? { max_new_tokens: request.max_new_tokens } : {}),
        ...(request.do_sample !== undefined ? { do_sample: request.do_sample } : {}),
        ...(request.temperature !== undefined ? { temperature: request.temperature } : {}),
        ...(request.top_k !== undefined ? { top_k: request.top_k } : {}),
        ...(request.top_p !== undefined ? { top_p: request.top_p } : {}),
        ...(request.seed !== undefined ? { seed: request.seed } : {}),
        signal: controller.signal,
        token_callback_function: (ids) => {
          if (!firstAt) firstAt = performance.now();
          numTokens += ids.length;
        },
      });
      running = stream.result;
      const pump = (async () => {
        for await (const d of stream) callbacks.onUpdate?.({ output: d, tps: tps(), numTokens });
      })();
      await this.guard(pump);
      const r = await this.guard(stream.result);
      return {
        output: r.text,
        finish_reason: r.finish_reason,
        numTokens,
        tps: r.usage.decode_tokens_per_s || tps(),
        usage: r.usage,
      };
    } catch (e) {
      const lost = await this.lostCause(e);
      // Let the aborted generation unwind (it frees its step tensors and the conversation cache).
      if (lost) await settle(running, UNWIND_MS);
      if (!lost && controller.signal.aborted && isOwletError(e, 'ABORTED')) {
        // Stopped before the first token (while the image was being read): an empty answer, not an error.
        return { output: '', finish_reason: 'abort', numTokens, tps: 0, usage: emptyUsage() };
      }
      throw lost ?? e;
    } finally {
      this.controller = null;
      this.failRunning = null;
    }
  }

  interruptGenerate(): void {
    this.controller?.abort();
  }

  async resetChat(): Promise<void> {
    this.model?.resetChat();
  }

  async unload(): Promise<void> {
    this.controller?.abort();
    this.loading?.abort();
    this.releaseModel();
    this.lost = null;
    this.device = null;
    const device = getWebGPUDevice();
    if (device) {
      // Frees the GPU memory at once; the next load creates a new device. Not an error.
      this.releasing.add(device);
      device.destroy();
      await device.lost;
    }
  }

  async clearCache(): Promise<void> {
    await clearBrowserCache();
  }

  /**
   * Test hook (F10): loses the device the way a driver reset does, without owlet asking: `now`, or
   * `during-next-load` (once the next load has put its first weight on the device).
   */
  loseDeviceForTest(when: 'now' | 'during-next-load' = 'now'): boolean {
    if (when === 'during-next-load') {
      this.loseDuringNextLoad = true;
      return true;
    }
    const device = this.device ?? getWebGPUDevice();
    if (!device) return false;
    device.destroy();
    return true;
  }
}
