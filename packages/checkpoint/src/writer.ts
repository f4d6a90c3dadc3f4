/**
 * safetensors writer: builds a header (tensors laid out back to back in the given order, the JSON
 * padded with spaces so the data section starts at a multiple of 8) and encodes values as
 * little-endian bytes. Browser-safe; the streaming file writer lives in node.ts.
 */
import type * as tf from '@tensorflow/tfjs-core';

import { CheckpointError, CheckpointErrorCode } from './errors.js';
import { DTYPE_SIZE, f32ToBf16Bits, f32ToF16Bits, isSafetensorsDType, type SafetensorsDType } from './dtypes.js';
import { FORBIDDEN_TENSOR_KEYS, SAFETENSORS_MAX_DIM, SAFETENSORS_MAX_HEADER_SIZE } from './safetensors.js';

/** What a tensor's bytes are made from when writing. */
export type TensorValues =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | BigInt64Array
  | readonly number[]
  | readonly boolean[];

/**
 * One tensor to write. `data` is converted to `dtype`: F16/BF16 take Float32Array/number[] (rounded
 * to nearest even) or Uint16Array (raw bit patterns, written as is); I64 takes BigInt64Array or
 * integers; other dtypes take their own typed array or numbers (range-checked). `bytes` instead
 * gives the little-endian bytes directly. A `tf.Tensor` writes as F32 / I32 / BOOL by its dtype.
 */
export type TensorToWrite =
  | { dtype: SafetensorsDType; shape: readonly number[]; data: TensorValues }
  | { dtype: SafetensorsDType; shape: readonly number[]; bytes: Uint8Array }
  | tf.Tensor;

/** Name, dtype and shape of a tensor, as declared in a header before its bytes are written. */
export interface SafetensorsTensorSpec {
  key: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
}

export interface SafetensorsLayout {
  /** The 8-byte length followed by the padded JSON header: the first bytes of the file. */
  header: Uint8Array;
  /** [begin, end) of each tensor in the data section, in spec order. */
  offsets: Map<string, [number, number]>;
  /** Size of the data section. */
  dataLength: number;
  /** Size of the whole file. */
  fileSize: number;
}

const dataError = (msg: string, details: Record<string, unknown> = {}) =>
  new CheckpointError(CheckpointErrorCode.SAFETENSORS_INVALID_TENSOR_DATA, msg, { details });

function numel(key: string, shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0 || d > SAFETENSORS_MAX_DIM) {
      throw dataError(`${key}: shape [${shape.join(', ')}] has a dimension that is not an integer in [0, 2^48 − 1]`, {
        key,
      });
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n))
    throw dataError(`${key}: shape [${shape.join(', ')}] has more than 2^53 elements`, { key });
  return n;
}

/** Lays out a header for `specs` (in that order) and `metadata` (string → string). */
export function safetensorsLayout(
  specs: readonly SafetensorsTensorSpec[],
  metadata: Record<string, string> = {},
): SafetensorsLayout {
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  const metaKeys = Object.keys(metadata);
  if (metaKeys.length > 0) {
    const meta: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const k of metaKeys) {
      const v = metadata[k];
      if (typeof v !== 'string') {
        throw new CheckpointError(
          CheckpointErrorCode.SAFETENSORS_INVALID_METADATA,
          `metadata[${JSON.stringify(k)}] must be a string, got ${typeof v}`,
        );
      }
      meta[k] = v;
    }
    header.__metadata__ = meta;
  }
  const offsets = new Map<string, [number, number]>();
  let cursor = 0;
  for (const s of specs) {
    if (s.key === '__metadata__' || FORBIDDEN_TENSOR_KEYS.includes(s.key)) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_KEY,
        `tensor name ${JSON.stringify(s.key)} cannot be written`,
        { details: { key: s.key } },
      );
    }
    if (offsets.has(s.key)) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_DUPLICATE_KEY,
        `tensor ${JSON.stringify(s.key)} is given twice`,
        { details: { key: s.key } },
      );
    }
    if (!isSafetensorsDType(s.dtype)) {
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_DTYPE,
        `${s.key}: cannot write dtype ${String(s.dtype)}`,
        { details: { key: s.key } },
      );
    }
    const bytes = numel(s.key, s.shape) * DTYPE_SIZE[s.dtype];
    if (!Number.isSafeInteger(cursor + bytes)) throw dataError(`${s.key}: the data section would exceed 2^53 bytes`);
    offsets.set(s.key, [cursor, cursor + bytes]);
    header[s.key] = { dtype: s.dtype, shape: [...s.shape], data_offsets: [cursor, cursor + bytes] };
    cursor += bytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let body = enc.encode(json);
  const pad = (8 - ((8 + body.byteLength) % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    body = enc.encode(json);
  }
  if (body.byteLength > SAFETENSORS_MAX_HEADER_SIZE) {
    throw new CheckpointError(
      CheckpointErrorCode.SAFETENSORS_HEADER_TOO_LARGE,
      `the header would be ${body.byteLength} bytes; the limit is ${SAFETENSORS_MAX_HEADER_SIZE}`,
    );
  }
  const out = new Uint8Array(8 + body.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.byteLength), true);
  out.set(body, 8);
  return { header: out, offsets, dataLength: cursor, fileSize: out.byteLength + cursor };
}

function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function intArray<T extends Int32Array | Int16Array | Int8Array | Uint8Array>(
  ctor: { new (n: number): T },
  key: string,
  dtype: string,
  data: ArrayLike<number | boolean>,
  lo: number,
  hi: number,
): T {
  const out = new ctor(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = Number(data[i]);
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw dataError(`${key}: element ${i} = ${String(data[i])} is not a ${dtype} value (integer in [${lo}, ${hi}])`, {
        key,
        index: i,
      });
    }
    out[i] = v;
  }
  return out;
}

/** Encodes one tensor's values as little-endian bytes of `dtype` (checked against `shape`). */
export function encodeTensorBytes(
  key: string,
  dtype: SafetensorsDType,
  shape: readonly number[],
  data: TensorValues,
): Uint8Array {
  const n = numel(key, shape);
  if (data.length !== n) {
    throw dataError(`${key}: shape [${shape.join(', ')}] has ${n} elements, data has ${data.length}`, {
      key,
      expected: n,
      actual: data.length,
    });
  }
  const nums = data as ArrayLike<number>;
  switch (dtype) {
    case 'F32':
      return asBytes(data instanceof Float32Array ? data : Float32Array.from(nums, Number));
    case 'F64':
      return asBytes(data instanceof Float64Array ? data : Float64Array.from(nums, Number));
    case 'F16':
      return asBytes(data instanceof Uint16Array ? data : f32ToF16Bits(Array.from(nums, Number)));
    case 'BF16':
      return asBytes(data instanceof Uint16Array ? data : f32ToBf16Bits(Array.from(nums, Number)));
    case 'I64': {
      if (data instanceof BigInt64Array) return asBytes(data);
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        const v = Number(nums[i]);
        if (!Number.isSafeInteger(v))
          throw dataError(`${key}: element ${i} = ${String(nums[i])} is not a safe integer for I64`, { key, index: i });
        out[i] = BigInt(v);
      }
      return asBytes(out);
    }
    case 'I32':
      return asBytes(
        data instanceof Int32Array ? data : intArray(Int32Array, key, dtype, nums, -2147483648, 2147483647),
      );
    case 'I16':
      return asBytes(data instanceof Int16Array ? data : intArray(Int16Array, key, dtype, nums, -32768, 32767));
    case 'I8':
      return asBytes(data instanceof Int8Array ? data : intArray(Int8Array, key, dtype, nums, -128, 127));
    case 'U8':
      return asBytes(data instanceof Uint8Array ? data : intArray(Uint8Array, key, dtype, nums, 0, 255));
    case 'BOOL': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = (data as ArrayLike<number | boolean>)[i] ? 1 : 0;
      return out;
    }
  }
}

function isTensor(v: unknown): v is tf.Tensor {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as tf.Tensor).dataSync === 'function' &&
    Array.isArray((v as tf.Tensor).shape)
  );
}

/** Spec and bytes of one TensorToWrite. */
export function resolveTensorToWrite(
  key: string,
  t: TensorToWrite,
): { spec: SafetensorsTensorSpec; bytes: Uint8Array } {
  if (isTensor(t)) {
    const dtype: SafetensorsDType =
      t.dtype === 'float32'
        ? 'F32'
        : t.dtype === 'int32'
          ? 'I32'
          : t.dtype === 'bool'
            ? 'BOOL'
            : (() => {
                throw dataError(`${key}: cannot write a ${t.dtype} tensor`, { key });
              })();
    const values = t.dataSync() as Float32Array | Int32Array | Uint8Array;
    return { spec: { key, dtype, shape: t.shape }, bytes: encodeTensorBytes(key, dtype, t.shape, values) };
  }
  if ('bytes' in t) {
    const want = numel(key, t.shape) * DTYPE_SIZE[t.dtype];
    if (t.bytes.byteLength !== want) {
      throw dataError(`${key}: ${t.dtype} [${t.shape.join(', ')}] needs ${want} bytes, got ${t.bytes.byteLength}`, {
        key,
      });
    }
    return { spec: { key, dtype: t.dtype, shape: t.shape }, bytes: t.bytes };
  }
  return { spec: { key, dtype: t.dtype, shape: t.shape }, bytes: encodeTensorBytes(key, t.dtype, t.shape, t.data) };
}

function entriesOf<V>(input: Map<string, V> | Record<string, V> | Iterable<readonly [string, V]>): [string, V][] {
  if (input instanceof Map) return [...input.entries()];
  if (typeof (input as Iterable<unknown>)[Symbol.iterator] === 'function')
    return [...(input as Iterable<readonly [string, V]>)].map(([k, v]) => [k, v]);
  return Object.entries(input as Record<string, V>);
}

/**
 * Serialises tensors (in the given order) and string metadata into a safetensors file in memory.
 * Reading the result with `readSafetensors` gives back the same bytes for every tensor.
 */
export function writeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite> | Iterable<readonly [string, TensorToWrite]>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const resolved = entriesOf(tensors).map(([k, t]) => resolveTensorToWrite(k, t));
  const layout = safetensorsLayout(
    resolved.map((r) => r.spec),
    metadata,
  );
  const out = new Uint8Array(layout.fileSize);
  out.set(layout.header, 0);
  const base = layout.header.byteLength;
  for (const r of resolved) {
    const range = layout.offsets.get(r.spec.key);
    if (!range) throw new CheckpointError(CheckpointErrorCode.CHECKPOINT_IO, `${r.spec.key}: not in the layout`);
    out.set(r.bytes, base + range[0]);
  }
  return out;
}
