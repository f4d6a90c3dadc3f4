/**
 * `enableCpuEngine({ threads })`: starts the owned CPU engine, makes it the allocator of new packed
 * weights (so they live in its WebAssembly memories, outside the tfjs heap) and registers its
 * kernels on the `cpu` and `wasm` tfjs backends: `linear` for fp32 / fp16 / q8 / q4 packed weights.
 * Activations for q8 / q4 are quantized per 32-value block to int16 with one float32 scale (finer
 * than llama.cpp's int8 activations, same instruction count), the products accumulate exactly in
 * int32 per block and in float32 across blocks.
 */
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from '../errors.js';
import { registerKernel, type KernelArgs } from '../ops/kernels.js';
import { PackedWeight, getWeightAllocator, setWeightAllocator, type WeightAllocator } from '../quant/packed.js';
import { type Arena, CpuEngine, type CpuEngineInfo, type CpuEngineOptions, OP } from './engine.js';

export { CpuEngine, hardwareThreads, type CpuEngineInfo, type CpuEngineOptions } from './engine.js';

/** The backends whose tensors live in host memory, where the engine's kernels apply. */
export const CPU_ENGINE_BACKENDS: readonly string[] = Object.freeze(['cpu', 'wasm']);

let engine: CpuEngine | null = null;
let starting: Promise<CpuEngine> | null = null;
let unregister: (() => void)[] = [];
let previousAllocator: WeightAllocator | null = null;

interface Placement {
  arena: number;
  offset: number;
}

function placement(e: CpuEngine, w: PackedWeight): Placement {
  const loc = w.location as { engine?: CpuEngine; arena?: number; offset?: number } | undefined;
  if (loc?.engine === e && loc.arena !== undefined && loc.offset !== undefined) {
    return { arena: loc.arena, offset: loc.offset };
  }
  // a weight made before the engine started (or by another engine): copied into an arena once
  const copy = w.prepared('owlet-cpu', (pw) => {
    const a = e.allocator.allocate(pw.byteLength, 64);
    a.bytes.set(pw.bytes);
    const l = a.location as Placement;
    return { arena: l.arena, offset: l.offset, engine: e, dispose: () => a.free() };
  });
  if (copy.engine !== e)
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'a packed weight was prepared by another CPU engine');
  return copy;
}

const align = (n: number) => Math.ceil(n / 64) * 64;

function linearKernel(e: CpuEngine, a: KernelArgs['linear']): tf.Tensor | null {
  const w = a.weight;
  if (!(w instanceof PackedWeight) || a.x.dtype !== 'float32' || e.isClosed) return null;
  const k = a.inFeatures;
  const out = a.outFeatures;
  const n = a.x.size / k;
  if (n === 0) return null;
  const { arena: ai, offset: wo } = placement(e, w);
  const arena = e.arenas[ai] as Arena;
  const quantized = w.dtype === 'q8' || w.dtype === 'q4';
  const nb = k / 32;
  const xBytes = align(n * k * 4);
  const qdBytes = quantized ? align(n * nb * 4) : 0;
  const qsBytes = quantized ? align(n * k * 2) : 0;
  const yBytes = align(n * out * 4);
  const bBytes = a.bias ? align(out * 4) : 0;
  const base = arena.scratch(xBytes + qdBytes + qsBytes + yBytes + bBytes);
  const xo = base;
  const qd = xo + xBytes;
  const qs = qd + qdBytes;
  const yo = qs + qsBytes;
  const bo = a.bias ? yo + yBytes : 0;
  arena.f32(xo, n * k).set(a.x.dataSync() as Float32Array);
  if (a.bias) arena.f32(bo, out).set(a.bias.dataSync() as Float32Array);
  const kern = arena.kernels;
  switch (w.dtype) {
    case 'q4':
      kern.quantize_q16(xo, n, k, qd, qs);
      e.run(OP.GEMM_Q4, arena, out, [wo, qd, qs, n, k, yo, out, bo], out * k);
      break;
    case 'q8':
      kern.quantize_q16(xo, n, k, qd, qs);
      e.run(OP.GEMM_Q8, arena, out, [wo, qd, qs, n, k, yo, out, bo], out * k);
      break;
    case 'fp32':
      e.run(OP.GEMM_F32, arena, out, [wo, xo, n, k, yo, out, bo], out * k);
      break;
    case 'fp16':
      e.run(OP.GEMM_F16, arena, out, [wo, xo, n, k, yo, out, bo], out * k);
      break;
  }
  const y = arena.f32(yo, n * out).slice();
  return tf.tensor(y, [...a.x.shape.slice(0, -1), out], 'float32');
}

/**
 * Starts the CPU engine (once; later calls return the running engine, or throw if `threads`
 * differs) and registers its kernels. Packed weights created from now on live in its memories.
 */
export async function enableCpuEngine(options: CpuEngineOptions = {}): Promise<CpuEngine> {
  if (engine && !engine.isClosed) {
    if (options.threads !== undefined && options.threads !== engine.threads && !engine.note) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `the CPU engine already runs with ${engine.threads} thread(s); call disableCpuEngine() before asking for ${options.threads}`,
      );
    }
    return engine;
  }
  if (starting) return starting;
  starting = (async () => {
    const e = await CpuEngine.create(options);
    engine = e;
    previousAllocator = setWeightAllocator(e.allocator);
    for (const backend of CPU_ENGINE_BACKENDS) {
      for (const dtype of ['fp32', 'fp16', 'q8', 'q4'] as const) {
        unregister.push(
          registerKernel({
            op: 'linear',
            backend,
            dtype,
            name: `owlet-cpu:${dtype}`,
            run: (a) => linearKernel(e, a),
          }),
        );
      }
    }
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
