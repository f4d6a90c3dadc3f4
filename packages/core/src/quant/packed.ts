import * as tf from '@tensorflow/tfjs-core';

import { f16BitsToF32, f32ToF16Bits } from '@owlet/checkpoint';
import { ErrorCode, OwletError, formatShape } from '../errors.js';
import { convertX16, x16ByteLength } from '../cpu/layout.js';
import {
  BLOCK_Q4_0_BYTES,
  BLOCK_Q8_0_BYTES,
  QK4_0,
  QK8_0,
  dequantizeQ4_0,
  dequantizeQ8_0,
  quantizeQ4_0,
  quantizeQ8_0,
} from './ggml.js';

/** Weight dtypes (transformers.js names). `q8` / `q4` are GGUF Q8_0 / Q4_0. */
export type WeightDType = 'fp32' | 'fp16' | 'q8' | 'q4';
export const WEIGHT_DTYPES: readonly WeightDType[] = Object.freeze(['fp32', 'fp16', 'q8', 'q4']);

export function isWeightDType(x: unknown): x is WeightDType {
  return typeof x === 'string' && (WEIGHT_DTYPES as readonly string[]).includes(x);
}

/** Values per block along the input dimension (1 for the float dtypes). */
export function weightBlockSize(dtype: WeightDType): number {
  return dtype === 'q8' ? QK8_0 : dtype === 'q4' ? QK4_0 : 1;
}

/** Bytes of one row of `inFeatures` values. Throws for quantized rows that are not whole blocks. */
export function weightRowBytes(dtype: WeightDType, inFeatures: number): number {
  switch (dtype) {
    case 'fp32':
      return inFeatures * 4;
    case 'fp16':
      return inFeatures * 2;
    case 'q8':
    case 'q4': {
      const qk = weightBlockSize(dtype);
      if (inFeatures % qk !== 0) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `${dtype} weights need an input dimension that is a multiple of ${qk}, got ${inFeatures}`,
          { details: { dtype, inFeatures } },
        );
      }
      return (inFeatures / qk) * (dtype === 'q8' ? BLOCK_Q8_0_BYTES : BLOCK_Q4_0_BYTES);
    }
  }
}

/** Bytes of a `[out, in]` weight in `dtype`. */
export function weightByteLength(dtype: WeightDType, shape: readonly [number, number] | readonly number[]): number {
  const [out, inF] = shape as [number, number];
  return out * weightRowBytes(dtype, inF);
}

/** Can a `[out, in]` weight be stored in `dtype`? (quantized rows must be whole blocks) */
export function canStoreAs(dtype: WeightDType, shape: readonly number[]): boolean {
  return shape.length === 2 && (shape[1] as number) % weightBlockSize(dtype) === 0;
}

/** One allocation of weight bytes. */
export interface WeightAllocation {
  bytes: Uint8Array;
  /** Releases the bytes (called once, by `PackedWeight.dispose`). */
  free(): void;
  /** Allocator-specific location (e.g. which memory and offset), read by that allocator's kernels. */
  location?: unknown;
  /** The allocator that made it. */
  allocator: string;
}

/** How the bytes of a packed weight are arranged: canonical rows, or the CPU engine's 16-row groups. */
export type WeightLayout = 'rows' | 'x16';

/** Where weight bytes live. The CPU engine installs one that places them in its own memories. */
export interface WeightAllocator {
  readonly name: string;
  /** The layout of the weights it holds (default `'rows'`). */
  readonly layout?: WeightLayout;
  /** `alignment` is a power of two ≤ 64. */
  allocate(byteLength: number, alignment: number): WeightAllocation;
  /**
   * Optional fast path: encodes float32 rows `[out, k]` as `dtype` straight into `layout`
   * (bit-identical to `quantizeQ8_0` / `quantizeQ4_0` / the fp16 rounding followed by `convertX16`).
   */
  encode?(dtype: WeightDType, values: Float32Array, out: number, k: number, dst: Uint8Array): void;
  /** Optional fast path for `convertX16`. */
  convert?(dtype: WeightDType, out: number, k: number, src: Uint8Array, dst: Uint8Array, toX16: boolean): void;
}

const heapAllocator: WeightAllocator = {
  name: 'heap',
  allocate(byteLength) {
    return { bytes: new Uint8Array(byteLength), free() {}, allocator: 'heap' };
  },
};

let activeAllocator: WeightAllocator = heapAllocator;

/** Installs the allocator new packed weights use (`null`: plain ArrayBuffers). Returns the previous one. */
export function setWeightAllocator(a: WeightAllocator | null): WeightAllocator {
  const prev = activeAllocator;
  activeAllocator = a ?? heapAllocator;
  return prev;
}

export function getWeightAllocator(): WeightAllocator {
  return activeAllocator;
}

interface Disposable {
  dispose?(): void;
}

let liveBytes = 0;
let liveCount = 0;

/** Bytes and number of packed weights alive (for leak tests and memory reports). */
export function packedWeightStats(): { count: number; bytes: number } {
  return { count: liveCount, bytes: liveBytes };
}

/**
 * `PackedWeight`: a Linear weight `[out, in]` held outside the tfjs heap in one of owlet's weight
 * dtypes, in the canonical (GGUF) byte layout:
 *
 * | dtype | bytes per row of `in` values | layout |
 * |---|---|---|
 * | `fp32` | 4·in | float32, little-endian |
 * | `fp16` | 2·in | IEEE binary16 bits, round-to-nearest-even |
 * | `q8` | 34·in/32 | GGUF Q8_0 blocks (`quantizeQ8_0`) |
 * | `q4` | 18·in/32 | GGUF Q4_0 blocks (`quantizeQ4_0`) |
 *
 * Rows follow each other (row r at r·rowBytes): that is the canonical (`'rows'`) layout, what
 * `canonicalBytes()` returns and what GGUF files and pre-quantized checkpoints hold. The bytes come
 * from the active `WeightAllocator` (default: a plain ArrayBuffer). An allocator may store weights
 * in another layout of the same numbers: the CPU engine's allocators use `'x16'` (groups of 16
 * output rows interleaved for SIMD, `cpu/layout.ts`), in its own memories, so its kernels read
 * them in place. Kernels may attach a backend-specific prepared form (`prepared(key, make)`),
 * disposed with the weight.
 */
export class PackedWeight {
  readonly dtype: WeightDType;
  /** `[out, in]`, the checkpoint layout. */
  readonly shape: readonly [number, number];
  /** Bytes of one canonical row. */
  readonly rowBytes: number;
  /** How `bytes` are arranged (`canonicalBytes()` is always `'rows'`). */
  readonly layout: WeightLayout;
  private allocation: WeightAllocation | null;
  private readonly preparedForms = new Map<string, unknown>();
  private readonly size: number;
  private hostReleased = false;
  private disposed = false;

  private constructor(
    dtype: WeightDType,
    shape: readonly [number, number],
    allocation: WeightAllocation,
    layout: WeightLayout,
  ) {
    this.dtype = dtype;
    this.shape = Object.freeze([shape[0], shape[1]]) as readonly [number, number];
    this.rowBytes = weightRowBytes(dtype, shape[1]);
    this.layout = layout;
    this.allocation = allocation;
    this.size = allocation.bytes.byteLength;
    liveBytes += allocation.bytes.byteLength;
    liveCount++;
  }

  private static checkShape(shape: readonly number[]): asserts shape is readonly [number, number] {
    if (shape.length !== 2 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
      throw new OwletError(ErrorCode.SHAPE_MISMATCH, `a packed weight is [out, in], got ${formatShape(shape)}`, {
        details: { shape: [...shape] },
      });
    }
  }

  /** Encodes float32 values (row-major `[out, in]`) as `dtype`. */
  static fromFloat32(values: Float32Array, shape: readonly number[], dtype: WeightDType): PackedWeight {
    PackedWeight.checkShape(shape);
    const [out, inF] = shape;
    if (values.length !== out * inF) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `expected ${out * inF} values for ${formatShape(shape)}, got ${values.length}`,
      );
    }
    const al = activeAllocator;
    const layout = al.layout ?? 'rows';
    if (layout === 'x16') weightRowBytes(dtype, inF); // typed error for partial blocks
    const n = layout === 'x16' ? x16ByteLength(dtype, out, inF) : weightByteLength(dtype, shape);
    const a = al.allocate(n, 64);
    try {
      if (layout === 'x16') {
        if (al.encode) al.encode(dtype, values, out, inF, a.bytes);
        else (al.convert ?? convertX16)(dtype, out, inF, encodeRows(values, dtype, out * inF), a.bytes, true);
      } else {
        encodeRows(values, dtype, out * inF, a.bytes);
      }
      return new PackedWeight(dtype, shape, a, layout);
    } catch (e) {
      a.free();
      throw e;
    }
  }

  /**
   * Wraps bytes already in the canonical layout (a pre-quantized checkpoint). They are copied
   * into an allocation of the active allocator; the byte length must match exactly.
   */
  static fromBytes(bytes: Uint8Array, shape: readonly number[], dtype: WeightDType): PackedWeight {
    PackedWeight.checkShape(shape);
    const n = weightByteLength(dtype, shape);
    if (bytes.byteLength !== n) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `a ${dtype} weight ${formatShape(shape)} is ${n} bytes, got ${bytes.byteLength}`,
        { details: { dtype, shape: [...shape], expected: n, actual: bytes.byteLength } },
      );
    }
    const al = activeAllocator;
    const layout = al.layout ?? 'rows';
    const a = al.allocate(layout === 'x16' ? x16ByteLength(dtype, shape[0], shape[1]) : n, 64);
    try {
      if (layout === 'x16') (al.convert ?? convertX16)(dtype, shape[0], shape[1], bytes, a.bytes, true);
      else a.bytes.set(bytes);
      return new PackedWeight(dtype, shape, a, layout);
    } catch (e) {
      a.free();
      throw e;
    }
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** True after `releaseHostBytes()`: only the prepared forms (e.g. a GPU copy) hold the values. */
  get isHostReleased(): boolean {
    return this.hostReleased;
  }

  private live(): WeightAllocation {
    if (this.disposed) {
      throw new OwletError(
        ErrorCode.DISPOSED,
        `a ${this.dtype} weight ${formatShape(this.shape)} was used after dispose()`,
      );
    }
    if (this.allocation === null) {
      throw new OwletError(
        'PACKED_HOST_RELEASED',
        `a ${this.dtype} weight ${formatShape(this.shape)} keeps its values only in a backend's copy (${[...this.preparedForms.keys()].join(', ')}); its host bytes were released, so it cannot be read or decoded on the host: load the model again to do that`,
        { details: { dtype: this.dtype, shape: [...this.shape], prepared: [...this.preparedForms.keys()] } },
      );
    }
    return this.allocation;
  }

  /**
   * Frees the host bytes once a kernel's prepared form (a GPU copy) holds the values, so a model
   * on the GPU is not kept twice. The weight stays usable by the kernels that prepared it; reading
   * or decoding it on the host (`bytes`, `dequantize`, the composite ops, a new `prepared` form)
   * then throws `OwletError(PACKED_HOST_RELEASED)`. Needs at least one prepared form.
   */
  releaseHostBytes(): void {
    const a = this.live();
    if (this.preparedForms.size === 0) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `releaseHostBytes: a ${this.dtype} weight ${formatShape(this.shape)} has no prepared form that would still hold its values`,
      );
    }
    liveBytes -= this.size;
    a.free();
    this.allocation = null;
    this.hostReleased = true;
  }

  /** The stored bytes, in `layout` (a view; do not keep it past `dispose`). */
  get bytes(): Uint8Array {
    return this.live().bytes;
  }

  /**
   * The canonical row bytes (GGUF F32 / F16 / Q8_0 / Q4_0 rows): a view when the weight is stored
   * in rows, a new copy otherwise.
   */
  canonicalBytes(): Uint8Array {
    const a = this.live();
    if (this.layout === 'rows') return a.bytes;
    const out = new Uint8Array(weightByteLength(this.dtype, this.shape));
    convertX16(this.dtype, this.shape[0], this.shape[1], a.bytes, out, false);
    return out;
  }

  /** Bytes of the canonical encoding (also after the host bytes were released). */
  get byteLength(): number {
    if (this.disposed) this.live();
    return this.size;
  }

  /** The allocator's location of the bytes (for that allocator's kernels). */
  get allocator(): string {
    return this.live().allocator;
  }

  get location(): unknown {
    return this.live().location;
  }

  /** Rows `[start, end)` as float32 values (what the stored numbers decode to). */
  dequantizeRows(
    start: number,
    end: number,
    out: Float32Array = new Float32Array((end - start) * this.shape[1]),
  ): Float32Array {
    const b = this.layout === 'rows' ? this.live().bytes : this.canonicalBytes();
    const inF = this.shape[1];
    const n = (end - start) * inF;
    const from = b.subarray(start * this.rowBytes, end * this.rowBytes);
    switch (this.dtype) {
      case 'fp32':
        out.set(new Float32Array(from.buffer.slice(from.byteOffset, from.byteOffset + n * 4)));
        return out;
      case 'fp16':
        out.set(f16BitsToF32(new Uint16Array(from.buffer.slice(from.byteOffset, from.byteOffset + n * 2))));
        return out;
      case 'q8':
        return dequantizeQ8_0(from, n, out);
      case 'q4':
        return dequantizeQ4_0(from, n, out);
    }
  }

  /** Every value as float32, row-major `[out, in]`. */
  dequantize(): Float32Array {
    return this.dequantizeRows(0, this.shape[0]);
  }

  /** A new float32 tensor `[out, in]` the caller owns. */
  toTensor(): tf.Tensor2D {
    return tf.tensor2d(this.dequantize(), [this.shape[0], this.shape[1]]);
  }

  /**
   * A kernel's prepared form of this weight (a repacked copy, a GPU buffer), made on first use and
   * disposed with the weight. `key` names the kernel and backend (`'webgpu:q4'`).
   */
  prepared<T extends Disposable>(key: string, make: (w: PackedWeight) => T): T {
    if (this.disposed) this.live();
    let p = this.preparedForms.get(key) as T | undefined;
    if (p === undefined) {
      this.live(); // making a form needs the host bytes
      p = make(this);
      this.preparedForms.set(key, p);
    }
    return p;
  }

  dispose(): void {
    if (this.disposed) return;
    for (const p of this.preparedForms.values()) (p as Disposable).dispose?.();
    this.preparedForms.clear();
    if (this.allocation) {
      liveBytes -= this.size;
      this.allocation.free();
      this.allocation = null;
    }
    liveCount--;
    this.disposed = true;
  }
}

/** Canonical row bytes of `count` float32 values as `dtype` (into `out` when given). */
function encodeRows(values: Float32Array, dtype: WeightDType, count: number, out?: Uint8Array): Uint8Array {
  const b = out ?? new Uint8Array(weightRowBytes(dtype, count));
  switch (dtype) {
    case 'fp32':
      new Uint8Array(b.buffer, b.byteOffset, count * 4).set(
        new Uint8Array(values.buffer, values.byteOffset, count * 4),
      );
      return b;
    case 'fp16': {
      const h = f32ToF16Bits(values.subarray(0, count));
      b.set(new Uint8Array(h.buffer, h.byteOffset, count * 2));
      return b;
    }
    case 'q8':
      return quantizeQ8_0(values.subarray(0, count), b);
    case 'q4':
      return quantizeQ4_0(values.subarray(0, count), b);
  }
}
