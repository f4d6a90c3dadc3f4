/**
 * safetensors reader: header validation with every check of the reference implementation
 * (huggingface/safetensors `SafeTensors::read_metadata` / `Metadata::validate`) and an in-memory
 * archive. The layout is: 8-byte little-endian u64 N, N bytes of UTF-8 JSON, then the data section
 * whose tensors are laid out back to back, in offset order, starting at 0 and ending at its end.
 */
import * as tf from '@tensorflow/tfjs-core';

import { CheckpointError, CheckpointErrorCode } from './errors.js';
import {
  DTYPE_SIZE,
  SAFETENSORS_FORMAT_DTYPE_BITS,
  decodeToArray,
  isFloatDType,
  isSafetensorsDType,
  type SafetensorsDType,
} from './dtypes.js';
import { JsonSyntaxError, jsonTypeName, jsonUnsignedInteger, parseJson, type JsonValue } from './json.js';

/** The reference implementation's cap on the header length N. */
export const SAFETENSORS_MAX_HEADER_SIZE = 100_000_000;
/** Largest dimension or offset accepted (2^48 − 1, the format schema's bound; keeps every product BigInt-checked). */
export const SAFETENSORS_MAX_DIM = 2 ** 48 - 1;
/** Tensor names refused because they could alter object prototypes in a JavaScript consumer. */
export const FORBIDDEN_TENSOR_KEYS: readonly string[] = Object.freeze(['__proto__', 'constructor', 'prototype']);

/** dtype, shape and byte length of one tensor. */
export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
}

/** A validated header entry: the tensor's bytes are data[begin, end) of the data section. */
export interface SafetensorsEntry extends TensorInfo {
  begin: number;
  end: number;
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** `__metadata__` (string → string; empty when absent); a frozen null-prototype object. */
  metadata: Record<string, string>;
  /** Tensors in header order. */
  tensors: Map<string, SafetensorsEntry>;
  /** The header length N. */
  headerLength: number;
  /** Where the data section starts in the file (8 + N). */
  dataOffset: number;
  /** Length of the data section (the end of the last tensor). */
  dataLength: number;
}

const err = (code: CheckpointErrorCode, message: string, details: Record<string, unknown> = {}) =>
  new CheckpointError(code, message, { details });

/**
 * Reads N from the first 8 bytes and checks it against the file size, before any of the header
 * is read: B1 (HeaderTooSmall), B2 (HeaderTooLarge, N > 100,000,000), B3 (InvalidHeaderLength).
 * Returns N.
 */
export function readHeaderLength(first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || first8.byteLength < 8) {
    throw err(
      CheckpointErrorCode.SAFETENSORS_HEADER_TOO_SMALL,
      `safetensors file is ${fileSize} bytes; at least 8 are needed for the header length`,
      { fileSize },
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_SIZE)) {
    throw err(
      CheckpointErrorCode.SAFETENSORS_HEADER_TOO_LARGE,
      // The value is not printed: for a file that is not safetensors it is 8 bytes of its content.
      `safetensors header length (the first 8 bytes) is over the limit of ${SAFETENSORS_MAX_HEADER_SIZE} bytes: not a safetensors file, or a corrupt one`,
      { limit: SAFETENSORS_MAX_HEADER_SIZE, fileSize },
    );
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw err(
      CheckpointErrorCode.SAFETENSORS_INVALID_HEADER_LENGTH,
      `safetensors header length (the first 8 bytes) is more than the ${fileSize - 8} bytes after the length field: a truncated file, or not safetensors`,
      { fileSize },
    );
  }
  return len;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function schemaError(message: string, details: Record<string, unknown> = {}): CheckpointError {
  return err(CheckpointErrorCode.SAFETENSORS_INVALID_HEADER_DESERIALIZATION, message, details);
}

function bigDim(v: JsonValue | undefined, what: string, key: string): number {
  const b = jsonUnsignedInteger(v);
  if (b === undefined) {
    throw schemaError(`${key}: ${what} must be a non-negative integer, got ${jsonTypeName(v)}`, { key });
  }
  if (b > BigInt(SAFETENSORS_MAX_DIM)) {
    throw err(
      CheckpointErrorCode.SAFETENSORS_VALIDATION_OVERFLOW,
      `${key}: ${what} ${b} exceeds the largest supported value ${SAFETENSORS_MAX_DIM} (2^48 − 1)`,
      { key, value: b.toString() },
    );
  }
  return Number(b);
}

interface RawEntry {
  key: string;
  dtype: string;
  bits: number;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parses and validates the N header bytes of a file of `fileSize` bytes (B4–B13): UTF-8, JSON,
 * schema, duplicate and forbidden keys, dtypes, `__metadata__`, offsets contiguous from 0,
 * BigInt-checked byte lengths, and a data section that ends exactly at the end of the file.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerLength = headerBytes.byteLength;
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch (e) {
    throw new CheckpointError(CheckpointErrorCode.SAFETENSORS_INVALID_HEADER, 'safetensors header is not valid UTF-8', {
      cause: e,
    });
  }
  let json: JsonValue;
  try {
    json = parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) {
      if (e.duplicateKey !== undefined) {
        throw new CheckpointError(
          CheckpointErrorCode.SAFETENSORS_DUPLICATE_KEY,
          `safetensors header has the key ${JSON.stringify(e.duplicateKey)} twice`,
          { details: { key: e.duplicateKey }, cause: e },
        );
      }
      throw new CheckpointError(
        CheckpointErrorCode.SAFETENSORS_INVALID_HEADER_DESERIALIZATION,
        `safetensors header is not valid JSON: ${e.message}`,
        { cause: e },
      );
    }
    throw e;
  }
  if (!(json instanceof Map)) {
    throw schemaError(`safetensors header must be a JSON object, got ${jsonTypeName(json)}`);
  }

  const metadata = Object.create(null) as Record<string, string>;
  const raw: RawEntry[] = [];
  for (const [key, value] of json) {
    if (key === '__metadata__') {
      if (value === null) continue;
      if (!(value instanceof Map)) {
        throw err(
          CheckpointErrorCode.SAFETENSORS_INVALID_METADATA,
          `__metadata__ must be an object of strings, got ${jsonTypeName(value)}`,
        );
      }
      for (const [mk, mv] of value) {
        if (typeof mv !== 'string') {
          throw err(
            CheckpointErrorCode.SAFETENSORS_INVALID_METADATA,
            `__metadata__[${JSON.stringify(mk)}] must be a string, got ${jsonTypeName(mv)}`,
            { key: mk },
          );
        }
        metadata[mk] = mv;
      }
      continue;
    }
    if (FORBIDDEN_TENSOR_KEYS.includes(key)) {
      throw err(
        CheckpointErrorCode.SAFETENSORS_INVALID_KEY,
        `safetensors tensor name ${JSON.stringify(key)} is refused (it could alter object prototypes)`,
        { key },
      );
    }
    if (!(value instanceof Map)) {
      throw schemaError(`${key}: tensor entry must be an object, got ${jsonTypeName(value)}`, { key });
    }
    const dtype = value.get('dtype');
    if (typeof dtype !== 'string') {
      throw schemaError(`${key}: dtype must be a string, got ${jsonTypeName(dtype)}`, { key });
    }
    const bits = SAFETENSORS_FORMAT_DTYPE_BITS[dtype];
    if (bits === undefined) {
      throw err(
        CheckpointErrorCode.SAFETENSORS_INVALID_DTYPE,
        `${key}: unknown dtype ${JSON.stringify(dtype)}; the format defines ${Object.keys(SAFETENSORS_FORMAT_DTYPE_BITS).join(', ')}`,
        { key, dtype },
      );
    }
    const shapeV = value.get('shape');
    if (!Array.isArray(shapeV)) {
      throw schemaError(`${key}: shape must be an array, got ${jsonTypeName(shapeV)}`, { key });
    }
    const shape = shapeV.map((d) => bigDim(d, 'shape dimension', key));
    const offsV = value.get('data_offsets');
    if (!Array.isArray(offsV) || offsV.length !== 2) {
      throw schemaError(
        `${key}: data_offsets must be an array of two integers, got ${Array.isArray(offsV) ? `${offsV.length} values` : jsonTypeName(offsV)}`,
        { key },
      );
    }
    const begin = bigDim(offsV[0], 'data_offsets[0]', key);
    const end = bigDim(offsV[1], 'data_offsets[1]', key);
    raw.push({ key, dtype, bits, shape, begin, end });
  }

  // Metadata::validate: offsets in order, contiguous from 0; sizes agree with shape × dtype.
  const order = [...raw].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  const byteLengths = new Map<string, number>();
  for (const t of order) {
    if (t.begin !== cursor || t.end < t.begin) {
      throw err(
        CheckpointErrorCode.SAFETENSORS_INVALID_OFFSET,
        `${t.key}: data_offsets [${t.begin}, ${t.end}] ${t.end < t.begin ? 'end before begin' : `should begin at ${cursor}`} (tensors must be contiguous from 0)`,
        { key: t.key, begin: t.begin, end: t.end, expectedBegin: cursor },
      );
    }
    let elements = 1n;
    for (const d of t.shape) elements *= BigInt(d);
    const totalBits = elements * BigInt(t.bits);
    if (totalBits / 8n > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw err(
        CheckpointErrorCode.SAFETENSORS_VALIDATION_OVERFLOW,
        `${t.key}: shape [${t.shape.join(', ')}] of ${t.dtype} is ${totalBits / 8n} bytes, beyond 2^53 − 1`,
        { key: t.key, shape: t.shape },
      );
    }
    if (totalBits % 8n !== 0n) {
      throw err(
        CheckpointErrorCode.SAFETENSORS_MISALIGNED_SLICE,
        `${t.key}: ${elements} elements of ${t.dtype} (${t.bits} bits each) do not fill whole bytes`,
        { key: t.key, dtype: t.dtype, shape: t.shape },
      );
    }
    const bytes = Number(totalBits / 8n);
    if (bytes !== t.end - t.begin) {
      throw err(
        CheckpointErrorCode.SAFETENSORS_TENSOR_INVALID_INFO,
        `${t.key}: ${t.dtype} [${t.shape.join(', ')}] needs ${bytes} bytes, data_offsets [${t.begin}, ${t.end}] give ${t.end - t.begin}`,
        { key: t.key, expected: bytes, actual: t.end - t.begin },
      );
    }
    byteLengths.set(t.key, bytes);
    cursor = t.end;
  }
  const dataOffset = 8 + headerLength;
  if (dataOffset + cursor !== fileSize) {
    throw err(
      CheckpointErrorCode.SAFETENSORS_METADATA_INCOMPLETE_BUFFER,
      `safetensors tensors end at byte ${dataOffset + cursor}, but the file has ${fileSize} bytes (${
        fileSize > dataOffset + cursor
          ? `${fileSize - dataOffset - cursor} trailing`
          : `${dataOffset + cursor - fileSize} missing`
      })`,
      { expected: dataOffset + cursor, actual: fileSize },
    );
  }
  const tensors = new Map<string, SafetensorsEntry>();
  for (const t of raw) {
    if (!isSafetensorsDType(t.dtype)) {
      throw err(
        CheckpointErrorCode.SAFETENSORS_UNSUPPORTED_DTYPE,
        `${t.key}: dtype ${t.dtype} is valid safetensors but owlet does not load it (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`,
        { key: t.key, dtype: t.dtype },
      );
    }
    tensors.set(t.key, {
      dtype: t.dtype,
      shape: t.shape,
      byteLength: byteLengths.get(t.key) ?? t.end - t.begin, // equal (checked above)
      begin: t.begin,
      end: t.end,
    });
  }
  return { metadata: Object.freeze(metadata), tensors, headerLength, dataOffset, dataLength: cursor };
}

/** Parses a whole safetensors file held in memory into its validated header. */
export function parseSafetensorsBytes(bytes: Uint8Array): SafetensorsHeader {
  const n = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength);
  return parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.byteLength);
}

export function tensorNotFound(key: string, where: string): CheckpointError {
  return err(CheckpointErrorCode.SAFETENSORS_TENSOR_NOT_FOUND, `${where} has no tensor ${JSON.stringify(key)}`, {
    key,
  });
}

/** Makes a tf.Tensor (float32 or int32) from decoded values. */
export function arrayToTensor(values: Float32Array | Int32Array, shape: readonly number[]): tf.Tensor {
  return tf.tensor(values, [...shape], values instanceof Float32Array ? 'float32' : 'int32');
}

/** An in-memory safetensors file, validated on construction. */
export class SafetensorsArchive {
  /** `__metadata__` (string → string), frozen. */
  readonly metadata: Record<string, string>;
  /** The validated header. */
  readonly header: SafetensorsHeader;
  private readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array | ArrayBuffer) {
    this.bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.header = parseSafetensorsBytes(this.bytes);
    this.metadata = this.header.metadata;
  }

  /** Tensor names in header order. */
  keys(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(key: string): boolean {
    return this.header.tensors.has(key);
  }

  /** dtype, shape and byte length of `key` (SAFETENSORS_TENSOR_NOT_FOUND if absent). */
  info(key: string): TensorInfo {
    const e = this.entry(key);
    return { dtype: e.dtype, shape: [...e.shape], byteLength: e.byteLength };
  }

  /** The tensor's raw little-endian bytes (a view into the file; do not modify). */
  rawBytes(key: string): Uint8Array {
    const e = this.entry(key);
    const start = this.header.dataOffset + e.begin;
    return this.bytes.subarray(start, start + e.byteLength);
  }

  /** F16/BF16/F32/F64 → Float32Array (widened); I64/I32/I16/I8/U8/BOOL → Int32Array (I64 range-checked). A copy. */
  array(key: string): Float32Array | Int32Array {
    const e = this.entry(key);
    return decodeToArray(e.dtype, this.rawBytes(key), key);
  }

  /** The same as a tf.Tensor (float32 or int32); the caller owns it. */
  tensor(key: string): tf.Tensor {
    const e = this.entry(key);
    return arrayToTensor(this.array(key), e.shape);
  }

  /** True when `key` widens to float32 (F16/BF16/F32/F64). */
  isFloat(key: string): boolean {
    return isFloatDType(this.entry(key).dtype);
  }

  private entry(key: string) {
    const e = this.header.tensors.get(key);
    if (!e) throw tensorNotFound(key, 'safetensors archive');
    return e;
  }
}

/**
 * Parses and validates a safetensors file held in memory. Throws a `CheckpointError` with a
 * `SAFETENSORS_*` code for every malformed input; the bytes are not copied.
 */
export function readSafetensors(bytes: Uint8Array | ArrayBuffer): SafetensorsArchive {
  return new SafetensorsArchive(bytes);
}
