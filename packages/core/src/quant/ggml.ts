/**
 * GGUF / GGML block quantisation, numerically identical to ggml-quants.c's reference rows
 * (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`, `dequantize_row_q8_0`, `dequantize_row_q4_0`):
 * blocks of 32 consecutive values along a row, one fp16 scale per block, C float arithmetic
 * (every intermediate rounded to float32) and C's rounding rules. The byte layout is GGML's:
 *
 * - Q8_0 block (34 bytes): `ggml_half d; int8_t qs[32]` — d = max|x| / 127, q = roundf(x / d)
 * - Q4_0 block (18 bytes): `ggml_half d; uint8_t qs[16]` — d = m / −8 with m the value of largest
 *   magnitude, q = min(15, (int)(x / d + 8.5)); the low nibble of byte j holds value j, the high
 *   nibble value j + 16; a value decodes to (q − 8)·d.
 *
 * This is the interchange and on-disk form of owlet's `q8` / `q4` weights (GGUF export copies it).
 */
import { ErrorCode, OwletError } from '../errors.js';
import { f16BitsToF32, f32ToF16Bits } from '@owlet/checkpoint';

export const QK8_0 = 32;
export const QK4_0 = 32;
export const BLOCK_Q8_0_BYTES = 2 + QK8_0; // ggml_half d; int8_t qs[32]
export const BLOCK_Q4_0_BYTES = 2 + QK4_0 / 2; // ggml_half d; uint8_t qs[16]

function fail(message: string, details: Record<string, unknown> = {}): never {
  throw new OwletError(ErrorCode.INVALID_ARGUMENT, message, { details });
}

const fround = Math.fround;
const one = new Float32Array(1);
const oneHalf = new Uint16Array(1);

/** binary16 bits of one float32 value, round-to-nearest-even (GGML_FP32_TO_FP16). */
function toHalf(v: number): number {
  one[0] = v;
  f32ToF16Bits(one, oneHalf);
  return oneHalf[0] as number;
}

/** Exact float value of binary16 bits (GGML_FP16_TO_FP32), cached for all 65536 patterns. */
let HALF_TABLE: Float32Array | null = null;
export function halfToFloat(bits: number): number {
  if (HALF_TABLE === null) {
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    HALF_TABLE = f16BitsToF32(all);
  }
  return HALF_TABLE[bits & 0xffff] as number;
}

/** C `roundf`: halves away from zero. */
function roundHalfAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

function checkBlocks(kind: string, n: number, qk: number): void {
  if (n % qk !== 0) fail(`${kind} needs a multiple of ${qk} values, got ${n}`, { values: n, block: qk });
}

/** Q8_0: per 32 values, d = max|x| / 127 (stored fp16), q = round(x / d) (int8). */
export function quantizeQ8_0(
  x: Float32Array,
  out: Uint8Array = new Uint8Array((x.length / QK8_0) * BLOCK_Q8_0_BYTES),
): Uint8Array {
  checkBlocks('Q8_0', x.length, QK8_0);
  const nb = x.length / QK8_0;
  if (out.length < nb * BLOCK_Q8_0_BYTES) fail(`Q8_0 output holds ${out.length} bytes, needs ${nb * BLOCK_Q8_0_BYTES}`);
  const q = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0; b < nb; b++) {
    const base = b * QK8_0;
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) {
      const a = Math.abs(x[base + j] as number);
      if (a > amax) amax = a;
    }
    const d = fround(amax / 127);
    const id = d ? fround(1 / d) : 0;
    const h = toHalf(d);
    const o = b * BLOCK_Q8_0_BYTES;
    out[o] = h & 0xff;
    out[o + 1] = h >>> 8;
    for (let j = 0; j < QK8_0; j++) q[o + 2 + j] = roundHalfAway(fround((x[base + j] as number) * id));
  }
  return out;
}

/** Q4_0: per 32 values, d = m / −8 where m is the value of largest magnitude (fp16), q = min(15, ⌊x/d + 8.5⌋). */
export function quantizeQ4_0(
  x: Float32Array,
  out: Uint8Array = new Uint8Array((x.length / QK4_0) * BLOCK_Q4_0_BYTES),
): Uint8Array {
  checkBlocks('Q4_0', x.length, QK4_0);
  const nb = x.length / QK4_0;
  if (out.length < nb * BLOCK_Q4_0_BYTES) fail(`Q4_0 output holds ${out.length} bytes, needs ${nb * BLOCK_Q4_0_BYTES}`);
  const half = QK4_0 / 2;
  for (let b = 0; b < nb; b++) {
    const base = b * QK4_0;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = x[base + j] as number;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fround(max / -8);
    const id = d ? fround(1 / d) : 0;
    const h = toHalf(d);
    const o = b * BLOCK_Q4_0_BYTES;
    out[o] = h & 0xff;
    out[o + 1] = h >>> 8;
    for (let j = 0; j < half; j++) {
      // C: (int8_t)(x*id + 8.5f), every step rounded to float32, then MIN(15, ·)
      const x0 = Math.min(15, Math.trunc(fround(fround((x[base + j] as number) * id) + 8.5)));
      const x1 = Math.min(15, Math.trunc(fround(fround((x[base + half + j] as number) * id) + 8.5)));
      out[o + 2 + j] = x0 | (x1 << 4);
    }
  }
  return out;
}

/** The values a Q8_0 tensor decodes to (dequantize_row_q8_0). */
export function dequantizeQ8_0(q: Uint8Array, n: number, out: Float32Array = new Float32Array(n)): Float32Array {
  checkBlocks('Q8_0', n, QK8_0);
  if (q.length < (n / QK8_0) * BLOCK_Q8_0_BYTES) fail(`Q8_0: ${q.length} bytes cannot hold ${n} values`);
  const s = new Int8Array(q.buffer, q.byteOffset, q.byteLength);
  for (let b = 0; b < n / QK8_0; b++) {
    const o = b * BLOCK_Q8_0_BYTES;
    const d = halfToFloat((q[o] as number) | ((q[o + 1] as number) << 8));
    for (let j = 0; j < QK8_0; j++) out[b * QK8_0 + j] = (s[o + 2 + j] as number) * d;
  }
  return out;
}

/** The values a Q4_0 tensor decodes to (dequantize_row_q4_0). */
export function dequantizeQ4_0(q: Uint8Array, n: number, out: Float32Array = new Float32Array(n)): Float32Array {
  checkBlocks('Q4_0', n, QK4_0);
  if (q.length < (n / QK4_0) * BLOCK_Q4_0_BYTES) fail(`Q4_0: ${q.length} bytes cannot hold ${n} values`);
  const half = QK4_0 / 2;
  for (let b = 0; b < n / QK4_0; b++) {
    const o = b * BLOCK_Q4_0_BYTES;
    const d = halfToFloat((q[o] as number) | ((q[o + 1] as number) << 8));
    for (let j = 0; j < half; j++) {
      const byte = q[o + 2 + j] as number;
      out[b * QK4_0 + j] = ((byte & 0x0f) - 8) * d;
      out[b * QK4_0 + half + j] = ((byte >> 4) - 8) * d;
    }
  }
  return out;
}
