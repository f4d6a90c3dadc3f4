/**
 * Element types of checkpoints and the conversions between their little-endian bytes and the
 * arrays owlet computes with: float dtypes widen to float32, integer and bool dtypes to int32.
 */
import { CheckpointError, CheckpointErrorCode } from './errors.js';

/** The safetensors dtypes owlet loads (F16/BF16/F64 widen to float32; integers and BOOL to int32). */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Every dtype string the safetensors format defines, with its size in bits. */
export const SAFETENSORS_FORMAT_DTYPE_BITS: Readonly<Record<string, number>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, number>, {
    BOOL: 8,
    F4: 4,
    F6_E2M3: 6,
    F6_E3M2: 6,
    U8: 8,
    I8: 8,
    F8_E5M2: 8,
    F8_E4M3: 8,
    F8_E8M0: 8,
    I16: 16,
    U16: 16,
    F16: 16,
    BF16: 16,
    I32: 32,
    U32: 32,
    F32: 32,
    C64: 64,
    F64: 64,
    I64: 64,
    U64: 64,
  }),
);

/** Bytes per element of each loadable dtype. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDType, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

export const SAFETENSORS_DTYPES: readonly SafetensorsDType[] = Object.freeze(
  Object.keys(DTYPE_SIZE) as SafetensorsDType[],
);

export function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.hasOwn(DTYPE_SIZE, s);
}

/** True for dtypes that widen to float32 (the rest become int32). */
export function isFloatDType(d: SafetensorsDType): boolean {
  return d === 'F64' || d === 'F32' || d === 'F16' || d === 'BF16';
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndian(): void {
  if (!LITTLE_ENDIAN) {
    throw new CheckpointError(
      CheckpointErrorCode.SAFETENSORS_UNSUPPORTED_DTYPE,
      'checkpoint data is little-endian; this host is big-endian, which owlet does not support',
    );
  }
}

/**
 * A copy of `bytes` in a fresh, aligned ArrayBuffer. Tensor data in a file starts at any byte
 * offset (8 + header length), so it is copied before a typed array views it, never viewed in place.
 */
export function alignedCopy(bytes: Uint8Array): ArrayBuffer {
  const buf = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buf).set(bytes);
  return buf;
}

let f16Table: Float32Array | null = null;

/** float32 value of every IEEE binary16 bit pattern (built once, 256 KiB). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    let mant = h & 0x3ff;
    if (exp === 0) {
      if (mant === 0) {
        bits[h] = sign >>> 0;
      } else {
        // subnormal: normalise; value = mant · 2^-24
        let shifts = 0;
        while ((mant & 0x400) === 0) {
          mant <<= 1;
          shifts++;
        }
        mant &= 0x3ff;
        bits[h] = (sign | ((113 - shifts) << 23) | (mant << 13)) >>> 0;
      }
    } else if (exp === 31) {
      bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16Table = new Float32Array(bits.buffer);
  return f16Table;
}

/** Widens IEEE binary16 bit patterns to float32 (exact). */
export function f16BitsToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const t = halfTable();
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  return out;
}

/** Widens bfloat16 bit patterns to float32 (exact: the bits move to the high half). */
export function bf16BitsToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) u[i] = src[i]! << 16;
  return out;
}

const cvtF32 = new Float32Array(1);
const cvtU32 = new Uint32Array(cvtF32.buffer);

/** Rounds float32 values to binary16 bits, round-to-nearest-even (NaN stays NaN, overflow → ±Inf). */
export function f32ToF16Bits(src: ArrayLike<number>, out = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) {
    cvtF32[0] = src[i]!;
    const x = cvtU32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    let h: number;
    if (exp === 0xff) {
      h = sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
    } else {
      const e = exp - 127 + 15;
      if (e >= 31) {
        h = sign | 0x7c00;
      } else if (e <= 0) {
        if (e < -10) {
          h = sign;
        } else {
          // subnormal half: shift the full mantissa (with implicit 1) right, rounding to even
          const m = mant | 0x800000;
          const shift = 14 - e;
          const half = 1 << (shift - 1);
          const rest = m & ((1 << shift) - 1);
          let v = m >>> shift;
          if (rest > half || (rest === half && (v & 1) === 1)) v++;
          h = sign | v;
        }
      } else {
        let v = (e << 10) | (mant >>> 13);
        const rest = mant & 0x1fff;
        if (rest > 0x1000 || (rest === 0x1000 && (v & 1) === 1)) v++; // may carry into the exponent: correct
        h = sign | v;
      }
    }
    out[i] = h;
  }
  return out;
}

/** Rounds float32 values to bfloat16 bits, round-to-nearest-even (NaN stays a quiet NaN). */
export function f32ToBf16Bits(src: ArrayLike<number>, out = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) {
    cvtF32[0] = src[i]!;
    const x = cvtU32[0]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    const lsb = (x >>> 16) & 1;
    out[i] = ((x + 0x7fff + lsb) >>> 16) & 0xffff;
  }
  return out;
}

/**
 * Decodes little-endian `bytes` of `dtype` into the array owlet computes with: Float32Array for
 * float dtypes (widened exactly for F16/BF16, rounded for F64), Int32Array for integer dtypes and
 * BOOL (I64 values outside int32 raise SAFETENSORS_VALUE_OUT_OF_RANGE naming `key`). Always a copy.
 */
export function decodeToArray(dtype: SafetensorsDType, bytes: Uint8Array, key: string): Float32Array | Int32Array {
  assertLittleEndian();
  const size = DTYPE_SIZE[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new CheckpointError(
      CheckpointErrorCode.SAFETENSORS_TENSOR_INVALID_INFO,
      `${key}: ${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`,
      { details: { key, dtype, byteLength: bytes.byteLength } },
    );
  }
  const n = bytes.byteLength / size;
  switch (dtype) {
    case 'F32':
      return new Float32Array(alignedCopy(bytes));
    case 'F16':
      return f16BitsToF32(new Uint16Array(alignedCopy(bytes)));
    case 'BF16':
      return bf16BitsToF32(new Uint16Array(alignedCopy(bytes)));
    case 'F64':
      return Float32Array.from(new Float64Array(alignedCopy(bytes)));
    case 'I32':
      return new Int32Array(alignedCopy(bytes));
    case 'I16':
      return Int32Array.from(new Int16Array(alignedCopy(bytes)));
    case 'I8':
      return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, n));
    case 'U8':
      return Int32Array.from(bytes);
    case 'BOOL': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[i] !== 0 ? 1 : 0;
      return out;
    }
    case 'I64': {
      // two int32 halves per value: the value fits int32 iff hi is the sign extension of lo
      const words = new Int32Array(alignedCopy(bytes));
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = words[2 * i]!;
        const hi = words[2 * i + 1]!;
        if (hi !== (lo < 0 ? -1 : 0)) {
          const value = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
          throw new CheckpointError(
            CheckpointErrorCode.SAFETENSORS_VALUE_OUT_OF_RANGE,
            `${key}: I64 element ${i} is ${value}, outside the int32 range [-2147483648, 2147483647] owlet computes in`,
            { details: { key, index: i, value: value.toString() } },
          );
        }
        out[i] = lo;
      }
      return out;
    }
  }
}
