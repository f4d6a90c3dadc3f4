/**
 * The HTTP thread's side of the engine: one worker thread that holds the model, and a FIFO queue
 * in front of it. A request beyond the queue bound is refused at once (the caller answers 503
 * with Retry-After); a queued request that is cancelled leaves the queue; a running one is told
 * to stop through shared memory and the worker stops before its next decode step.
 *
 * If the worker dies (a native crash, out of memory), the running request fails with a 500, a
 * new worker loads the model again and the queue resumes: one bad request never takes the
 * server down.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import type {
  ChoiceUsage,
  EngineJob,
  MainToWorker,
  ModelInfo,
  OpenAIFinishReason,
  TfMemory,
  WireError,
  WorkerInit,
  WorkerToMain,
} from './protocol.js';

export interface ChoiceResult {
  index: number;
  text: string;
  finish_reason: OpenAIFinishReason;
  usage: ChoiceUsage;
}

/** Where a job's events go. Exactly one of `done` / `failed` is called, once. */
export interface JobSink {
  /** The job left the queue for the engine. */
  dispatched(): void;
  started(promptTokens: number, maxTokens: number): void;
  delta(index: number, text: string): void;
  choice(choice: ChoiceResult): void;
  /** `completionTokens`: tokens generated, those of a stopped choice included. */
  done(aborted: boolean, completionTokens: number): void;
  failed(error: WireError): void;
}

export interface JobHandle {
  readonly id: number;
  /** Leaves the queue, or stops the running job before its next decode step. Idempotent. */
  cancel(): void;
}

export class QueueFullError extends Error {
  constructor(readonly depth: number) {
    super(`the server is busy: ${depth} requests are already waiting (--max-queue ${depth})`);
  }
}

/** The model could not be loaded: the exit status and message the CLI would give. */
export class LoadError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

export type EngineState = 'loading' | 'ready' | 'failed' | 'stopped';

export interface EngineOptions {
  model?: string;
  backend: string;
  dtype?: WorkerInit['dtype'];
  quiet: boolean;
  /** Requests that may wait behind the running one. */
  maxQueue: number;
  log?: (line: string) => void;
}

interface Pending {
  job: EngineJob;
  sink: JobSink;
  cancelled: boolean;
}

const SOURCE_MODE = import.meta.url.endsWith('.ts');

function spawnWorker(init: WorkerInit): Worker {
  const url = new URL(SOURCE_MODE ? './engine-worker.ts' : './engine-worker.js', import.meta.url);
  if (!SOURCE_MODE) return new Worker(url, { workerData: init });
  // Running from the TypeScript sources (tests, `pnpm owlet`): the worker needs tsx's loader too.
  // The ESM entry of tsx's API ('import' condition); createRequire would give the CommonJS one.
  const api =
    typeof import.meta.resolve === 'function'
      ? import.meta.resolve('tsx/esm/api')
      : pathToFileURL(
          createRequire(import.meta.url)
            .resolve('tsx/esm/api')
            .replace(/\.cjs$/, '.mjs'),
        ).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(code, { eval: true, workerData: init });
}

export class Engine {
  state: EngineState = 'loading';
  info: ModelInfo | null = null;
  /** tf.memory() of the worker after its last job. */
  memory: TfMemory | null = null;
  /** Set once the first load finished (or failed). */
  readonly ready: Promise<ModelInfo>;
  /** Times the worker was restarted after dying. */
  restarts = 0;

  private worker: Worker | null = null;
  private readonly abortView = new Int32Array(new SharedArrayBuffer(4));
  private readonly queue: Pending[] = [];
  private running: Pending | null = null;
  private nextId = 1;
  private idleWaiters: (() => void)[] = [];
  private resolveReady!: (i: ModelInfo) => void;
  private rejectReady!: (e: unknown) => void;
  private loadedOnce = false;
  private stopping = false;

  constructor(private readonly options: EngineOptions) {
    this.ready = new Promise<ModelInfo>((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => {}); // the caller awaits it; no unhandled rejection meanwhile
  }

  /** Starts the worker and the model load. */
  start(): void {
    this.state = 'loading';
    const init: WorkerInit = {
      ...(this.options.model !== undefined ? { model: this.options.model } : {}),
      backend: this.options.backend,
      ...(this.options.dtype !== undefined ? { dtype: this.options.dtype } : {}),
      quiet: this.options.quiet || this.loadedOnce,
      abort: this.abortView.buffer as SharedArrayBuffer,
    };
    const w = spawnWorker(init);
    this.worker = w;
    w.on('message', (m: WorkerToMain) => this.onMessage(m));
    w.on('error', (e) => this.options.log?.(`engine worker error: ${e.message}`));
    w.on('exit', (code) => this.onExit(w, code));
  }

  /** The queue bound (--max-queue). */
  get maxQueue(): number {
    return this.options.maxQueue;
  }

  /** Requests waiting behind the running one. */
  get queueDepth(): number {
    return this.queue.length;
  }

  get busy(): boolean {
    return this.running !== null;
  }

  submit(job: Omit<EngineJob, 'id'>, sink: JobSink): JobHandle {
    if (this.running && this.queue.length >= this.options.maxQueue) throw new QueueFullError(this.options.maxQueue);
    const p: Pending = { job: { ...job, id: this.nextId++ }, sink, cancelled: false };
    this.queue.push(p);
    this.pump();
    return {
      id: p.job.id,
      cancel: () => this.cancel(p),
    };
  }

  /** Resolves when nothing runs and nothing waits. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Fails every waiting request and stops the running one (shutdown after the drain timeout). */
  cancelAll(error: WireError): void {
    for (const p of this.queue.splice(0)) {
      p.cancelled = true;
      p.sink.failed(error);
    }
    if (this.running) this.cancel(this.running);
  }

  /** Disposes the model and ends the worker. */
  async close(timeoutMs = 5000): Promise<void> {
    this.stopping = true;
    this.state = 'stopped';
    const w = this.worker;
    if (!w) return;
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    w.postMessage({ type: 'shutdown' } satisfies MainToWorker);
    const timer = setTimeout(() => void w.terminate(), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  private cancel(p: Pending): void {
    if (p.cancelled) return;
    p.cancelled = true;
    const i = this.queue.indexOf(p);
    if (i >= 0) {
      this.queue.splice(i, 1);
      p.sink.done(true, 0);
      this.notifyIdle();
      return;
    }
    if (this.running === p) Atomics.store(this.abortView, 0, p.job.id);
  }

  private pump(): void {
    if (this.running || this.state !== 'ready' || !this.worker) return;
    const p = this.queue.shift();
    if (!p) return;
    this.running = p;
    p.sink.dispatched();
    this.worker.postMessage({ type: 'job', job: p.job } satisfies MainToWorker);
  }

  private finish(): void {
    this.running = null;
    this.pump();
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.running || this.queue.length > 0) return;
    for (const r of this.idleWaiters.splice(0)) r();
  }

  private onMessage(m: WorkerToMain): void {
    if (m.type === 'ready') {
      this.info = m.info;
      this.memory = m.memory;
      this.state = 'ready';
      if (!this.loadedOnce) {
        this.loadedOnce = true;
        this.resolveReady(m.info);
      } else {
        this.options.log?.('engine restarted; the model is loaded again');
      }
      this.pump();
      return;
    }
    if (m.type === 'load-failed') {
      this.state = 'failed';
      const err = new LoadError(m.exitCode, m.message);
      if (!this.loadedOnce) this.rejectReady(err);
      else this.options.log?.(`engine restart failed: ${m.message}`);
      for (const p of this.queue.splice(0)) {
        p.sink.failed({
          status: 503,
          type: 'server_error',
          code: null,
          param: null,
          message: `the model could not be loaded again: ${m.message}`,
        });
      }
      this.notifyIdle();
      return;
    }
    const p = this.running;
    if (!p || p.job.id !== m.id) return; // a late message of a job already failed by a restart
    switch (m.type) {
      case 'started':
        if (!p.cancelled) p.sink.started(m.prompt_tokens, m.max_tokens);
        break;
      case 'delta':
        if (!p.cancelled) p.sink.delta(m.index, m.text);
        break;
      case 'choice':
        if (!p.cancelled)
          p.sink.choice({ index: m.index, text: m.text, finish_reason: m.finish_reason, usage: m.usage });
        break;
      case 'done':
        this.memory = m.memory;
        p.sink.done(m.aborted || p.cancelled, m.completion_tokens);
        this.finish();
        break;
      case 'failed':
        this.memory = m.memory;
        p.sink.failed(m.error);
        this.finish();
        break;
    }
  }

  private onExit(w: Worker, code: number): void {
    if (this.worker !== w) return;
    this.worker = null;
    const p = this.running;
    this.running = null;
    if (p) {
      p.sink.failed({
        status: 500,
        type: 'server_error',
        code: null,
        param: null,
        message: `the engine stopped while answering this request (worker exit code ${code}); it is being restarted`,
      });
    }
    if (this.stopping) {
      this.notifyIdle();
      return;
    }
    if (!this.loadedOnce) {
      if (this.state === 'loading') {
        this.state = 'failed';
        this.rejectReady(new LoadError(1, `the engine stopped while loading the model (exit code ${code})`));
      }
      return;
    }
    if (this.state === 'failed') return;
    this.restarts++;
    this.options.log?.(`engine worker exited with code ${code}; restarting it`);
    this.start();
  }
}
