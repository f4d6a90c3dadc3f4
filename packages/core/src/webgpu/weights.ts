/**
 * Linear weights in GPU buffers, in the layout owlet's WGSL kernels read.
 *
 * A `PackedWeight` keeps the canonical GGUF bytes on the host; the WebGPU engine uploads a
 * repacked copy once (on the weight's first use, cached with `PackedWeight.prepared`) as int32 /
 * float32 tfjs tensors on the active WebGPU backend — so the bytes live in tfjs' buffers on the
 * same GPUDevice, are counted by `tf.memory()`, and are freed with the weight.
 *
 * GPU layout, per chunk of consecutive output rows (a chunk is ≤ the device's
 * `maxStorageBufferBindingSize`; a weight over the limit is split into several chunks):
 *
 * | dtype | tensors of a chunk of `rows` rows, `nb = in / 32` blocks per row |
 * |---|---|
 * | `q4` | `qs`: int32 [rows·nb·4] — each block's 16 GGUF `qs` bytes as 4 little-endian words (byte j: low nibble value j, high nibble value j + 16); `d`: int32 [⌈rows·nb/2⌉] — the fp16 block scales, two per word (block 2i in the low half) |
 * | `q8` | `qs`: int32 [rows·nb·8] — each block's 32 int8 values, 4 per word (value j in byte j mod 4 of word j / 4); `d` as for q4 |
 * | `fp16` | `w`: int32 [rows·in/2] — the binary16 values, two per word, row-major |
 * | `fp32` | `w`: float32 [rows·in] — row-major |
 *
 * Blocks are row-major (block b of row r at r·nb + b). The scales are split from the quants so that
 * every block's quants are word-aligned (a GGUF Q4_0 block is 18 bytes). GPU bytes per weight:
 * q4 18.0–18.1 per 32 values (vs 18 in GGUF), q8 34, fp16 64, fp32 128.
 */
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError, formatShape } from '../errors.js';
import { BLOCK_Q4_0_BYTES, BLOCK_Q8_0_BYTES } from '../quant/ggml.js';
import type { PackedWeight, WeightDType } from '../quant/packed.js';

/** Bytes each GPU tensor of a chunk of `rows` rows takes. */
export function chunkTensorBytes(dtype: WeightDType, rows: number, inF: number): number[] {
  const nb = inF / 32;
  switch (dtype) {
    case 'q4':
      return [rows * nb * 16, Math.ceil((rows * nb) / 2) * 4];
    case 'q8':
      return [rows * nb * 32, Math.ceil((rows * nb) / 2) * 4];
    case 'fp16':
      return [rows * (inF / 2) * 4];
    case 'fp32':
      return [rows * inF * 4];
  }
}

/** Rows per chunk so that every tensor of a chunk fits one binding (a multiple of 64 when possible). */
export function rowsPerChunk(dtype: WeightDType, out: number, inF: number, maxBindingBytes: number): number {
  const perRow = Math.max(...chunkTensorBytes(dtype, 1, inF)); // the quants (scales are smaller)
  let rows = Math.floor(maxBindingBytes / perRow);
  if (rows < 1) {
    throw new OwletError(
      ErrorCode.WEBGPU_LIMIT,
      `one row of a ${dtype} weight with ${inF} inputs takes ${perRow} bytes, over this device's maxStorageBufferBindingSize of ${maxBindingBytes} bytes`,
      { details: { dtype, inFeatures: inF, rowBytes: perRow, maxStorageBufferBindingSize: maxBindingBytes } },
    );
  }
  if (rows >= out) return out;
  if (rows >= 64) rows -= rows % 64;
  return rows;
}

export interface GpuChunkPlan {
  rowStart: number;
  rows: number;
  bytes: number[];
}

/** The chunks a `[out, in]` weight is split into on a device with this binding limit. */
export function planWeightChunks(
  dtype: WeightDType,
  out: number,
  inF: number,
  maxBindingBytes: number,
): GpuChunkPlan[] {
  const per = rowsPerChunk(dtype, out, inF, maxBindingBytes);
  const chunks: GpuChunkPlan[] = [];
  for (let r = 0; r < out; r += per) {
    const rows = Math.min(per, out - r);
    chunks.push({ rowStart: r, rows, bytes: chunkTensorBytes(dtype, rows, inF) });
  }
  return chunks;
}

/** GPU bytes of a `[out, in]` weight stored as `dtype` (what the engine allocates for it). */
export function gpuWeightBytes(dtype: WeightDType, out: number, inF: number, maxBindingBytes: number): number {
  let n = 0;
  for (const c of planWeightChunks(dtype, out, inF, maxBindingBytes)) for (const b of c.bytes) n += b;
  return n;
}

export interface GpuWeightChunk {
  rowStart: number;
  rows: number;
  /** q4/q8: [qs, d]; fp16/fp32: [w]. */
  tensors: tf.Tensor[];
}

/** A packed weight's GPU form (the `prepared` value of a PackedWeight). */
export class GpuLinearWeight {
  readonly dtype: WeightDType;
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly chunks: readonly GpuWeightChunk[];
  /** The backend instance whose buffers hold it (a new device after a loss needs a new upload). */
  readonly backend: tf.KernelBackend;
  private disposed = false;

  constructor(dtype: WeightDType, out: number, inF: number, chunks: GpuWeightChunk[], backend: tf.KernelBackend) {
    this.dtype = dtype;
    this.outFeatures = out;
    this.inFeatures = inF;
    this.chunks = chunks;
    this.backend = backend;
  }

  get byteLength(): number {
    let n = 0;
    for (const c of this.chunks) for (const t of c.tensors) n += t.size * 4;
    return n;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of this.chunks) for (const t of c.tensors) t.dispose();
  }
}

function checkUploadable(w: PackedWeight): void {
  const [, inF] = w.shape;
  if (inF % 4 !== 0) {
    throw new OwletError(
      ErrorCode.INVALID_ARGUMENT,
      `the WebGPU engine needs an input dimension that is a multiple of 4, got ${formatShape(w.shape)}`,
    );
  }
}

/**
 * Repacks and uploads a packed weight (the caller caches the result with `prepared`). The tensors
 * are kept out of any enclosing tidy scope. Their host copies are dropped by tfjs once uploaded.
 */
export function uploadPackedWeight(w: PackedWeight, maxBindingBytes: number): GpuLinearWeight {
  checkUploadable(w);
  const [out, inF] = w.shape;
  const nb = inF / 32;
  const src = w.canonicalBytes(); // GGUF rows, whatever layout the host copy is in
  const chunks: GpuWeightChunk[] = [];
  try {
    for (const plan of planWeightChunks(w.dtype, out, inF, maxBindingBytes)) {
      const { rowStart, rows } = plan;
      const tensors: tf.Tensor[] = [];
      chunks.push({ rowStart, rows, tensors });
      switch (w.dtype) {
        case 'q4':
        case 'q8': {
          const blockBytes = w.dtype === 'q4' ? BLOCK_Q4_0_BYTES : BLOCK_Q8_0_BYTES;
          const qsBytes = blockBytes - 2;
          const nBlocks = rows * nb;
          const qs = new Int32Array((nBlocks * qsBytes) / 4);
          const d = new Int32Array(Math.ceil(nBlocks / 2));
          const qs8 = new Uint8Array(qs.buffer);
          const d16 = new Uint16Array(d.buffer);
          const base = rowStart * nb * blockBytes;
          for (let i = 0; i < nBlocks; i++) {
            const o = base + i * blockBytes;
            d16[i] = (src[o] as number) | ((src[o + 1] as number) << 8);
            qs8.set(src.subarray(o + 2, o + blockBytes), i * qsBytes);
          }
          tensors.push(tf.keep(tf.tensor1d(qs, 'int32')), tf.keep(tf.tensor1d(d, 'int32')));
          break;
        }
        case 'fp16': {
          const words = new Int32Array((rows * inF) / 2);
          new Uint8Array(words.buffer).set(src.subarray(rowStart * inF * 2, (rowStart + rows) * inF * 2));
          tensors.push(tf.keep(tf.tensor1d(words, 'int32')));
          break;
        }
        case 'fp32': {
          const vals = new Float32Array(rows * inF);
          new Uint8Array(vals.buffer).set(src.subarray(rowStart * inF * 4, (rowStart + rows) * inF * 4));
          tensors.push(tf.keep(tf.tensor1d(vals, 'float32')));
          break;
        }
      }
    }
  } catch (e) {
    for (const c of chunks) for (const t of c.tensors) t.dispose();
    throw e;
  }
  return new GpuLinearWeight(w.dtype, out, inF, chunks, tf.backend());
}
