import { ErrorCode, OwletError } from '../errors.js';
import type { PackedWeight, WeightAllocation, WeightAllocator, WeightDType } from '../quant/packed.js';
import { type AttentionCall, CpuEngine, type CpuEngineInfo, WEIGHT_DTYPE_CODE } from './engine.js';
import { convertX16, x16ByteLength } from './layout.js';

/** The add-on's exports (see native/addon.cc). */
export interface NativeAddon {
  info(): { isa: string; threads: number };
  setThreads(n: number): void;
  linear(
    dtype: number,
    w: Uint8Array,
    x: Float32Array,
    n: number,
    k: number,
    out: number,
    y: Float32Array,
    bias: Float32Array | null,
  ): void;
  /** mode 0: float rows → x16 (quantizing); 1: canonical bytes → x16; 2: x16 → canonical bytes. */
  pack(mode: number, dtype: number, src: Float32Array | Uint8Array, out: number, k: number, dst: Uint8Array): void;
  rmsNorm(x: Float32Array, w: Float32Array | null, y: Float32Array, rows: number, d: number, eps: number): void;
  layerNorm(
    x: Float32Array,
    w: Float32Array | null,
    b: Float32Array | null,
    y: Float32Array,
    rows: number,
    d: number,
    eps: number,
  ): void;
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
  ): void;
  swiglu(g: Float32Array, u: Float32Array, y: Float32Array): void;
  gelu(x: Float32Array, y: Float32Array): void;
  quickGelu(x: Float32Array, y: Float32Array): void;
  attention(
    q: Float32Array,
    ks: Float32Array[],
    vs: Float32Array[],
    out: Float32Array,
    b: number,
    h: number,
    hkv: number,
    lq: number,
    d: number,
    scale: number,
    causal: boolean,
    mask: Float32Array | null,
    ms0: number,
    ms1: number,
    ms2: number,
  ): void;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

let loaded: Promise<{ addon: NativeAddon | null; why: string }> | null = null;

/**
 * Loads the add-on once (Node only). Looks for `native/build/owlet_cpu.node` next to this package
 * (from `src/` or `dist/`), or at `OWLET_NATIVE_PATH`. `OWLET_NATIVE=0` turns it off.
 */
export function loadNativeAddon(): Promise<{ addon: NativeAddon | null; why: string }> {
  if (!loaded) {
    loaded = (async () => {
      if (!isNode) return { addon: null, why: 'not Node' };
      if (process.env.OWLET_NATIVE === '0') return { addon: null, why: 'OWLET_NATIVE=0' };
      try {
        const { createRequire } = (await import(/* @vite-ignore */ 'node:module')) as unknown as {
          createRequire(p: string): (id: string) => unknown;
        };
        const { existsSync } = (await import(/* @vite-ignore */ 'node:fs')) as typeof import('node:fs');
        const { fileURLToPath } = (await import(/* @vite-ignore */ 'node:url')) as typeof import('node:url');
        const candidates = [
          process.env.OWLET_NATIVE_PATH,
          fileURLToPath(new URL('../native/build/owlet_cpu.node', import.meta.url)), // dist/index.js
          fileURLToPath(new URL('../../native/build/owlet_cpu.node', import.meta.url)), // src/cpu/native.ts
        ].filter((p): p is string => typeof p === 'string' && p !== '');
        const path = candidates.find((p) => existsSync(p));
        if (!path)
          return { addon: null, why: 'the native add-on is not built (node packages/core/scripts/build-native.mjs)' };
        const addon = createRequire(import.meta.url)(path) as NativeAddon;
        addon.info();
        return { addon, why: '' };
      } catch (e) {
        return { addon: null, why: `the native add-on did not load: ${(e as Error).message.split('\n')[0]}` };
      }
    })();
  }
  return loaded;
}

interface Prepared {
  bytes: Uint8Array;
  engine: NativeCpuEngine;
  dispose(): void;
}

/**
 * The optional native accelerator: a Node-API add-on (`native/*.cc`, built from source by
 * `scripts/build-native.mjs` when a C++ compiler exists) with AVX-512 / AVX2 / portable kernels,
 * chosen at run time from what the CPU reports, and its own thread pool. It reads and writes
 * typed arrays in place (on the tfjs `cpu` backend the tensors' own arrays: no copies). When it is
 * not built, does not load, or `OWLET_NATIVE=0` is set, the CPU engine runs its WASM kernels,
 * which compute the same numbers (q8 / q4 bit-identical; fp32 / fp16 within float32 rounding).
 */
export class NativeCpuEngine extends CpuEngine {
  readonly kind = 'native' as const;
  readonly isa: string;
  readonly threads: number;
  readonly note: string | undefined;
  readonly allocator: WeightAllocator;
  private readonly addon: NativeAddon;
  private placed = 0;

  constructor(addon: NativeAddon, threads: number, note?: string) {
    super();
    this.addon = addon;
    addon.setThreads(threads);
    const i = addon.info();
    this.isa = i.isa;
    this.threads = i.threads;
    this.note = note;
    const engine = this;
    this.allocator = {
      name: 'owlet-cpu-native',
      layout: 'x16',
      allocate(byteLength: number): WeightAllocation {
        engine.assertOpen();
        engine.placed += byteLength;
        let freed = false;
        return {
          bytes: new Uint8Array(byteLength),
          allocator: 'owlet-cpu-native',
          location: { engine },
          free() {
            if (freed) return;
            freed = true;
            engine.placed -= byteLength;
          },
        };
      },
      encode(dtype: WeightDType, values: Float32Array, out: number, k: number, dst: Uint8Array): void {
        addon.pack(0, WEIGHT_DTYPE_CODE[dtype], values, out, k, dst);
      },
      convert(dtype: WeightDType, out: number, k: number, src: Uint8Array, dst: Uint8Array, toX16: boolean): void {
        addon.pack(toX16 ? 1 : 2, WEIGHT_DTYPE_CODE[dtype], src, out, k, dst);
      },
    };
  }

  info(): CpuEngineInfo {
    return {
      kind: 'native',
      isa: this.isa,
      threads: this.threads,
      ...(this.note ? { note: this.note } : {}),
      weightBytes: this.placed,
    };
  }

  private weightBytesOf(w: PackedWeight): Uint8Array {
    // x16 bytes in an ordinary ArrayBuffer (this engine's allocations, or an earlier native engine's)
    if (w.layout === 'x16' && !(w.bytes.buffer instanceof SharedArrayBuffer)) return w.bytes;
    const p = w.prepared<Prepared>('owlet-cpu-native', (pw) => {
      const [out, k] = pw.shape;
      const a = this.allocator.allocate(x16ByteLength(pw.dtype, out, k), 64);
      if (pw.layout === 'x16') a.bytes.set(pw.bytes);
      else convertX16(pw.dtype, out, k, pw.bytes, a.bytes, true);
      return { bytes: a.bytes, engine: this, dispose: () => a.free() };
    });
    if (p.engine !== this)
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'a packed weight was prepared by another CPU engine');
    return p.bytes;
  }

  linear(w: PackedWeight, x: Float32Array, n: number, bias: Float32Array | null, y: Float32Array): void {
    this.assertOpen();
    const [out, k] = w.shape;
    this.addon.linear(WEIGHT_DTYPE_CODE[w.dtype], this.weightBytesOf(w), x, n, k, out, y, bias);
  }

  rmsNorm(x: Float32Array, w: Float32Array | null, y: Float32Array, rows: number, d: number, eps: number): void {
    this.assertOpen();
    this.addon.rmsNorm(x, w, y, rows, d, eps);
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
    this.addon.layerNorm(x, w, b, y, rows, d, eps);
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
    this.addon.rope(x, cos, sin, y, b, h, l, d, bc);
  }

  swiglu(g: Float32Array, u: Float32Array, y: Float32Array): void {
    this.assertOpen();
    this.addon.swiglu(g, u, y);
  }

  gelu(x: Float32Array, y: Float32Array): void {
    this.assertOpen();
    this.addon.gelu(x, y);
  }

  quickGelu(x: Float32Array, y: Float32Array): void {
    this.assertOpen();
    this.addon.quickGelu(x, y);
  }

  attention(a: AttentionCall, out: Float32Array): void {
    this.assertOpen();
    this.addon.attention(
      a.q,
      a.segments.map((s) => s.k),
      a.segments.map((s) => s.v),
      out,
      a.b,
      a.h,
      a.hkv,
      a.lq,
      a.d,
      a.scale,
      a.causal,
      a.mask,
      a.maskStrides[0],
      a.maskStrides[1],
      a.maskStrides[2],
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // the pool's threads stop with the add-on instance; keep one so nothing spins
    this.addon.setThreads(1);
  }
}
