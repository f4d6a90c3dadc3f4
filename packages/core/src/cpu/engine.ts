/**
 * The CPU engines behind `enableCpuEngine`: one interface (`CpuEngine`), two implementations.
 *
 * - `WasmCpuEngine`: AssemblyScript kernels compiled to WebAssembly SIMD128 (`assembly/kernels.ts`),
 *   run over "arenas" — WebAssembly memories of at most 4 GiB each that hold packed weights and the
 *   scratch space of one call — by a pool of threads (Node worker_threads, browser Web Workers)
 *   that share those memories. A call is synchronous: the calling thread publishes the job in a
 *   shared control block, wakes the workers (Atomics.notify), takes tasks from a shared counter
 *   like every worker (a descheduled thread delays only its own task) and waits until all are done.
 * - `NativeCpuEngine` (native.ts): the optional Node-API add-on with its own thread pool, reading
 *   typed arrays in place.
 *
 * Both store Linear weights in the x16 layout (layout.ts) and compute the same numbers (q8 / q4
 * bit-identical, fp32 / fp16 within float32 rounding of a fused multiply-add).
 */
import { ErrorCode, OwletError } from '../errors.js';
import type { PackedWeight, WeightAllocation, WeightAllocator, WeightDType } from '../quant/packed.js';
import { KERNELS_WASM_PLAIN, KERNELS_WASM_SHARED } from './kernels.wasm.js';
import { X16_ROWS, convertX16, x16ByteLength } from './layout.js';
import { WORKER_SOURCE } from './worker-source.js';

export interface CpuEngineOptions {
  /** Threads doing the work, the calling one included (default: every hardware thread). */
  threads?: number;
  /**
   * Kernels: `'auto'` (default) uses the native add-on when it is built and loads (Node only),
   * else WebAssembly; `'wasm'` always WebAssembly; `'native'` the add-on or a typed error.
   */
  kernels?: 'auto' | 'wasm' | 'native';
}

export interface CpuEngineInfo {
  /** `'native'` (the Node-API add-on) or `'wasm'` (WebAssembly SIMD128). */
  kind: 'native' | 'wasm';
  /** The instruction set the kernels use: `'avx512'`, `'avx2'`, `'scalar'` (native) or `'simd128'`. */
  isa: string;
  /** Threads in use (1 = the calling thread only). */
  threads: number;
  /** Why fewer threads than asked for, or why not the native kernels, if so. */
  note?: string;
  weightBytes: number;
  /** WebAssembly memories holding weights (wasm only). */
  arenas?: number;
  sharedMemory?: boolean;
}

/** An attention call's key/value segment: k and v [B, Hkv, n, D] as float32 values. */
export interface AttentionSegmentData {
  k: Float32Array;
  v: Float32Array;
}

export interface AttentionCall {
  q: Float32Array;
  segments: readonly AttentionSegmentData[];
  b: number;
  h: number;
  hkv: number;
  lq: number;
  d: number;
  scale: number;
  causal: boolean;
  /** Additive mask, element (b, h, i, j) at b·ms[0] + h·ms[1] + i·ms[2] + j. */
  mask: Float32Array | null;
  maskStrides: readonly [number, number, number];
}

export const WEIGHT_DTYPE_CODE: Readonly<Record<WeightDType, number>> = { fp32: 0, fp16: 1, q8: 2, q4: 3 };

/** The operations every CPU engine implements over float32 arrays (outputs written into `y`). */
export abstract class CpuEngine {
  abstract readonly kind: 'native' | 'wasm';
  abstract readonly isa: string;
  abstract readonly threads: number;
  abstract readonly note: string | undefined;
  abstract readonly allocator: WeightAllocator;
  protected closed = false;

  get isClosed(): boolean {
    return this.closed;
  }

  protected assertOpen(): void {
    if (this.closed) throw new OwletError(ErrorCode.DISPOSED, 'the CPU engine was used after close()');
  }

  abstract info(): CpuEngineInfo;
  /** y [n, out] = x [n, in] · Wᵀ (+ bias). */
  abstract linear(w: PackedWeight, x: Float32Array, n: number, bias: Float32Array | null, y: Float32Array): void;
  abstract rmsNorm(
    x: Float32Array,
    w: Float32Array | null,
    y: Float32Array,
    rows: number,
    d: number,
    eps: number,
  ): void;
  abstract layerNorm(
    x: Float32Array,
    w: Float32Array | null,
    b: Float32Array | null,
    y: Float32Array,
    rows: number,
    d: number,
    eps: number,
  ): void;
  /** x, y [B, H, L, D]; cos, sin [Bc, L, D] with Bc = 1 or B. */
  abstract rope(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    y: Float32Array,
    b: number,
    h: number,
    l: number,
    d: number,
    bc: number,
  ): void;
  abstract swiglu(g: Float32Array, u: Float32Array, y: Float32Array): void;
  abstract gelu(x: Float32Array, y: Float32Array): void;
  abstract quickGelu(x: Float32Array, y: Float32Array): void;
  /** out [B, H, Lq, D]. */
  abstract attention(a: AttentionCall, out: Float32Array): void;
  abstract close(): void;
}

// ---------------------------------------------------------------------------------------------
// the WebAssembly engine

const PAGE = 65536;
/** Max pages of one memory (4 GiB − 64 KiB addressable by u32 pointers). */
const MAX_PAGES = 65536;
/** Bytes at the start of each arena left to the AssemblyScript module (data, stack: none used). */
const ARENA_BASE = PAGE;
/** Weights per arena stop here, leaving room for scratch (activations, outputs). */
const ARENA_WEIGHT_LIMIT = 3.75 * 2 ** 30;
const ARENA_LIMIT = MAX_PAGES * PAGE - PAGE;
/** Multiply-adds below which a product runs on the calling thread alone. */
const MIN_THREADED_WORK = 1 << 18;

/** Kernel exports of one instance (pointer arguments are byte offsets in its arena). */
export interface KernelExports {
  quantize_act(x: number, n: number, k: number, qs: number, qd: number, sx: number): void;
  gemm_q4(
    w: number,
    qs: number,
    qd: number,
    sx: number,
    n: number,
    k: number,
    y: number,
    out: number,
    g0: number,
    g1: number,
    bias: number,
  ): void;
  gemm_q8(
    w: number,
    qs: number,
    qd: number,
    n: number,
    k: number,
    y: number,
    out: number,
    g0: number,
    g1: number,
    bias: number,
  ): void;
  gemm_f32(
    w: number,
    x: number,
    n: number,
    k: number,
    y: number,
    out: number,
    g0: number,
    g1: number,
    bias: number,
  ): void;
  gemm_f16(
    w: number,
    x: number,
    n: number,
    k: number,
    y: number,
    out: number,
    g0: number,
    g1: number,
    bias: number,
  ): void;
  rms_norm(x: number, w: number, y: number, r0: number, r1: number, d: number, eps: number): void;
  layer_norm(x: number, w: number, b: number, y: number, r0: number, r1: number, d: number, eps: number): void;
  rope(
    x: number,
    cs: number,
    sn: number,
    y: number,
    r0: number,
    r1: number,
    h: number,
    l: number,
    d: number,
    bc: number,
  ): void;
  swiglu(g: number, u: number, y: number, i0: number, i1: number): void;
  gelu(x: number, y: number, i0: number, i1: number): void;
  quick_gelu(x: number, y: number, i0: number, i1: number): void;
  attention(args: number, bh: number, scratch: number): void;
}

/** Job codes shared with the worker source. */
export const OP = {
  YIELD: 1,
  EXIT: 2,
  GEMM_Q4: 10,
  GEMM_Q8: 11,
  GEMM_F32: 12,
  GEMM_F16: 13,
  RMS_NORM: 20,
  LAYER_NORM: 21,
  ROPE: 22,
  SWIGLU: 30,
  GELU: 31,
  QUICK_GELU: 32,
  ATTENTION: 40,
} as const;
/** Control block slots (Int32Array over a SharedArrayBuffer). */
export const CTRL = { SEQ: 0, LIMIT: 1, CLAIM: 2, DONE: 3, ACK: 4, OP: 5, ARENA: 6, ARGS: 8 } as const;
const CTRL_INTS = 32;
const MAX_TASKS = 0xffff;

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

/** Checks a requested thread count (a typed error for anything but a positive integer). */
export async function resolveThreads(threads: number | undefined): Promise<number> {
  const want = threads ?? (await hardwareThreads());
  if (!Number.isInteger(want) || want < 1) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, `threads must be a positive integer, got ${String(threads)}`);
  }
  return want;
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

  u32(offset: number, n: number): Uint32Array {
    return new Uint32Array(this.memory.buffer, offset, n);
  }
}

interface PoolWorker {
  postMessage(m: unknown): void;
  terminate(): unknown;
}

const align = (n: number) => Math.ceil(n / 64) * 64;

/** Bump allocation inside one call's scratch region. */
class Scratch {
  private at = 0;
  readonly sizes: number[] = [];
  reserve(bytes: number): number {
    const o = this.at;
    this.at += align(bytes);
    return o;
  }
  get size(): number {
    return this.at;
  }
}

interface Placement {
  arena: number;
  offset: number;
}

/** The CPU engine on owlet's WebAssembly SIMD128 kernels: weights in arenas of WebAssembly memory, a worker pool for threads. */
export class WasmCpuEngine extends CpuEngine {
  readonly kind = 'wasm' as const;
  readonly isa = 'simd128';
  readonly threads: number;
  readonly note: string | undefined;
  readonly shared: boolean;
  private readonly module: WebAssembly.Module;
  readonly arenas: Arena[] = [];
  private readonly ctrl: Int32Array | null;
  private readonly workers: PoolWorker[] = [];
  private seq = 0;
  readonly allocator: WeightAllocator;

  private constructor(
    threads: number,
    note: string | undefined,
    shared: boolean,
    workers: PoolWorker[],
    ctrl: Int32Array | null,
    module: WebAssembly.Module,
  ) {
    super();
    this.threads = threads;
    this.note = note;
    this.shared = shared;
    this.workers = workers;
    this.ctrl = ctrl;
    this.module = module;
    const engine = this;
    this.allocator = {
      name: 'owlet-cpu-wasm',
      layout: 'x16',
      allocate(byteLength: number): WeightAllocation {
        const arena = engine.arenaFor(byteLength);
        const offset = arena.alloc(byteLength);
        arena.weightBytes += byteLength;
        let freed = false;
        return {
          bytes: new Uint8Array(arena.buffer, offset, byteLength),
          allocator: 'owlet-cpu-wasm',
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
  static async create(threads: number, note?: string): Promise<WasmCpuEngine> {
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
    const engine = new WasmCpuEngine(threads, note, shared, workers, live, module);
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
      kind: 'wasm',
      isa: this.isa,
      threads: this.threads,
      ...(this.note ? { note: this.note } : {}),
      weightBytes: this.arenas.reduce((n, a) => n + a.weightBytes, 0),
      arenas: this.arenas.length,
      sharedMemory: this.shared,
    };
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

  /** The arena for calls without a weight (the last one; created when none exists). */
  private workArena(): Arena {
    return this.arenas[this.arenas.length - 1] ?? this.arenaFor(0);
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

  private publish(op: number, arena: number, ntasks: number, args: readonly number[]): void {
    const ctrl = this.ctrl as Int32Array;
    this.seq = (this.seq + 1) & 0x7fff;
    ctrl[CTRL.OP] = op;
    ctrl[CTRL.ARENA] = arena;
    for (let i = 0; i < args.length; i++) ctrl[CTRL.ARGS + i] = args[i] as number;
    Atomics.store(ctrl, CTRL.DONE, 0);
    Atomics.store(ctrl, CTRL.LIMIT, (this.seq << 16) | ntasks);
    Atomics.store(ctrl, CTRL.CLAIM, this.seq << 16);
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
   * Runs `ntasks` tasks of a job (`task(i)` on this thread; the workers run the same decomposition,
   * worker-source.ts) and returns when all are done. Small jobs stay on this thread.
   */
  private run(op: number, arena: Arena, ntasks: number, args: number[], work: number): void {
    this.assertOpen();
    const k = arena.kernels;
    if (!this.ctrl || this.threads === 1 || ntasks < 2 || work < MIN_THREADED_WORK) {
      for (let t = 0; t < ntasks; t++) runTask(k, op, args, t, 0);
      return;
    }
    if (ntasks > MAX_TASKS) throw new OwletError(ErrorCode.INVALID_ARGUMENT, `a CPU engine job of ${ntasks} tasks`);
    this.publish(op, arena.index, ntasks, args);
    const ctrl = this.ctrl;
    const seq = this.seq;
    for (;;) {
      const c = Atomics.load(ctrl, CTRL.CLAIM);
      if (c >>> 16 !== seq || (c & 0xffff) >= ntasks) break;
      if (Atomics.compareExchange(ctrl, CTRL.CLAIM, c, c + 1) !== c) continue;
      runTask(k, op, args, c & 0xffff, 0);
      Atomics.add(ctrl, CTRL.DONE, 1);
    }
    this.waitFor(CTRL.DONE, ntasks);
  }

  private placement(w: PackedWeight): Placement {
    const loc = w.location as { engine?: unknown; arena?: number; offset?: number } | undefined;
    if (loc?.engine === this && loc.arena !== undefined && loc.offset !== undefined) {
      return { arena: loc.arena, offset: loc.offset };
    }
    // a weight made before the engine started (or by another engine): copied into an arena once
    const copy = w.prepared('owlet-cpu-wasm', (pw) => {
      const [out, k] = pw.shape;
      const n = x16ByteLength(pw.dtype, out, k);
      const a = this.allocator.allocate(n, 64);
      if (pw.layout === 'x16') a.bytes.set(pw.bytes);
      else convertX16(pw.dtype, out, k, pw.bytes, a.bytes, true);
      const l = a.location as Placement;
      return { arena: l.arena, offset: l.offset, engine: this, dispose: () => a.free() };
    });
    if (copy.engine !== this)
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'a packed weight was prepared by another CPU engine');
    return copy;
  }

  linear(w: PackedWeight, x: Float32Array, n: number, bias: Float32Array | null, y: Float32Array): void {
    this.assertOpen();
    const [out, k] = w.shape;
    const { arena: ai, offset: wo } = this.placement(w);
    const arena = this.arenas[ai] as Arena;
    const quantized = w.dtype === 'q8' || w.dtype === 'q4';
    const nb = k / 32;
    const s = new Scratch();
    const xo = s.reserve(n * k * 4);
    const qs = quantized ? s.reserve(n * k * 2) : 0;
    const qd = quantized ? s.reserve(n * nb * 4) : 0;
    const sx = quantized ? s.reserve(n * nb * 4) : 0;
    const yo = s.reserve(n * out * 4);
    const bo = bias ? s.reserve(out * 4) : 0;
    const base = arena.scratch(s.size);
    arena.f32(base + xo, n * k).set(x.subarray(0, n * k));
    if (bias) arena.f32(base + bo, out).set(bias);
    const groups = Math.ceil(out / X16_ROWS);
    // tasks: chunks of activation rows × chunks of row groups, several per thread
    const ichunk = Math.min(n, 64);
    const ti = Math.ceil(n / ichunk);
    let gchunk = 4;
    while (gchunk > 1 && ti * Math.ceil(groups / gchunk) < 4 * this.threads) gchunk >>= 1;
    const ntg = Math.ceil(groups / gchunk);
    const work = n * out * k;
    const b = bias ? base + bo : 0;
    switch (w.dtype) {
      case 'q4':
        arena.kernels.quantize_act(base + xo, n, k, base + qs, base + qd, base + sx);
        this.run(
          OP.GEMM_Q4,
          arena,
          ti * ntg,
          [wo, base + qs, base + qd, base + sx, n, k, base + yo, out, b, ichunk, gchunk, ntg],
          work,
        );
        break;
      case 'q8':
        arena.kernels.quantize_act(base + xo, n, k, base + qs, base + qd, base + sx);
        this.run(
          OP.GEMM_Q8,
          arena,
          ti * ntg,
          [wo, base + qs, base + qd, n, k, base + yo, out, b, ichunk, gchunk, ntg],
          work,
        );
        break;
      case 'fp32':
        this.run(OP.GEMM_F32, arena, ti * ntg, [wo, base + xo, n, k, base + yo, out, b, ichunk, gchunk, ntg], work);
        break;
      case 'fp16':
        this.run(OP.GEMM_F16, arena, ti * ntg, [wo, base + xo, n, k, base + yo, out, b, ichunk, gchunk, ntg], work);
        break;
    }
    y.set(arena.f32(base + yo, n * out));
  }

  private f32bits(v: number): number {
    const f = new Float32Array([v]);
    return new Int32Array(f.buffer)[0] as number;
  }

  /** Copies arrays into the work arena's scratch; returns their offsets (0 for null). */
  private stage(arena: Arena, inputs: (Float32Array | null)[], outputs: number[]): { ins: number[]; outs: number[] } {
    const s = new Scratch();
    const io = inputs.map((a) => (a ? s.reserve(a.length * 4) : -1));
    const oo = outputs.map((n) => s.reserve(n * 4));
    const base = arena.scratch(s.size);
    inputs.forEach((a, i) => {
      if (a) arena.f32(base + (io[i] as number), a.length).set(a);
    });
    return { ins: io.map((o) => (o < 0 ? 0 : base + o)), outs: oo.map((o) => base + o) };
  }

  private rowsJob(op: number, rows: number, d: number, args: (p: number) => number[], arena: Arena): void {
    const per = Math.max(1, Math.ceil(32768 / d));
    this.run(op, arena, Math.ceil(rows / per), args(per), rows * d * 8);
  }

  rmsNorm(x: Float32Array, w: Float32Array | null, y: Float32Array, rows: number, d: number, eps: number): void {
    this.assertOpen();
    const arena = this.workArena();
    const { ins, outs } = this.stage(arena, [x, w], [rows * d]);
    const [xo, wo] = ins as [number, number];
    const yo = outs[0] as number;
    this.rowsJob(OP.RMS_NORM, rows, d, (per) => [xo, wo, yo, rows, d, this.f32bits(eps), per], arena);
    y.set(arena.f32(yo, rows * d));
  }

  layerNorm(
    x: Float32Array,
    w: Float32Array | null,
    b: Float32Array | null,
    y: Float32Array,
    rows: number,
    d: number,
    eps: number,
  ): void {
    this.assertOpen();
    const arena = this.workArena();
    const { ins, outs } = this.stage(arena, [x, w, b], [rows * d]);
    const [xo, wo, bo] = ins as [number, number, number];
    const yo = outs[0] as number;
    this.rowsJob(OP.LAYER_NORM, rows, d, (per) => [xo, wo, bo, yo, rows, d, this.f32bits(eps), per], arena);
    y.set(arena.f32(yo, rows * d));
  }

  rope(
    x: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    y: Float32Array,
    b: number,
    h: number,
    l: number,
    d: number,
    bc: number,
  ): void {
    this.assertOpen();
    const arena = this.workArena();
    const rows = b * h * l;
    const { ins, outs } = this.stage(arena, [x, cos, sin], [rows * d]);
    const [xo, co, so] = ins as [number, number, number];
    const yo = outs[0] as number;
    this.rowsJob(OP.ROPE, rows, d, (per) => [xo, co, so, yo, rows, h, l, d, bc, per], arena);
    y.set(arena.f32(yo, rows * d));
  }

  private flat(op: number, inputs: Float32Array[], y: Float32Array): void {
    this.assertOpen();
    const arena = this.workArena();
    const n = y.length;
    const { ins, outs } = this.stage(arena, inputs, [n]);
    const per = 65536;
    this.run(op, arena, Math.ceil(n / per), [...ins, outs[0] as number, n, per], n * 16);
    y.set(arena.f32(outs[0] as number, n));
  }

  swiglu(g: Float32Array, u: Float32Array, y: Float32Array): void {
    this.flat(OP.SWIGLU, [g, u], y);
  }

  gelu(x: Float32Array, y: Float32Array): void {
    this.flat(OP.GELU, [x], y);
  }

  quickGelu(x: Float32Array, y: Float32Array): void {
    this.flat(OP.QUICK_GELU, [x], y);
  }

  attention(a: AttentionCall, out: Float32Array): void {
    this.assertOpen();
    const arena = this.workArena();
    const nseg = a.segments.length;
    const lens = a.segments.map((s) => s.k.length / (a.b * a.hkv * a.d));
    const lk = lens.reduce((x, y) => x + y, 0);
    const s = new Scratch();
    const qo = s.reserve(a.q.length * 4);
    const so = a.segments.map((sg) => [s.reserve(sg.k.length * 4), s.reserve(sg.v.length * 4)] as const);
    const mo = a.mask ? s.reserve(a.mask.length * 4) : -1;
    const oo = s.reserve(out.length * 4);
    const ao = s.reserve(18 * 4 + nseg * 12);
    const per = a.d * 64 + 64 + a.lq * (a.d + 2) + 16;
    const sco = s.reserve(per * 4 * this.threads);
    const base = arena.scratch(s.size);
    arena.f32(base + qo, a.q.length).set(a.q);
    a.segments.forEach((sg, i) => {
      const [ko, vo] = so[i] as readonly [number, number];
      arena.f32(base + ko, sg.k.length).set(sg.k);
      arena.f32(base + vo, sg.v.length).set(sg.v);
    });
    if (a.mask) arena.f32(base + mo, a.mask.length).set(a.mask);
    const args = arena.u32(base + ao, 18 + nseg * 3);
    const argsF = new Float32Array(args.buffer, args.byteOffset, 18);
    const kp = base + ao + 72;
    const vp = kp + nseg * 4;
    const lp = vp + nseg * 4;
    args.set([
      base + qo,
      base + oo,
      a.b,
      a.h,
      a.hkv,
      a.lq,
      a.d,
      nseg,
      kp,
      vp,
      lp,
      lk,
      a.causal ? 1 : 0,
      0,
      a.mask ? base + mo : 0,
      a.maskStrides[0],
      a.maskStrides[1],
      a.maskStrides[2],
    ]);
    argsF[13] = a.scale;
    a.segments.forEach((_, i) => {
      const [ko, vo] = so[i] as readonly [number, number];
      args[18 + i] = base + ko;
      args[18 + nseg + i] = base + vo;
      args[18 + 2 * nseg + i] = lens[i] as number;
    });
    this.run(OP.ATTENTION, arena, a.b * a.h, [base + ao, base + sco, per * 4], a.b * a.h * a.lq * lk * a.d * 2);
    out.set(arena.f32(base + oo, out.length));
  }

  /** Stops the workers. Weights already placed stay readable until disposed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ctrl) this.publish(OP.EXIT, 0, 0, []);
    for (const w of this.workers) w.terminate();
  }
}

/**
 * Runs task `t` of a job on one thread (`thread`: 0 the caller, i the i-th worker). The worker
 * source (worker-source.ts) decomposes jobs the same way.
 */
export function runTask(k: KernelExports, op: number, a: readonly number[], t: number, thread: number): void {
  const g = (i: number) => (a[i] as number) >>> 0;
  switch (op) {
    case OP.GEMM_Q4:
    case OP.GEMM_Q8:
    case OP.GEMM_F32:
    case OP.GEMM_F16: {
      const q4 = op === OP.GEMM_Q4 ? 1 : 0;
      const q = op === OP.GEMM_Q4 || op === OP.GEMM_Q8;
      // [w, (qs, qd, [sx]) | x, n, k, y, out, bias, ichunk, gchunk, ntg]
      const o = q ? 3 + q4 : 2;
      const n = g(o),
        kk = g(o + 1),
        y = g(o + 2),
        out = g(o + 3),
        bias = g(o + 4);
      const ichunk = g(o + 5),
        gchunk = g(o + 6),
        ntg = g(o + 7);
      const ti = Math.floor(t / ntg),
        tg = t % ntg;
      const groups = Math.ceil(out / 16);
      const i0 = ti * ichunk,
        i1 = Math.min(n, i0 + ichunk);
      const g0 = tg * gchunk,
        g1 = Math.min(groups, g0 + gchunk);
      if (i1 <= i0 || g1 <= g0) return;
      const yo = y + i0 * out * 4;
      if (op === OP.GEMM_Q4) {
        const nb = kk / 32;
        k.gemm_q4(g(0), g(1) + i0 * kk * 2, g(2) + i0 * nb * 4, g(3) + i0 * nb * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      } else if (op === OP.GEMM_Q8) {
        const nb = kk / 32;
        k.gemm_q8(g(0), g(1) + i0 * kk * 2, g(2) + i0 * nb * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      } else if (op === OP.GEMM_F32) {
        k.gemm_f32(g(0), g(1) + i0 * kk * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      } else {
        k.gemm_f16(g(0), g(1) + i0 * kk * 4, i1 - i0, kk, yo, out, g0, g1, bias);
      }
      return;
    }
    case OP.RMS_NORM: {
      const rows = g(3),
        per = g(6);
      const r0 = t * per;
      k.rms_norm(g(0), g(1), g(2), r0, Math.min(rows, r0 + per), g(4), f32(a[5] as number));
      return;
    }
    case OP.LAYER_NORM: {
      const rows = g(4),
        per = g(7);
      const r0 = t * per;
      k.layer_norm(g(0), g(1), g(2), g(3), r0, Math.min(rows, r0 + per), g(5), f32(a[6] as number));
      return;
    }
    case OP.ROPE: {
      const rows = g(4),
        per = g(9);
      const r0 = t * per;
      k.rope(g(0), g(1), g(2), g(3), r0, Math.min(rows, r0 + per), g(5), g(6), g(7), g(8));
      return;
    }
    case OP.SWIGLU: {
      const n = g(3),
        per = g(4);
      k.swiglu(g(0), g(1), g(2), t * per, Math.min(n, t * per + per));
      return;
    }
    case OP.GELU:
    case OP.QUICK_GELU: {
      const n = g(2),
        per = g(3);
      (op === OP.GELU ? k.gelu : k.quick_gelu)(g(0), g(1), t * per, Math.min(n, t * per + per));
      return;
    }
    case OP.ATTENTION:
      k.attention(g(0), t, g(1) + thread * g(2));
      return;
  }
}

const f32Cell = new Float32Array(1);
const i32Cell = new Int32Array(f32Cell.buffer);
function f32(bits: number): number {
  i32Cell[0] = bits;
  return f32Cell[0] as number;
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
