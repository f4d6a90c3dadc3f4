/**
 * `enableCpuEngine({ threads, kernels })`: starts the owned CPU engine — the native add-on when it
 * is built (Node), else the WebAssembly SIMD kernels — makes it the allocator of new packed weights
 * (so they live in its memories, outside the tfjs heap, in its x16 layout) and registers its
 * kernels on the `cpu` and `wasm` tfjs backends for every hot seam op: `linear` (fp32 / fp16 / q8 /
 * q4 packed weights), `rmsNorm`, `layerNorm`, `rope`, `attention` (over K/V cache segments, online
 * softmax: no [H, Lq, Lk] scores), `swiglu`, `gelu`, `quickGelu`.
 *
 * Activations for q8 / q4 products are quantized per 32-value block to int16 with one float32 scale
 * (finer than llama.cpp's int8 activations); the products accumulate exactly in int32 per block
 * and in float32 across blocks, in the same order in every engine.
 */
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { type KernelArgs, type KernelOp, registerKernel } from '../ops/kernels.js';
import { PackedWeight, getWeightAllocator, setWeightAllocator, type WeightAllocator } from '../quant/packed.js';
import {
  type AttentionCall,
  type CpuEngine,
  type CpuEngineInfo,
  type CpuEngineOptions,
  WasmCpuEngine,
  resolveThreads,
} from './engine.js';
import { NativeCpuEngine, loadNativeAddon } from './native.js';

export {
  CpuEngine,
  WasmCpuEngine,
  hardwareThreads,
  type CpuEngineInfo,
  type CpuEngineOptions,
} from './engine.js';
export { NativeCpuEngine, loadNativeAddon } from './native.js';
export { X16_ROWS, convertX16, x16ByteLength, x16GroupBytes } from './layout.js';

/** The backends whose tensors live in host memory, where the engine's kernels apply. */
export const CPU_ENGINE_BACKENDS: readonly string[] = Object.freeze(['cpu', 'wasm']);

/** The seam ops the engine registers kernels for. */
export const CPU_ENGINE_OPS: readonly KernelOp[] = Object.freeze([
  'linear',
  'rmsNorm',
  'layerNorm',
  'rope',
  'attention',
  'swiglu',
  'gelu',
  'quickGelu',
]);

let engine: CpuEngine | null = null;
let starting: Promise<CpuEngine> | null = null;
let unregister: (() => void)[] = [];
let previousAllocator: WeightAllocator | null = null;

/** A float32 tensor's values (on the `cpu` backend its own array: no copy; read only). */
function values(t: tf.Tensor): Float32Array {
  return t.dataSync() as Float32Array;
}

const isF32 = (t: tf.Tensor | null | undefined) => !t || t.dtype === 'float32';

function linearKernel(e: CpuEngine, a: KernelArgs['linear']): tf.Tensor | null {
  const w = a.weight;
  if (!(w instanceof PackedWeight) || a.x.dtype !== 'float32' || !isF32(a.bias) || e.isClosed) return null;
  const n = a.x.size / a.inFeatures;
  if (n === 0) return null;
  const y = new Float32Array(n * a.outFeatures);
  e.linear(w, values(a.x), n, a.bias ? values(a.bias) : null, y);
  return tf.tensor(y, [...a.x.shape.slice(0, -1), a.outFeatures], 'float32');
}

function rmsNormKernel(e: CpuEngine, a: KernelArgs['rmsNorm']): tf.Tensor | null {
  if (!isF32(a.x) || !isF32(a.weight) || a.x.size === 0 || e.isClosed) return null;
  const d = a.x.shape[a.x.rank - 1] as number;
  const y = new Float32Array(a.x.size);
  e.rmsNorm(values(a.x), a.weight ? values(a.weight) : null, y, a.x.size / d, d, a.eps);
  return tf.tensor(y, a.x.shape, 'float32');
}

function layerNormKernel(e: CpuEngine, a: KernelArgs['layerNorm']): tf.Tensor | null {
  if (!isF32(a.x) || !isF32(a.weight) || !isF32(a.bias) || a.x.size === 0 || e.isClosed) return null;
  const d = a.x.shape[a.x.rank - 1] as number;
  const y = new Float32Array(a.x.size);
  e.layerNorm(
    values(a.x),
    a.weight ? values(a.weight) : null,
    a.bias ? values(a.bias) : null,
    y,
    a.x.size / d,
    d,
    a.eps,
  );
  return tf.tensor(y, a.x.shape, 'float32');
}

function ropeKernel(e: CpuEngine, a: KernelArgs['rope']): tf.Tensor | null {
  const { x, tables } = a;
  if (!isF32(x) || !isF32(tables.cos) || !isF32(tables.sin) || x.size === 0 || e.isClosed) return null;
  const [b, h, l, d] = x.shape as [number, number, number, number];
  const c = tables.cos.shape;
  // tables [Bc, 1, L, D] with Bc = 1 or B (what ropeTables makes); anything else: the composite
  if (c.length !== 4 || c[1] !== 1 || c[2] !== l || c[3] !== d || (c[0] !== 1 && c[0] !== b)) return null;
  if (tables.sin.shape.some((s, i) => s !== c[i]) || d % 2 !== 0) return null;
  const y = new Float32Array(x.size);
  e.rope(values(x), values(tables.cos), values(tables.sin), y, b, h, l, d, c[0] as number);
  return tf.tensor(y, x.shape, 'float32');
}

function attentionKernel(e: CpuEngine, a: KernelArgs['attention']): tf.Tensor | null {
  const { q, segments, options } = a;
  if (!isF32(q) || e.isClosed || q.size === 0) return null;
  if (segments.some((s) => !isF32(s.k) || !isF32(s.v) || s.k.size === 0)) return null;
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  const hkv = segments[0]?.k.shape[1] as number;
  const lk = segments.reduce((n, s) => n + (s.k.shape[2] as number), 0);
  let mask: Float32Array | null = null;
  let strides: [number, number, number] = [0, 0, 0];
  if (options.mask) {
    const m = options.mask;
    if (!isF32(m) || m.rank > 4) return null;
    const s = [...Array(4 - m.rank).fill(1), ...m.shape] as [number, number, number, number];
    // broadcastable to [B, H, Lq, Lk] with the key axis whole: strides over (b, h, i)
    if (s[3] !== lk || (s[0] !== 1 && s[0] !== b) || (s[1] !== 1 && s[1] !== h) || (s[2] !== 1 && s[2] !== lq))
      return null;
    strides = [s[0] === 1 ? 0 : s[1] * s[2] * lk, s[1] === 1 ? 0 : s[2] * lk, s[2] === 1 ? 0 : lk];
    mask = values(m);
  }
  const call: AttentionCall = {
    q: values(q),
    segments: segments.map((s) => ({ k: values(s.k), v: values(s.v) })),
    b,
    h,
    hkv,
    lq,
    d,
    scale: options.scale,
    causal: options.causal === true,
    mask,
    maskStrides: strides,
  };
  const out = new Float32Array(q.size);
  e.attention(call, out);
  return tf.tensor(out, q.shape, 'float32');
}

function unaryKernel(e: CpuEngine, x: tf.Tensor, f: (x: Float32Array, y: Float32Array) => void): tf.Tensor | null {
  if (!isF32(x) || x.size === 0 || e.isClosed) return null;
  const y = new Float32Array(x.size);
  f(values(x), y);
  return tf.tensor(y, x.shape, 'float32');
}

/** [B, L, H·P·Dh] → P × [B, H, L, Dh] by row copies (tfjs-cpu's generic transpose is ~100 ns a value). */
function splitHeadsKernel(a: KernelArgs['splitHeads']): tf.Tensor[] | null {
  const { x, heads: h, parts: p } = a;
  if (!isF32(x)) return null;
  const [b, l, d] = x.shape as [number, number, number];
  const dh = d / (h * p);
  if (p === 1 && l === 1) return [tf.reshape(x, [b, h, 1, dh])]; // the same memory order
  const src = values(x);
  const outs = Array.from({ length: p }, () => new Float32Array(b * h * l * dh));
  for (let bi = 0; bi < b; bi++)
    for (let li = 0; li < l; li++)
      for (let hi = 0; hi < h; hi++) {
        const from = ((bi * l + li) * h + hi) * p * dh;
        const to = ((bi * h + hi) * l + li) * dh;
        for (let pi = 0; pi < p; pi++)
          (outs[pi] as Float32Array).set(src.subarray(from + pi * dh, from + (pi + 1) * dh), to);
      }
  return outs.map((o) => tf.tensor(o, [b, h, l, dh], 'float32'));
}

function mergeHeadsKernel(a: KernelArgs['mergeHeads']): tf.Tensor | null {
  const { x } = a;
  if (!isF32(x)) return null;
  const [b, h, l, dh] = x.shape as [number, number, number, number];
  if (l === 1) return tf.reshape(x, [b, 1, h * dh]);
  const src = values(x);
  const out = new Float32Array(x.size);
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++)
      for (let li = 0; li < l; li++) {
        const from = ((bi * h + hi) * l + li) * dh;
        out.set(src.subarray(from, from + dh), ((bi * l + li) * h + hi) * dh);
      }
  return tf.tensor(out, [b, l, h * dh], 'float32');
}

function register(e: CpuEngine): void {
  const name = `owlet-cpu-${e.kind}`;
  // head split/merge as row copies: on tfjs-cpu only (tfjs-wasm's transpose is native code)
  unregister.push(
    registerKernel({ op: 'splitHeads', backend: 'cpu', name: 'owlet-cpu-js', run: splitHeadsKernel }),
    registerKernel({ op: 'mergeHeads', backend: 'cpu', name: 'owlet-cpu-js', run: mergeHeadsKernel }),
  );
  for (const backend of CPU_ENGINE_BACKENDS) {
    for (const dtype of ['fp32', 'fp16', 'q8', 'q4'] as const) {
      unregister.push(
        registerKernel({ op: 'linear', backend, dtype, name: `${name}:${dtype}`, run: (a) => linearKernel(e, a) }),
      );
    }
    unregister.push(
      registerKernel({ op: 'rmsNorm', backend, name, run: (a) => rmsNormKernel(e, a) }),
      registerKernel({ op: 'layerNorm', backend, name, run: (a) => layerNormKernel(e, a) }),
      registerKernel({ op: 'rope', backend, name, run: (a) => ropeKernel(e, a) }),
      registerKernel({ op: 'attention', backend, name, run: (a) => attentionKernel(e, a) }),
      registerKernel({
        op: 'swiglu',
        backend,
        name,
        run: (a) =>
          !isF32(a.gate) || !isF32(a.up) ? null : unaryKernel(e, a.gate, (g, y) => e.swiglu(g, values(a.up), y)),
      }),
      registerKernel({ op: 'gelu', backend, name, run: (a) => unaryKernel(e, a.x, (x, y) => e.gelu(x, y)) }),
      registerKernel({
        op: 'quickGelu',
        backend,
        name,
        run: (a) => unaryKernel(e, a.x, (x, y) => e.quickGelu(x, y)),
      }),
    );
  }
}

async function createEngine(options: CpuEngineOptions): Promise<CpuEngine> {
  const threads = await resolveThreads(options.threads);
  const want = options.kernels ?? 'auto';
  if (want !== 'auto' && want !== 'wasm' && want !== 'native') {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `kernels must be 'auto', 'wasm' or 'native', got ${JSON.stringify(want)}`,
    );
  }
  if (want !== 'wasm') {
    const { addon, why } = await loadNativeAddon();
    if (addon) return new NativeCpuEngine(addon, threads);
    if (want === 'native') {
      throw new OwletError('CPU_ENGINE_UNAVAILABLE', `kernels: 'native' was asked for, but ${why}`, {
        details: { why },
      });
    }
    return WasmCpuEngine.create(threads, undefined);
  }
  return WasmCpuEngine.create(threads, undefined);
}

/**
 * Starts the CPU engine (once; later calls return the running engine, or throw if `threads` or
 * `kernels` differ) and registers its kernels. Packed weights created from now on live in its
 * memories.
 */
export async function enableCpuEngine(options: CpuEngineOptions = {}): Promise<CpuEngine> {
  if (engine && !engine.isClosed) {
    if (options.threads !== undefined && options.threads !== engine.threads && !engine.note) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `the CPU engine already runs with ${engine.threads} thread(s); call disableCpuEngine() before asking for ${options.threads}`,
      );
    }
    if (options.kernels !== undefined && options.kernels !== 'auto' && options.kernels !== engine.kind) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `the CPU engine already runs its ${engine.kind} kernels; call disableCpuEngine() before asking for ${options.kernels}`,
      );
    }
    return engine;
  }
  if (starting) return starting;
  starting = (async () => {
    const e = await createEngine(options);
    engine = e;
    previousAllocator = setWeightAllocator(e.allocator);
    register(e);
    return e;
  })();
  try {
    return await starting;
  } finally {
    starting = null;
  }
}

/** The running CPU engine, if any. */
export function getCpuEngine(): CpuEngine | null {
  return engine && !engine.isClosed ? engine : null;
}

/** What the CPU engine runs with (null when it is not running). */
export function cpuEngineInfo(): CpuEngineInfo | null {
  return getCpuEngine()?.info() ?? null;
}

/**
 * Unregisters the kernels and stops the worker threads. Weights already in the engine's memories
 * stay usable (through the composite path) until they are disposed.
 */
export function disableCpuEngine(): void {
  for (const u of unregister) u();
  unregister = [];
  if (engine && getWeightAllocator() === engine.allocator) setWeightAllocator(previousAllocator);
  engine?.close();
  engine = null;
}
