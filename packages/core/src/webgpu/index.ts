/**
 * owlet's WebGPU engine: WGSL kernels behind the ops seam, run through the tfjs WebGPU backend on
 * the GPUDevice owlet created, with packed (fp32 / fp16 / q8 / q4) Linear weights uploaded once
 * into GPU buffers.
 *
 * `enableWebGPUEngine()` registers, for the `webgpu` tfjs backend: `linear` for every weight dtype
 * (and for float32 `[out, in]` tensors), `rmsNorm`, `layerNorm`, `rope`, `attention`, `swiglu` and
 * `quickGelu`. A kernel declines (the composite runs) for inputs it does not handle: non-float32
 * tensors, a last dimension that is not a multiple of 4, tensors of another backend. While a
 * gradient tape records (training) the composites run, as for every non-differentiable kernel.
 * After the device is lost every kernel throws `OwletError(DEVICE_LOST)`.
 */
import * as tf from '@tensorflow/tfjs-core';

import { getWebGPUDevice, getWebGPUDeviceLost } from '../backend.js';
import { ErrorCode, OwletError, formatShape } from '../errors.js';
import type { Module } from '../module.js';
import type { KVSegment } from '../ops/attention.js';
import { type KernelArgs, type KernelOp, type KernelSpec, registerKernel } from '../ops/kernels.js';
import { PackedWeight, type WeightDType } from '../quant/packed.js';
import { runAttention } from './attention.js';
import { runLayerNorm, runQuickGelu, runRmsNorm, runRope, runSwiglu } from './elementwise.js';
import { type LinearWeightOperand, runLinear } from './linear.js';
import { webgpuBackend } from './program.js';
import { type GpuLinearWeight, uploadPackedWeight } from './weights.js';

export {
  GpuLinearWeight,
  chunkTensorBytes,
  gpuWeightBytes,
  planWeightChunks,
  rowsPerChunk,
  type GpuChunkPlan,
} from './weights.js';
export { GEMV_MAX_ROWS } from './linear.js';
export { segmentsPerPass } from './attention.js';

export interface WebGPUEngineOptions {
  /**
   * Largest GPU tensor a packed weight is split into, in bytes; default (and upper bound) the
   * device's `maxStorageBufferBindingSize`. Lower it to test splitting on a large device.
   */
  maxBindingBytes?: number;
}

export interface WebGPUEngineInfo {
  /** Names of the registered kernels (what `lastKernel(op)` reports). */
  kernels: string[];
  /** The binding limit packed weights are split at (bytes). */
  maxBindingBytes: number | null;
  /** Bytes of packed weights uploaded by the engine that are alive. */
  weightBytes: number;
  /** Number of packed weights uploaded and alive. */
  weights: number;
  /** Whether the device offers `shader-f16` (the kernels compute in float32 either way). */
  shaderF16: boolean;
  /** Calls each op's owned kernel computed since the engine was enabled (declined calls not counted). */
  runs: Partial<Record<KernelOp, number>>;
}

const ENGINE = 'owlet-webgpu';
let unregister: (() => void)[] = [];
let options: WebGPUEngineOptions = {};
let runs: Partial<Record<KernelOp, number>> = {};
let liveWeightBytes = 0;
let liveWeights = 0;
const backendIds = new WeakMap<object, number>();
let nextBackendId = 1;

function backendId(b: object): number {
  let id = backendIds.get(b);
  if (id === undefined) {
    id = nextBackendId++;
    backendIds.set(b, id);
  }
  return id;
}

/** The typed error of a lost device (kernels throw it; callers may too). */
export function webgpuDeviceLostError(cause?: unknown): OwletError {
  const lost = getWebGPUDeviceLost();
  return new OwletError(
    ErrorCode.DEVICE_LOST,
    `the WebGPU device was lost (${lost?.reason ?? 'unknown'}${lost?.message ? `: ${lost.message}` : ''}); dispose the model, then initBackend('webgpu') and load it again`,
    { details: { reason: lost?.reason ?? 'unknown', message: lost?.message ?? '' }, ...(cause ? { cause } : {}) },
  );
}

/**
 * After an operation failed on the webgpu backend: the typed `DEVICE_LOST` error when the failure
 * was the device going away, else null. A device destroyed or reset while a read was pending makes
 * the read reject (an `AbortError`, say) a moment before `device.lost` resolves, so this waits up to
 * `waitMs` for it. On other backends, or when the device is alive, null.
 */
export async function webgpuLossError(cause: unknown, waitMs = 100): Promise<OwletError | null> {
  if (cause instanceof OwletError && cause.code === ErrorCode.DEVICE_LOST) return cause;
  const device = getWebGPUDevice();
  if (!device) return null;
  // owlet's own typed errors (bad input, …) are not a device going away unless it is already gone
  if (cause instanceof OwletError && !getWebGPUDeviceLost()) return null;
  if (!getWebGPUDeviceLost()) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      device.lost,
      new Promise((r) => {
        timer = setTimeout(r, waitMs);
      }),
    ]);
    clearTimeout(timer);
    await Promise.resolve(); // backend.ts records the loss in its own then() on device.lost
  }
  return getWebGPUDeviceLost() ? webgpuDeviceLostError(cause) : null;
}

/** Throws `OwletError(DEVICE_LOST)` when the WebGPU device owlet created has been lost. */
export function checkWebGPUDevice(): void {
  if (getWebGPUDeviceLost()) throw webgpuDeviceLostError();
}

/** The binding size packed weights are split at. */
function maxBindingBytes(): number {
  const dev = webgpuBackend().device.limits.maxStorageBufferBindingSize;
  return Math.min(dev, options.maxBindingBytes ?? dev);
}

function tensorBackendOf(t: tf.Tensor): unknown {
  const info = (tf.engine() as unknown as { state: { tensorInfo: WeakMap<object, { backend: unknown }> } }).state
    .tensorInfo;
  return info.get(t.dataId)?.backend;
}

/** Usable by an owned kernel: float32, alive, held by the active webgpu backend. */
function usable(...ts: (tf.Tensor | null | undefined)[]): boolean {
  const b = tf.backend();
  for (const t of ts) {
    if (!t) continue;
    if (t.isDisposed || t.dtype !== 'float32' || tensorBackendOf(t) !== b) return false;
  }
  return true;
}

function preflight(): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  checkWebGPUDevice();
  return true;
}

function gpuWeight(w: PackedWeight): GpuLinearWeight {
  const key = `${ENGINE}@${backendId(tf.backend())}`;
  return w.prepared(key, (pw) => {
    const g = uploadPackedWeight(pw, maxBindingBytes());
    const bytes = g.byteLength;
    liveWeightBytes += bytes;
    liveWeights++;
    const dispose = g.dispose.bind(g);
    g.dispose = () => {
      if (!g.isDisposed) {
        liveWeightBytes -= bytes;
        liveWeights--;
      }
      dispose();
    };
    return g;
  });
}

function linearKernel(a: KernelArgs['linear']): tf.Tensor | null {
  if (!preflight() || !usable(a.x, a.bias)) return null;
  const inF = a.inFeatures;
  const n = a.x.size / inF;
  if (inF % 4 !== 0 || n === 0) return null;
  let operand: LinearWeightOperand;
  if (a.weight instanceof PackedWeight) {
    operand = gpuWeight(a.weight);
  } else {
    const w = a.weight;
    if (a.transposed || !usable(w) || w.size * 4 > maxBindingBytes()) return null;
    operand = { dtype: 'fp32', chunks: [{ rowStart: 0, rows: a.outFeatures, tensors: [w] }] };
  }
  return tf.tidy(() => {
    const x2 = a.x.rank === 2 ? a.x : tf.reshape(a.x, [n, inF]); // [..., in] -> [N, in]
    const y = runLinear(x2, operand, a.outFeatures, a.bias);
    return a.x.rank === 2 ? y : tf.reshape(y, [...a.x.shape.slice(0, -1), a.outFeatures]); // [N, out] -> [..., out]
  });
}

function rmsNormKernel(a: KernelArgs['rmsNorm']): tf.Tensor | null {
  if (!preflight() || !usable(a.x, a.weight) || a.x.size === 0) return null;
  return runRmsNorm(a.x, a.weight, a.eps);
}

function layerNormKernel(a: KernelArgs['layerNorm']): tf.Tensor | null {
  if (!preflight() || !usable(a.x, a.weight, a.bias) || a.x.size === 0) return null;
  return runLayerNorm(a.x, a.weight, a.bias, a.eps);
}

function ropeKernel(a: KernelArgs['rope']): tf.Tensor | null {
  if (!preflight() || !usable(a.x, a.tables.cos, a.tables.sin) || a.x.size === 0) return null;
  const tb = a.tables.cos.shape[0] as number;
  const ok =
    a.tables.cos.rank === 4 &&
    a.tables.sin.rank === 4 &&
    a.tables.cos.shape[1] === 1 &&
    (tb === 1 || tb === a.x.shape[0]) &&
    a.tables.sin.shape.every((s, i) => s === a.tables.cos.shape[i]);
  return ok ? runRope(a.x, a.tables) : null;
}

function broadcastsTo(shape: readonly number[], target: readonly number[]): boolean {
  if (shape.length > target.length) return false;
  const pad = target.length - shape.length;
  return shape.every((s, i) => s === 1 || s === target[i + pad]);
}

function attentionKernel(a: KernelArgs['attention']): tf.Tensor | null {
  if (!preflight()) return null;
  const { q, segments } = a;
  const mask = a.options.mask ?? null;
  if (!usable(q, mask) || !segments.every((s: KVSegment) => usable(s.k, s.v))) return null;
  const [b, h, lq, d] = q.shape as [number, number, number, number];
  if (d % 4 !== 0 || q.size === 0) return null;
  const lk = segments.reduce((n, s) => n + (s.k.shape[2] as number), 0);
  if (lk === 0) return null;
  if (mask && !broadcastsTo(mask.shape, [b, h, lq, lk])) return null;
  return runAttention(q, segments, a.options);
}

function swigluKernel(a: KernelArgs['swiglu']): tf.Tensor | null {
  if (!preflight() || !usable(a.gate, a.up) || a.gate.size === 0) return null;
  return runSwiglu(a.gate, a.up);
}

function quickGeluKernel(a: KernelArgs['quickGelu']): tf.Tensor | null {
  if (!preflight() || !usable(a.x) || a.x.size === 0) return null;
  return runQuickGelu(a.x);
}

/** Registers the engine's kernels for the `webgpu` backend (idempotent; options apply to new uploads). */
export function enableWebGPUEngine(opts: WebGPUEngineOptions = {}): WebGPUEngineInfo {
  if (opts.maxBindingBytes !== undefined && !(Number.isSafeInteger(opts.maxBindingBytes) && opts.maxBindingBytes > 0)) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `enableWebGPUEngine: maxBindingBytes must be a positive integer, got ${String(opts.maxBindingBytes)}`,
    );
  }
  options = { ...opts };
  if (unregister.length === 0) {
    const specs: KernelSpec[] = [
      ...(['fp32', 'fp16', 'q8', 'q4'] as WeightDType[]).map(
        (dtype): KernelSpec<'linear'> => ({
          op: 'linear',
          backend: 'webgpu',
          dtype,
          name: `${ENGINE}:${dtype}`,
          run: linearKernel,
        }),
      ),
      { op: 'rmsNorm', backend: 'webgpu', name: ENGINE, run: rmsNormKernel } as KernelSpec<'rmsNorm'>,
      { op: 'layerNorm', backend: 'webgpu', name: ENGINE, run: layerNormKernel } as KernelSpec<'layerNorm'>,
      { op: 'rope', backend: 'webgpu', name: ENGINE, run: ropeKernel } as KernelSpec<'rope'>,
      { op: 'attention', backend: 'webgpu', name: ENGINE, run: attentionKernel } as KernelSpec<'attention'>,
      { op: 'swiglu', backend: 'webgpu', name: ENGINE, run: swigluKernel } as KernelSpec<'swiglu'>,
      { op: 'quickGelu', backend: 'webgpu', name: ENGINE, run: quickGeluKernel } as KernelSpec<'quickGelu'>,
    ] as unknown as KernelSpec[];
    runs = {};
    unregister = specs.map((s) => {
      const run = s.run as (a: unknown) => tf.Tensor | null;
      return registerKernel({
        ...s,
        run: (a: unknown) => {
          const y = run(a);
          if (y !== null) runs[s.op] = (runs[s.op] ?? 0) + 1;
          return y;
        },
      } as KernelSpec);
    });
  }
  return webgpuEngineInfo() as WebGPUEngineInfo;
}

/** Unregisters the kernels (the composites run again). Uploaded weights are freed with their PackedWeight. */
export function disableWebGPUEngine(): void {
  for (const u of unregister) u();
  unregister = [];
  options = {};
}

export function webgpuEngineEnabled(): boolean {
  return unregister.length > 0;
}

/** What the engine runs with (null when it is not enabled). */
export function webgpuEngineInfo(): WebGPUEngineInfo | null {
  if (!webgpuEngineEnabled()) return null;
  const device = getWebGPUDevice();
  const limit = device ? device.limits.maxStorageBufferBindingSize : null;
  return {
    kernels: [
      ...(['fp32', 'fp16', 'q8', 'q4'] as const).map((d) => `${ENGINE}:${d}`),
      `${ENGINE} (rmsNorm, layerNorm, rope, attention, swiglu, quickGelu)`,
    ],
    maxBindingBytes: limit === null ? null : Math.min(limit, options.maxBindingBytes ?? limit),
    weightBytes: liveWeightBytes,
    weights: liveWeights,
    shaderF16: device?.features.has('shader-f16') ?? false,
    runs: { ...runs },
  };
}

export interface WebGPUUploadReport {
  /** GPU bytes of the packed weights (the engine's layout). */
  packedBytes: number;
  /** GPU bytes of the parameters kept as float32 tfjs tensors. */
  tensorBytes: number;
  packed: number;
  tensors: number;
  /** Host bytes of packed weights the GPU does not hold (lookup tables: embeddings). */
  hostBytes: number;
  /** Host bytes freed by `releaseHostBytes`. */
  releasedHostBytes: number;
}

/**
 * Uploads every weight of a module to the GPU now instead of on first use: packed weights in the
 * engine's layout, float32 tfjs parameters as they are. Checks first that every tensor fits one
 * storage binding (a typed `WEBGPU_LIMIT` error names the parameter and the limit; packed weights
 * are split instead), then watches the upload for out-of-memory (`WEBGPU_LIMIT` again, with the
 * bytes uploaded). Needs the engine enabled and the webgpu backend active.
 */
export interface UploadWebGPUWeightsOptions {
  /**
   * Free each packed weight's host bytes once its GPU copy is made (`PackedWeight.releaseHostBytes`),
   * so the model is not held twice (4 GB of host memory for the 7B in q4). Decoding those weights on
   * the host afterwards (the composite ops, `stateDict()`) throws `PACKED_HOST_RELEASED`.
   * Default false; `fromPretrained` passes true on the webgpu backend.
   */
  releaseHostBytes?: boolean;
}

export async function uploadWebGPUWeights(
  module: Module,
  options: UploadWebGPUWeightsOptions = {},
): Promise<WebGPUUploadReport> {
  if (tf.getBackend() !== 'webgpu' || !webgpuEngineEnabled()) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `uploadWebGPUWeights needs the webgpu backend and the engine enabled (backend ${tf.getBackend()}, engine ${webgpuEngineEnabled() ? 'on' : 'off'})`,
    );
  }
  checkWebGPUDevice();
  const backend = webgpuBackend();
  const limit = maxBindingBytes();
  const tooBig: string[] = [];
  for (const [key, p] of module.namedParameters()) {
    if (p.packed || !p.isMaterialized) continue;
    const bytes = p.size * 4;
    if (bytes > limit) tooBig.push(`${key} ${formatShape(p.shape)} is ${bytes} bytes`);
  }
  if (tooBig.length > 0) {
    throw new OwletError(
      ErrorCode.WEBGPU_LIMIT,
      `${tooBig.length} float32 parameter(s) exceed this device's maxStorageBufferBindingSize of ${limit} bytes: ${tooBig.slice(0, 5).join('; ')}${tooBig.length > 5 ? '; …' : ''}. Store them packed (a dtype for their group) or use a device with a larger limit`,
      { details: { maxStorageBufferBindingSize: limit, parameters: tooBig } },
    );
  }
  const report: WebGPUUploadReport = {
    packedBytes: 0,
    tensorBytes: 0,
    packed: 0,
    tensors: 0,
    hostBytes: 0,
    releasedHostBytes: 0,
  };
  const device = backend.device;
  device.pushErrorScope('out-of-memory');
  let popped = false;
  // an upload into a reused buffer goes through a staging buffer that tfjs frees when it submits:
  // submit every 64 MiB so a large model never holds its weights twice
  const flushable = backend as unknown as { ensureCommandEncoderReady(): void; submitQueue(): void };
  let sinceFlush = 0;
  const flush = (bytes: number) => {
    sinceFlush += bytes;
    if (sinceFlush < 64 * 2 ** 20) return;
    flushable.ensureCommandEncoderReady();
    flushable.submitQueue();
    sinceFlush = 0;
  };
  try {
    for (const [, p] of module.namedParameters()) {
      if (p.packed && p.rowTable) {
        // a packed lookup table is read on the host, row by row: nothing on the GPU
        report.hostBytes += p.packed.byteLength;
      } else if (p.packed && p.packed.shape[1] % 4 !== 0) {
        // rows the kernels do not take (an odd input width): stays on the host for the composite
        report.hostBytes += p.packed.byteLength;
      } else if (p.packed) {
        const g = gpuWeight(p.packed);
        for (const c of g.chunks) for (const t of c.tensors) backend.uploadToGPU(t.dataId);
        report.packedBytes += g.byteLength;
        report.packed++;
        flush(g.byteLength);
      } else if (p.isMaterialized) {
        backend.uploadToGPU(p.value.dataId);
        report.tensorBytes += p.size * 4;
        report.tensors++;
        flush(p.size * 4);
      }
    }
    flushable.ensureCommandEncoderReady();
    flushable.submitQueue();
    popped = true;
    const err = await device.popErrorScope();
    if (err) {
      throw new OwletError(
        ErrorCode.WEBGPU_LIMIT,
        `the GPU ran out of memory uploading the weights (${report.packedBytes + report.tensorBytes} bytes so far): ${err.message}`,
        { details: { ...report } },
      );
    }
  } catch (e) {
    throw (await webgpuLossError(e, 0)) ?? e;
  } finally {
    if (!popped) void device.popErrorScope().catch(() => {});
  }
  // a device lost during the upload fails the load, not the first token
  const lost = await webgpuLossError(null, 0);
  if (lost) throw lost;
  if (options.releaseHostBytes) {
    for (const p of module.parameters()) {
      if (p.packed && !p.rowTable && !p.packed.isHostReleased && p.packed.shape[1] % 4 === 0) {
        p.packed.releaseHostBytes();
        report.releasedHostBytes += p.packed.byteLength;
      }
    }
  }
  return report;
}
