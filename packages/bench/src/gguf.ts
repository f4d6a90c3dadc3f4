/**
 * A GGUF (version 3) writer, written from the format description in ggml's `docs/gguf.md` and the
 * block layouts of `ggml-common.h`: header, typed key/value metadata, tensor infos, alignment
 * padding, tensor data. Tensor data can be F32, F16, Q8_0 or Q4_0 (quantised here, from the GGML
 * reference block layouts). Files are streamed tensor by tensor, so multi-GiB models never sit in
 * one buffer, and written atomically (temporary file + rename).
 *
 * A small reader (`parseGguf`) reads the header back, for tests and for checking cached files.
 */
import { open, rename, rm } from 'node:fs/promises';

import {
  BLOCK_Q4_0_BYTES,
  BLOCK_Q8_0_BYTES,
  ErrorCode,
  OwletError,
  QK4_0,
  QK8_0,
  dequantizeQ4_0,
  dequantizeQ8_0,
  formatShape,
  quantizeQ4_0,
  quantizeQ8_0,
} from '@owlet/core';
import { f16BitsToF32, f32ToF16Bits } from '@owlet/checkpoint';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** `gguf_metadata_value_type`. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];
type ScalarType = Exclude<GgufValueType, 9>;

/** The `ggml_type`s this writer produces. */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

/** Values per quantisation block and bytes per block (`ggml-common.h`: block_q8_0, block_q4_0), from @owlet/core. */
export { QK8_0, QK4_0, BLOCK_Q8_0_BYTES, BLOCK_Q4_0_BYTES };

export type GgufScalar = number | bigint | boolean | string;

/** One metadata entry. Arrays carry their element type; arrays of arrays are not supported. */
export type GgufMetadataValue =
  | { type: ScalarType; value: GgufScalar }
  | { type: typeof GgufValueType.ARRAY; itemType: ScalarType; values: readonly GgufScalar[] | ArrayLike<number> };

export type GgufMetadata = ReadonlyArray<readonly [string, GgufMetadataValue]>;

/** Helpers to build metadata values. */
export const gguf = {
  u32: (value: number): GgufMetadataValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufMetadataValue => ({ type: GgufValueType.INT32, value }),
  u64: (value: number | bigint): GgufMetadataValue => ({ type: GgufValueType.UINT64, value }),
  f32: (value: number): GgufMetadataValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufMetadataValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufMetadataValue => ({ type: GgufValueType.STRING, value }),
  arr: (itemType: ScalarType, values: readonly GgufScalar[] | ArrayLike<number>): GgufMetadataValue => ({
    type: GgufValueType.ARRAY,
    itemType,
    values,
  }),
};

/** A tensor to write. `shape` is in PyTorch order (outermost first); GGUF stores it reversed (ne[0] innermost). */
export interface GgufTensorSpec {
  name: string;
  shape: readonly number[];
  type: GgmlTypeName;
}

export interface GgufLayout {
  /** Header, metadata, tensor infos and the padding up to the data section. */
  header: Uint8Array;
  /** Offset of each tensor relative to the data section (aligned). */
  offsets: number[];
  /** Byte size of each tensor's data. */
  sizes: number[];
  /** Absolute offset of the data section. */
  dataStart: number;
  /** Total file size. */
  fileSize: number;
  alignment: number;
}

const utf8 = new TextEncoder();

function fail(message: string, details: Record<string, unknown> = {}): never {
  throw new OwletError(ErrorCode.INVALID_ARGUMENT, message, { details });
}

/** Bytes of a tensor of `n` elements whose innermost dimension is `rowLength`, in `type`. */
export function ggmlTensorBytes(type: GgmlTypeName, shape: readonly number[]): number {
  const n = shape.reduce((a, b) => a * b, 1);
  const row = shape[shape.length - 1] ?? 1;
  switch (type) {
    case 'F32':
      return n * 4;
    case 'F16':
      return n * 2;
    case 'Q8_0':
    case 'Q4_0': {
      const qk = type === 'Q8_0' ? QK8_0 : QK4_0;
      if (row % qk !== 0) {
        fail(`${type} needs rows that are a multiple of ${qk} values, got shape ${formatShape(shape)}`, {
          shape,
          type,
        });
      }
      return (n / qk) * (type === 'Q8_0' ? BLOCK_Q8_0_BYTES : BLOCK_Q4_0_BYTES);
    }
  }
}

/** Growable little-endian byte writer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number): void {
    this.reserve(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number): void {
    this.reserve(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number): void {
    this.reserve(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: number | bigint): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: number | bigint): void {
    this.reserve(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  /** gguf_string_t: u64 byte length, UTF-8 bytes, no terminator. */
  str(s: string): void {
    const b = utf8.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    this.reserve(pad);
    this.buf.fill(0, this.length, this.length + pad);
    this.length += pad;
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function checkInt(v: GgufScalar, lo: number, hi: number, key: string, what: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < lo || n > hi) {
    fail(`gguf metadata ${key}: expected ${what}, got ${String(v)}`, { key, value: v });
  }
  return n;
}

function writeScalar(w: ByteWriter, type: ScalarType, v: GgufScalar, key: string): void {
  switch (type) {
    case GgufValueType.UINT8:
      w.u8(checkInt(v, 0, 255, key, 'a u8'));
      return;
    case GgufValueType.INT8:
      w.i8(checkInt(v, -128, 127, key, 'an i8'));
      return;
    case GgufValueType.UINT16:
      w.u16(checkInt(v, 0, 0xffff, key, 'a u16'));
      return;
    case GgufValueType.INT16:
      w.i16(checkInt(v, -0x8000, 0x7fff, key, 'an i16'));
      return;
    case GgufValueType.UINT32:
      w.u32(checkInt(v, 0, 0xffffffff, key, 'a u32'));
      return;
    case GgufValueType.INT32:
      w.i32(checkInt(v, -0x80000000, 0x7fffffff, key, 'an i32'));
      return;
    case GgufValueType.FLOAT32:
    case GgufValueType.FLOAT64:
      if (typeof v !== 'number') fail(`gguf metadata ${key}: expected a number, got ${typeof v}`, { key });
      if (type === GgufValueType.FLOAT32) w.f32(v);
      else w.f64(v);
      return;
    case GgufValueType.BOOL:
      if (typeof v !== 'boolean') fail(`gguf metadata ${key}: expected a boolean, got ${typeof v}`, { key });
      w.u8(v ? 1 : 0);
      return;
    case GgufValueType.STRING:
      if (typeof v !== 'string') fail(`gguf metadata ${key}: expected a string, got ${typeof v}`, { key });
      w.str(v);
      return;
    case GgufValueType.UINT64:
      if (typeof v === 'bigint' ? v < 0n : checkInt(v, 0, Number.MAX_SAFE_INTEGER, key, 'a u64') < 0)
        fail(`gguf metadata ${key}: negative u64`);
      w.u64(v as number | bigint);
      return;
    case GgufValueType.INT64:
      w.i64(typeof v === 'bigint' ? v : checkInt(v, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, key, 'an i64'));
      return;
    default:
      fail(`gguf metadata ${key}: unknown value type ${String(type)}`, { key, type });
  }
}

/** Computes the header bytes and the data layout. Names must be unique and at most 64 bytes (GGUF). */
export function ggufLayout(
  metadata: GgufMetadata,
  tensors: readonly GgufTensorSpec[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): GgufLayout {
  if (!Number.isInteger(alignment) || alignment < 8 || alignment % 8 !== 0)
    fail(`gguf alignment must be a multiple of 8, got ${alignment}`);
  const keys = new Set<string>();
  for (const [k] of metadata) {
    if (keys.has(k)) fail(`gguf metadata key ${k} appears twice`, { key: k });
    keys.add(k);
  }
  const align = metadata.find(([k]) => k === 'general.alignment');
  if (align && Number((align[1] as { value: GgufScalar }).value) !== alignment) {
    fail(`general.alignment is ${String((align[1] as { value: GgufScalar }).value)} but the layout uses ${alignment}`);
  }
  const names = new Set<string>();
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, v] of metadata) {
    w.str(key);
    w.u32(v.type);
    if (v.type === GgufValueType.ARRAY) {
      w.u32(v.itemType);
      w.u64(v.values.length);
      for (let i = 0; i < v.values.length; i++) writeScalar(w, v.itemType, v.values[i] as GgufScalar, key);
    } else {
      writeScalar(w, v.type, v.value, key);
    }
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) fail(`gguf tensor ${t.name} appears twice`, { name: t.name });
    names.add(t.name);
    if (utf8.encode(t.name).length > 64) fail(`gguf tensor name ${t.name} is longer than 64 bytes`, { name: t.name });
    if (t.shape.length < 1 || t.shape.length > 4 || t.shape.some((d) => !Number.isSafeInteger(d) || d < 1)) {
      fail(`gguf tensor ${t.name}: shape must have 1 to 4 positive dimensions, got ${formatShape(t.shape)}`, {
        name: t.name,
        shape: t.shape,
      });
    }
    const size = ggmlTensorBytes(t.type, t.shape);
    w.str(t.name);
    w.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) w.u64(t.shape[i] as number); // ne[0] = innermost
    w.u32(GgmlType[t.type]);
    w.u64(offset);
    offsets.push(offset);
    sizes.push(size);
    offset += size;
    offset += (alignment - (offset % alignment)) % alignment;
  }
  w.padTo(alignment);
  const header = w.result();
  const last = tensors.length - 1;
  const dataEnd = last >= 0 ? (offsets[last] as number) + (sizes[last] as number) : 0;
  return { header, offsets, sizes, dataStart: header.length, fileSize: header.length + dataEnd, alignment };
}

// ---------------------------------------------------------------------------------------------
// Quantisation: @owlet/core's (ggml-quants.c reference semantics), the same numbers owlet's q8 / q4
// weights hold, so a GGUF written from an owlet model is bit-exact.

export { quantizeQ8_0, quantizeQ4_0, dequantizeQ8_0, dequantizeQ4_0 };

/** Encodes float32 values as the bytes of a tensor of `type`. */
export function encodeGgmlTensor(type: GgmlTypeName, values: Float32Array): Uint8Array {
  switch (type) {
    case 'F32':
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case 'F16': {
      const h = f32ToF16Bits(values);
      return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    }
    case 'Q8_0':
      return quantizeQ8_0(values);
    case 'Q4_0':
      return quantizeQ4_0(values);
  }
}

/** What a tensor of `type` decodes to (identity for F32). */
export function roundTripGgml(type: GgmlTypeName, values: Float32Array): Float32Array {
  switch (type) {
    case 'F32':
      return values;
    case 'F16':
      return f16BitsToF32(f32ToF16Bits(values));
    case 'Q8_0':
      return dequantizeQ8_0(quantizeQ8_0(values), values.length);
    case 'Q4_0':
      return dequantizeQ4_0(quantizeQ4_0(values), values.length);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface GgufTensorSource extends GgufTensorSpec {
  /** The float32 values in PyTorch (row-major) order; called once, in file order. */
  data: () => Float32Array | Promise<Float32Array>;
}

function checkValues(t: GgufTensorSpec, values: Float32Array): void {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (!(values instanceof Float32Array) || values.length !== n) {
    throw new OwletError(
      ErrorCode.SHAPE_MISMATCH,
      `gguf tensor ${t.name}: expected ${n} float32 values for shape ${formatShape(t.shape)}, got ${(values as { length?: number })?.length ?? 'none'}`,
      { details: { name: t.name, expected: n, actual: (values as { length?: number })?.length } },
    );
  }
}

/** Encodes a whole GGUF file in memory (small models and tests). */
export async function encodeGguf(
  metadata: GgufMetadata,
  tensors: readonly GgufTensorSource[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): Promise<Uint8Array> {
  const layout = ggufLayout(metadata, tensors, alignment);
  const out = new Uint8Array(layout.fileSize);
  out.set(layout.header, 0);
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i] as GgufTensorSource;
    const values = await t.data();
    checkValues(t, values);
    out.set(encodeGgmlTensor(t.type, values), layout.dataStart + (layout.offsets[i] as number));
  }
  return out;
}

/**
 * Streams a GGUF file to `path` (through `path.tmp-<pid>`, renamed at the end; removed on error;
 * fsynced before the rename unless `fsync: false`). Returns the layout.
 */
export async function writeGgufFile(
  path: string,
  metadata: GgufMetadata,
  tensors: readonly GgufTensorSource[],
  options: { alignment?: number; fsync?: boolean } = {},
): Promise<GgufLayout> {
  const layout = ggufLayout(metadata, tensors, options.alignment ?? GGUF_DEFAULT_ALIGNMENT);
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.write(layout.header, 0, layout.header.length, 0);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i] as GgufTensorSource;
      const values = await t.data();
      checkValues(t, values);
      const bytes = encodeGgmlTensor(t.type, values);
      await fh.write(bytes, 0, bytes.length, layout.dataStart + (layout.offsets[i] as number));
    }
    await fh.truncate(layout.fileSize);
    if (options.fsync ?? true) await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  return layout;
}

// ---------------------------------------------------------------------------------------------
// Reading the header back

export interface ParsedGguf {
  version: number;
  metadata: Map<string, GgufScalar | GgufScalar[]>;
  tensors: { name: string; shape: number[]; type: number; offset: number }[];
  dataStart: number;
}

/** Parses the header of a GGUF file (metadata and tensor infos; shapes in PyTorch order). */
export function parseGguf(bytes: Uint8Array): ParsedGguf {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dec = new TextDecoder();
  let p = 0;
  const need = (n: number) => {
    if (p + n > bytes.length) fail(`gguf: truncated header at byte ${p} (need ${n} more, file has ${bytes.length})`);
  };
  /** Checks that `n` more bytes exist, moves past them and returns where they start. */
  const take = (n: number): number => {
    need(n);
    p += n;
    return p - n;
  };
  const u32 = () => view.getUint32(take(4), true);
  const u64 = () => Number(view.getBigUint64(take(8), true));
  const str = () => {
    const n = u64();
    need(n);
    p += n;
    return dec.decode(bytes.subarray(p - n, p));
  };
  const scalar = (type: number): GgufScalar => {
    switch (type) {
      case 0:
        return view.getUint8(take(1));
      case 1:
        return view.getInt8(take(1));
      case 2:
        return view.getUint16(take(2), true);
      case 3:
        return view.getInt16(take(2), true);
      case 4:
        return u32();
      case 5:
        return view.getInt32(take(4), true);
      case 6:
        return view.getFloat32(take(4), true);
      case 7:
        return view.getUint8(take(1)) !== 0;
      case 8:
        return str();
      case 10:
        return view.getBigUint64(take(8), true);
      case 11:
        return view.getBigInt64(take(8), true);
      case 12:
        return view.getFloat64(take(8), true);
      default:
        return fail(`gguf: unknown value type ${type} at byte ${p}`);
    }
  };
  if (u32() !== GGUF_MAGIC) fail('gguf: bad magic (not a GGUF file)');
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const metadata = new Map<string, GgufScalar | GgufScalar[]>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    if (type === GgufValueType.ARRAY) {
      const itemType = u32();
      const n = u64();
      const vals: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) vals[j] = scalar(itemType);
      metadata.set(key, vals);
    } else {
      metadata.set(key, scalar(type));
    }
  }
  const tensors: ParsedGguf['tensors'] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne: number[] = [];
    for (let j = 0; j < nd; j++) ne.push(u64());
    const type = u32();
    const offset = u64();
    tensors.push({ name, shape: ne.reverse(), type, offset });
  }
  const alignment = Number(metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT);
  const dataStart = Math.ceil(p / alignment) * alignment;
  return { version, metadata, tensors, dataStart };
}
