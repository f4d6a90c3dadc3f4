/**
 * The page side: `WebWorkerOwletEngine` implements `OwletEngine` by messages to the model worker
 * (protocol.ts), so the page uses the same interface whether the model runs here or there. If the
 * worker dies (out of memory, a crash), every pending call fails with WORKER_CRASHED and the next
 * call starts a new worker.
 */
import { EngineError, EngineErrorCode, deserializeError } from './errors.js';
import type { OwletEngine } from './engine.js';
import type {
  EngineChatRequest,
  EngineChatResult,
  EngineChatUpdate,
  EngineLoadOptions,
  EngineProgress,
  LoadInfo,
  MemoryInfo,
  ModelSource,
  WebGPUCheck,
  WorkerRequest,
  WorkerResponse,
} from './protocol.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Request = DistributiveOmit<Exclude<WorkerRequest, { type: 'interrupt' }>, 'id'>;

interface Pending {
  resolve: (m: WorkerResponse) => void;
  reject: (e: EngineError) => void;
  onMessage?: (m: WorkerResponse) => void;
  /** The response status that ends this call. */
  done: WorkerResponse['status'];
}

export class WebWorkerOwletEngine implements OwletEngine {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Errors no call asked about (the GPU device lost while idle). */
  onError: ((e: EngineError) => void) | null = null;

  constructor(private readonly createWorker: () => Worker) {}

  private get port(): Worker {
    if (this.worker) return this.worker;
    const w = this.createWorker();
    w.onmessage = (ev: MessageEvent<WorkerResponse>) => this.receive(ev.data);
    const crashed = (why: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      w.terminate();
      const err = new EngineError({
        name: 'EngineError',
        code: EngineErrorCode.WORKER_CRASHED,
        message: `the model worker stopped (${why}); load the model again to start a new one`,
      });
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.onError?.(err);
    };
    w.onerror = (ev) => {
      ev.preventDefault();
      crashed(ev.message || 'an uncaught error');
    };
    w.onmessageerror = () => crashed('a message could not be read');
    this.worker = w;
    return w;
  }

  private receive(m: WorkerResponse): void {
    const id = 'id' in m ? m.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (m.status === 'error') {
      const err = deserializeError(m.error);
      if (!p || id === undefined) {
        this.onError?.(err);
        return;
      }
      this.pending.delete(id);
      p.reject(err);
      return;
    }
    if (!p || id === undefined) return;
    // Progress events carry a `phase` (the checkpoint's own `ready` event is one of them).
    if (m.status === p.done && !('phase' in m)) {
      this.pending.delete(id);
      p.resolve(m);
    } else {
      p.onMessage?.(m);
    }
  }

  private call<S extends WorkerResponse['status']>(
    req: Request,
    done: S,
    onMessage?: (m: WorkerResponse) => void,
  ): Promise<Exclude<Extract<WorkerResponse, { status: S }>, { phase: unknown }>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (m: WorkerResponse) => void,
        reject,
        done,
        ...(onMessage ? { onMessage } : {}),
      });
      this.port.postMessage({ ...req, id } as WorkerRequest);
    });
  }

  async checkWebGPU(): Promise<WebGPUCheck> {
    return (await this.call({ type: 'check' }, 'check')).webgpu;
  }

  /** Whether the worker is cross-origin isolated (SharedArrayBuffer: WASM threads). */
  async crossOriginIsolated(): Promise<boolean> {
    return (await this.call({ type: 'check' }, 'check')).crossOriginIsolated;
  }

  async load(
    source: ModelSource,
    options: EngineLoadOptions & { progress_callback?: (e: EngineProgress) => void } = {},
  ): Promise<LoadInfo> {
    const { progress_callback, ...rest } = options;
    const r = await this.call({ type: 'load', source, options: rest }, 'ready', (m) => {
      if ('phase' in m) {
        const { id: _id, ...event } = m as WorkerResponse & EngineProgress & { id: number };
        progress_callback?.(event as EngineProgress);
      }
    });
    return r.info;
  }

  async chat(
    request: EngineChatRequest,
    callbacks: { onStart?: () => void; onUpdate?: (u: EngineChatUpdate) => void } = {},
  ): Promise<EngineChatResult> {
    const r = await this.call({ type: 'generate', request }, 'complete', (m) => {
      if (m.status === 'start') callbacks.onStart?.();
      else if (m.status === 'update') callbacks.onUpdate?.({ output: m.output, tps: m.tps, numTokens: m.numTokens });
    });
    return r.result;
  }

  interruptGenerate(): void {
    this.worker?.postMessage({ type: 'interrupt' } satisfies WorkerRequest);
  }

  async resetChat(): Promise<void> {
    await this.call({ type: 'reset' }, 'ok');
  }

  async unload(): Promise<void> {
    if (!this.worker) return;
    await this.call({ type: 'unload' }, 'ok');
  }

  async clearCache(): Promise<void> {
    await this.call({ type: 'clear_cache' }, 'ok');
  }

  async memory(): Promise<MemoryInfo> {
    return (await this.call({ type: 'memory' }, 'memory')).memory;
  }

  /** Test hook (F10): destroys the worker's GPU device as a driver reset would. */
  async loseDeviceForTest(when: 'now' | 'during-next-load' = 'now'): Promise<void> {
    await this.call({ type: 'lose_device', when }, 'ok');
  }

  /** Ends the worker (and everything it holds). */
  terminate(): void {
    this.worker?.terminate();
    this.worker = null;
  }
}

/**
 * WebLLM's `CreateWebWorkerMLCEngine`, for owlet: an engine on `worker`, loading `source` first if
 * given. `worker` may be a factory, so a crashed worker can be replaced.
 */
export async function CreateWebWorkerOwletEngine(
  worker: Worker | (() => Worker),
  source?: ModelSource,
  options?: EngineLoadOptions & { progress_callback?: (e: EngineProgress) => void },
): Promise<WebWorkerOwletEngine> {
  let first: Worker | null = typeof worker === 'function' ? null : worker;
  const engine = new WebWorkerOwletEngine(() => {
    if (first) {
      const w = first;
      first = null;
      return w;
    }
    if (typeof worker === 'function') return worker();
    throw new EngineError({
      name: 'EngineError',
      code: EngineErrorCode.WORKER_CRASHED,
      message: 'the model worker stopped and no factory was given to start another',
    });
  });
  if (source) await engine.load(source, options);
  return engine;
}
