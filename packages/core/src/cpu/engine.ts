/**
 * The owned CPU engine: AssemblyScript kernels compiled to WebAssembly SIMD128 (`assembly/kernels.ts`),
 * run over "arenas" — WebAssembly memories of at most 4 GiB each that hold packed weights and the
 * scratch space of one call — by a pool of threads (Node worker_threads, browser Web Workers) that
 * share those memories. A call is synchronous: the calling thread publishes the job in a shared
 * control block, wakes the workers (Atomics.notify), computes its own share of the output rows and
 * waits (Atomics.wait) until every worker is done. Weights are placed in arenas by the engine's
 * `WeightAllocator`, so kernels read the canonical bytes in place (no copy, no tfjs heap).
 */
import { ErrorCode, OwletError } from '../errors.js';
import type { WeightAllocation, WeightAllocator } from '../quant/packed.js';
import { KERNELS_WASM_PLAIN, KERNELS_WASM_SHARED } from './kernels.wasm.js';
import { WORKER_SOURCE } from './worker-source.js';

const PAGE = 65536;
/** Max pages of one memory (4 GiB − 64 KiB addressable by u32 pointers). */
const MAX_PAGES = 65536;
/** Bytes at the start of each arena left to the AssemblyScript module (data, stack: none used). */
const ARENA_BASE = PAGE;
/** Weights per arena stop here, leaving room for scratch (activations, outputs). */
const ARENA_WEIGHT_LIMIT = 3.75 * 2 ** 30;
const ARENA_LIMIT = MAX_PAGES * PAGE - PAGE;
/** Multiply-adds below which a product runs on the calling thread alone. */
const MIN_THREADED_WORK = 1 << 19;

/** Kernel exports of one instance (pointer arguments are byte offsets in its arena). */
export interface KernelExports {
  quantize_q16(x: number, n: number, k: number, qd: number, qs: number): void;
  gemm_q4(
    w: number,
    qd: number,
    qs: number,
    n: number,
    k: number,
    y: number,
    ldy: number,
    r0: number,
    r1: number,
    bias: number,
  ): void;
  gemm_q8(
    w: number,
    qd: number,
    qs: number,
    n: number,
    k: number,
    y: number,
    ldy: number,
    r0: number,
    r1: number,
    bias: number,
  ): void;
  gemm_f32(
    w: number,
    x: number,
    n: number,
    k: number,
    y: number,
    ldy: number,
    r0: number,
    r1: number,
    bias: number,
  ): void;
  gemm_f16(
    w: number,
    x: number,
    n: number,
    k: number,
    y: number,
    ldy: number,
    r0: number,
    r1: number,
    bias: number,
  ): void;
}

/** Job codes shared with the worker source. */
export const OP = { YIELD: 1, EXIT: 2, GEMM_Q4: 10, GEMM_Q8: 11, GEMM_F32: 12, GEMM_F16: 13 } as const;
/** Control block slots (Int32Array over a SharedArrayBuffer). */
export const CTRL = { SEQ: 0, DONE: 1, ACK: 2, OP: 3, ARENA: 4, THREADS: 5, ROWS: 6, ARGS: 8 } as const;
const CTRL_INTS = 32;

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

function decode(b64: string): Uint8Array {
  if (typeof Buffer !== 'undefined') return Uint8Array.from(Buffer.from(b64, 'base64'));
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Whether this thread may block (Atomics.wait): Node's main thread and workers yes, a page's main thread no. */
function canBlock(): boolean {
  if (typeof SharedArrayBuffer === 'undefined') return false;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** Number of hardware threads here (Node: os.availableParallelism; browsers: navigator.hardwareConcurrency). */
export async function hardwareThreads(): Promise<number> {
  if (isNode) {
    try {
      const os = (await import(/* @vite-ignore */ 'node:os')) as {
        availableParallelism?: () => number;
        cpus: () => unknown[];
      };
      return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
    } catch {
      return 1;
    }
  }
  const g = globalThis as { navigator?: { hardwareConcurrency?: number } };
  return Math.max(1, g.navigator?.hardwareConcurrency ?? 1);
}

interface FreeBlock {
  offset: number;
  size: number;
}

/** One WebAssembly memory with its kernel instance on this thread and a first-fit allocator. */
export class Arena {
  readonly index: number;
  readonly memory: WebAssembly.Memory;
  readonly kernels: KernelExports;
  private top = ARENA_BASE;
  private readonly free: FreeBlock[] = [];
  /** Bytes of weights placed here. */
  weightBytes = 0;
  private scratchOffset = 0;
  private scratchSize = 0;

  constructor(index: number, module: WebAssembly.Module, shared: boolean) {
    this.index = index;
    this.memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared } as WebAssembly.MemoryDescriptor);
    this.kernels = new WebAssembly.Instance(module, { env: { memory: this.memory } })
      .exports as unknown as KernelExports;
  }

  get buffer(): ArrayBuffer | SharedArrayBuffer {
    return this.memory.buffer;
  }

  /** Bytes still free before the arena's limit (ignoring fragmentation). */
  room(limit = ARENA_LIMIT): number {
    return limit - this.top;
  }

  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    if (end > ARENA_LIMIT) {
      throw new OwletError(
        'CPU_ENGINE_OUT_OF_MEMORY',
        `arena ${this.index}: ${end} bytes exceed the 4 GiB memory limit`,
      );
    }
    const pages = Math.ceil((end - have) / PAGE);
    // grow in steps of at least 1/8 of the current size (fewer grows while loading)
    const step = Math.max(pages, Math.min(MAX_PAGES - have / PAGE, Math.ceil(have / PAGE / 8)));
    try {
      this.memory.grow(Math.min(step, MAX_PAGES - have / PAGE));
    } catch (e) {
      throw new OwletError('CPU_ENGINE_OUT_OF_MEMORY', `arena ${this.index}: could not grow to ${end} bytes`, {
        cause: e,
      });
    }
  }

  /** Allocates `size` bytes aligned to 64. Returns the offset. */
  alloc(size: number): number {
    const need = Math.ceil(size / 64) * 64;
    for (let i = 0; i < this.free.length; i++) {
      const f = this.free[i] as FreeBlock;
      if (f.size >= need) {
        const off = f.offset;
        if (f.size === need) this.free.splice(i, 1);
        else {
          f.offset += need;
          f.size -= need;
        }
        return off;
      }
    }
    const off = this.top;
    this.ensure(off + need);
    this.top = off + need;
    return off;
  }

  release(offset: number, size: number): void {
    const need = Math.ceil(size / 64) * 64;
    if (offset + need === this.top) {
      this.top = offset;
      // merge a free block that now ends at the top
      const last = this.free.findIndex((f) => f.offset + f.size === this.top);
      if (last >= 0) {
        this.top = (this.free[last] as FreeBlock).offset;
        this.free.splice(last, 1);
      }
      return;
    }
    this.free.push({ offset, size: need });
  }

  /** A scratch region of at least `size` bytes (valid until the next call on this arena). */
  scratch(size: number): number {
    if (size <= this.scratchSize) return this.scratchOffset;
    if (this.scratchSize > 0) this.release(this.scratchOffset, this.scratchSize);
    const grown = Math.max(size, Math.ceil(this.scratchSize * 1.5));
    this.scratchOffset = this.alloc(grown);
    this.scratchSize = Math.ceil(grown / 64) * 64;
    return this.scratchOffset;
  }

  f32(offset: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, n);
  }
}

interface PoolWorker {
  postMessage(m: unknown): void;
  terminate(): unknown;
}

export interface CpuEngineOptions {
  /** Threads doing the work, the calling one included (default: every hardware thread). */
  threads?: number;
}

export interface CpuEngineInfo {
  /** Threads in use (1 = the calling thread only). */
  threads: number;
  /** Why fewer threads than asked for, if so. */
  note?: string;
  arenas: number;
  weightBytes: number;
  sharedMemory: boolean;
}

export class CpuEngine {
  readonly threads: number;
  readonly note: string | undefined;
  readonly shared: boolean;
  private readonly module: WebAssembly.Module;
  readonly arenas: Arena[] = [];
  private readonly ctrl: Int32Array | null;
  private readonly workers: PoolWorker[] = [];
  private closed = false;
  readonly allocator: WeightAllocator;

  private constructor(
    threads: number,
    note: string | undefined,
    shared: boolean,
    workers: PoolWorker[],
    ctrl: Int32Array | null,
    module: WebAssembly.Module,
  ) {
    this.threads = threads;
    this.note = note;
    this.shared = shared;
    this.workers = workers;
    this.ctrl = ctrl;
    this.module = module;
    const engine = this;
    this.allocator = {
      name: 'owlet-cpu',
      allocate(byteLength: number): WeightAllocation {
        const arena = engine.arenaFor(byteLength);
        const offset = arena.alloc(byteLength);
        arena.weightBytes += byteLength;
        let freed = false;
        return {
          bytes: new Uint8Array(arena.buffer, offset, byteLength),
          allocator: 'owlet-cpu',
          location: { engine, arena: arena.index, offset },
          free() {
            if (freed) return;
            freed = true;
            arena.weightBytes -= byteLength;
            arena.release(offset, byteLength);
          },
        };
      },
    };
  }

  /** Starts the engine (and its worker threads). */
  static async create(options: CpuEngineOptions = {}): Promise<CpuEngine> {
    const want = options.threads ?? (await hardwareThreads());
    if (!Number.isInteger(want) || want < 1) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `threads must be a positive integer, got ${String(options.threads)}`,
      );
    }
    let threads = want;
    let note: string | undefined;
    const sabOk =
      typeof SharedArrayBuffer !== 'undefined' &&
      (isNode || (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true);
    if (threads > 1 && !sabOk) {
      threads = 1;
      note = 'one thread: shared memory needs a cross-origin isolated page (COOP/COEP headers)';
    } else if (threads > 1 && !canBlock()) {
      threads = 1;
      note = "one thread: this thread cannot block (a page's main thread); run the model in a Web Worker for more";
    }
    const shared = threads > 1 || sabOk;
    const module = new WebAssembly.Module(decode(shared ? KERNELS_WASM_SHARED : KERNELS_WASM_PLAIN) as BufferSource);
    const ctrl = threads > 1 ? new Int32Array(new SharedArrayBuffer(CTRL_INTS * 4)) : null;
    const workers: PoolWorker[] = [];
    if (ctrl) {
      try {
        for (let t = 1; t < threads; t++) workers.push(await spawnWorker());
      } catch (e) {
        for (const w of workers) w.terminate();
        workers.length = 0;
        threads = 1;
        note = `one thread: workers could not start (${(e as Error).message})`;
      }
    }
    const live = threads > 1 ? ctrl : null;
    const engine = new CpuEngine(threads, note, shared, workers, live, module);
    if (live) {
      for (const [i, w] of workers.entries()) w.postMessage({ type: 'init', module, ctrl: live.buffer, index: i + 1 });
      // every worker is in its wait loop before the first job is published
      const t0 = Date.now();
      while (Atomics.load(live, CTRL.ACK) < workers.length) {
        if (Date.now() - t0 > 30_000) {
          engine.close();
          throw new OwletError('CPU_ENGINE_UNAVAILABLE', 'the CPU engine workers did not start within 30 s');
        }
        await new Promise((r) => setTimeout(r, 1));
      }
      Atomics.store(live, CTRL.ACK, 0);
    }
    return engine;
  }

  info(): CpuEngineInfo {
    return {
      threads: this.threads,
      ...(this.note ? { note: this.note } : {}),
      arenas: this.arenas.length,
      weightBytes: this.arenas.reduce((n, a) => n + a.weightBytes, 0),
      sharedMemory: this.shared,
    };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The arena a new weight of `bytes` goes to (a new one when the last is full). */
  arenaFor(bytes: number): Arena {
    this.assertOpen();
    const last = this.arenas[this.arenas.length - 1];
    if (last && last.weightBytes + bytes <= ARENA_WEIGHT_LIMIT && last.room() >= bytes + 64) return last;
    if (bytes > ARENA_WEIGHT_LIMIT) {
      throw new OwletError(
        'CPU_ENGINE_OUT_OF_MEMORY',
        `a single weight of ${bytes} bytes is larger than one ${ARENA_WEIGHT_LIMIT}-byte arena`,
      );
    }
    const arena = new Arena(this.arenas.length, this.module, this.shared);
    this.arenas.push(arena);
    this.shareArena(arena);
    return arena;
  }

  /** Sends a new arena's memory to every worker and waits until each has instantiated it. */
  private shareArena(arena: Arena): void {
    const ctrl = this.ctrl;
    if (!ctrl) return;
    Atomics.store(ctrl, CTRL.ACK, 0);
    for (const w of this.workers) w.postMessage({ type: 'arena', index: arena.index, memory: arena.memory });
    // wake the workers out of their wait loop so their event loops receive the message
    this.publish(OP.YIELD, 0, 0, []);
    this.waitFor(CTRL.ACK, this.workers.length);
  }

  private publish(op: number, arena: number, rows: number, args: readonly number[]): void {
    const ctrl = this.ctrl as Int32Array;
    ctrl[CTRL.OP] = op;
    ctrl[CTRL.ARENA] = arena;
    ctrl[CTRL.ROWS] = rows;
    ctrl[CTRL.THREADS] = this.threads;
    for (let i = 0; i < args.length; i++) ctrl[CTRL.ARGS + i] = args[i] as number;
    Atomics.store(ctrl, CTRL.DONE, 0);
    Atomics.add(ctrl, CTRL.SEQ, 1);
    Atomics.notify(ctrl, CTRL.SEQ);
  }

  private waitFor(slot: number, count: number): void {
    const ctrl = this.ctrl as Int32Array;
    let spins = 0;
    for (;;) {
      const v = Atomics.load(ctrl, slot);
      if (v >= count) return;
      if (++spins < 20000) continue;
      Atomics.wait(ctrl, slot, v, 1000);
    }
  }

  /**
   * Runs a gemm job over `rows` output rows on `arena`, split over the threads by row range
   * (`args` are the kernel's arguments before r0, r1, bias…; see `runShare`).
   */
  run(op: number, arena: Arena, rows: number, args: readonly number[], work: number): void {
    this.assertOpen();
    // small products: one thread (waking the pool, ~10–50 µs, costs more than it saves)
    if (!this.ctrl || this.threads === 1 || work < MIN_THREADED_WORK || rows < 4 * this.threads) {
      runShare(arena.kernels, op, args, 0, rows);
      return;
    }
    this.publish(op, arena.index, rows, args);
    const t = this.threads;
    runShare(arena.kernels, op, args, 0, Math.floor(rows / t));
    this.waitFor(CTRL.DONE, t - 1);
  }

  /** Stops the workers. Weights already placed stay readable until disposed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ctrl) this.publish(OP.EXIT, 0, 0, []);
    for (const w of this.workers) w.terminate();
  }

  private assertOpen(): void {
    if (this.closed) throw new OwletError(ErrorCode.DISPOSED, 'the CPU engine was used after close()');
  }
}

/**
 * Computes rows [r0, r1) of a job on one thread. The argument order per op is the kernel's, with
 * (r0, r1) inserted before the last argument (bias).
 */
export function runShare(k: KernelExports, op: number, a: readonly number[], r0: number, r1: number): void {
  if (r1 <= r0) return;
  const g = (i: number) => a[i] as number;
  switch (op) {
    case OP.GEMM_Q4:
      k.gemm_q4(g(0), g(1), g(2), g(3), g(4), g(5), g(6), r0, r1, g(7));
      return;
    case OP.GEMM_Q8:
      k.gemm_q8(g(0), g(1), g(2), g(3), g(4), g(5), g(6), r0, r1, g(7));
      return;
    case OP.GEMM_F32:
      k.gemm_f32(g(0), g(1), g(2), g(3), g(4), g(5), r0, r1, g(6));
      return;
    case OP.GEMM_F16:
      k.gemm_f16(g(0), g(1), g(2), g(3), g(4), g(5), r0, r1, g(6));
      return;
  }
}

async function spawnWorker(): Promise<PoolWorker> {
  if (isNode) {
    const wt = (await import(/* @vite-ignore */ 'node:worker_threads')) as typeof import('node:worker_threads');
    const w = new wt.Worker(WORKER_SOURCE, { eval: true });
    await new Promise<void>((resolve, reject) => {
      w.once('online', () => resolve());
      w.once('error', reject);
    });
    w.unref(); // from now on never keeps the process alive
    return w;
  }
  const W = (globalThis as { Worker?: new (url: string) => PoolWorker }).Worker;
  if (!W || typeof Blob === 'undefined' || typeof URL === 'undefined') throw new Error('no Web Worker support here');
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
  return new W(url);
}
