/**
 * The CPU engines' weight layout ("x16"): a Linear weight `[out, in]` is stored as groups of 16
 * output rows (the last group padded with zero rows), so that one SIMD register holds the same
 * input position of 16 rows and a product needs no horizontal sums. Both engines (WASM and the
 * native add-on) read this layout; it converts exactly to and from the canonical row layout
 * (`PackedWeight`'s GGUF blocks), so nothing is lost by storing weights this way.
 *
 * Per group g (rows 16g … 16g+15), with k inputs and nb = k/32 blocks:
 *
 * | dtype | bytes per group | layout |
 * |---|---|---|
 * | `fp32` | 64·k | for each input j: the 16 rows' float32 values |
 * | `fp16` | 32·k | for each input j: the 16 rows' binary16 values |
 * | `q8` | 544·nb | per block: the 16 rows' f16 scales (32 B), then for each pair m = 0…15 the 16 rows' int8 values 2m, 2m+1 (32 B) |
 * | `q4` | 288·nb | per block: the 16 rows' f16 scales (32 B), then for each t = 0…7 the 16 rows' GGUF bytes 2t, 2t+1 (32 B: low nibbles are values 2t, 2t+1, high nibbles 16+2t, 17+2t) |
 */
import { BLOCK_Q4_0_BYTES, BLOCK_Q8_0_BYTES } from '../quant/ggml.js';
import type { WeightDType } from '../quant/packed.js';

export const X16_ROWS = 16;

/** Bytes of one 16-row group with `k` inputs. */
export function x16GroupBytes(dtype: WeightDType, k: number): number {
  switch (dtype) {
    case 'fp32':
      return 64 * k;
    case 'fp16':
      return 32 * k;
    case 'q8':
      return (k / 32) * 16 * BLOCK_Q8_0_BYTES;
    case 'q4':
      return (k / 32) * 16 * BLOCK_Q4_0_BYTES;
  }
}

/** Bytes of a `[out, k]` weight in the x16 layout (padded to whole groups). */
export function x16ByteLength(dtype: WeightDType, out: number, k: number): number {
  return Math.ceil(out / X16_ROWS) * x16GroupBytes(dtype, k);
}

function canonicalRowBytes(dtype: WeightDType, k: number): number {
  return dtype === 'fp32' ? 4 * k : dtype === 'fp16' ? 2 * k : (k / 32) * (dtype === 'q8' ? 34 : 18);
}

/**
 * Converts between the canonical row layout and x16. `toX16` true: `src` canonical → `dst` x16
 * (dst is fully written, padding zeroed); false: `src` x16 → `dst` canonical.
 */
export function convertX16(
  dtype: WeightDType,
  out: number,
  k: number,
  src: Uint8Array,
  dst: Uint8Array,
  toX16: boolean,
): void {
  const gb = x16GroupBytes(dtype, k);
  const rb = canonicalRowBytes(dtype, k);
  const groups = Math.ceil(out / X16_ROWS);
  if (toX16) dst.fill(0, 0, groups * gb);
  const x16 = toX16 ? dst : src;
  const can = toX16 ? src : dst;
  if (dtype === 'fp32' || dtype === 'fp16') {
    const e = dtype === 'fp32' ? 4 : 2;
    // element-wise with typed views when aligned (the common case), bytewise otherwise
    const aligned = src.byteOffset % e === 0 && dst.byteOffset % e === 0;
    if (aligned) {
      const view = (a: Uint8Array, n: number) =>
        e === 4 ? new Uint32Array(a.buffer, a.byteOffset, n) : new Uint16Array(a.buffer, a.byteOffset, n);
      const xv = view(x16, (groups * gb) / e);
      const cv = view(can, (out * rb) / e);
      for (let row = 0; row < out; row++) {
        const g = row >> 4;
        const r = row & 15;
        const xb = g * (gb / e) + r;
        const cb = row * k;
        if (toX16) for (let j = 0; j < k; j++) xv[xb + j * 16] = cv[cb + j] as number;
        else for (let j = 0; j < k; j++) cv[cb + j] = xv[xb + j * 16] as number;
      }
      return;
    }
    for (let row = 0; row < out; row++) {
      const g = row >> 4;
      const r = row & 15;
      for (let j = 0; j < k; j++) {
        const xo = g * gb + (j * 16 + r) * e;
        const co = row * rb + j * e;
        for (let t = 0; t < e; t++) {
          if (toX16) x16[xo + t] = can[co + t] as number;
          else can[co + t] = x16[xo + t] as number;
        }
      }
    }
    return;
  }
  const nb = k / 32;
  const bb = dtype === 'q8' ? 34 : 18;
  const groupBlock = dtype === 'q8' ? 544 : 288;
  const pairs = dtype === 'q8' ? 16 : 8;
  for (let row = 0; row < out; row++) {
    const g = row >> 4;
    const r2 = 2 * (row & 15);
    for (let b = 0; b < nb; b++) {
      const xo = g * gb + b * groupBlock + r2;
      const co = row * rb + b * bb;
      if (toX16) {
        x16[xo] = can[co] as number;
        x16[xo + 1] = can[co + 1] as number;
        for (let m = 0; m < pairs; m++) {
          x16[xo + 32 + 32 * m] = can[co + 2 + 2 * m] as number;
          x16[xo + 33 + 32 * m] = can[co + 3 + 2 * m] as number;
        }
      } else {
        can[co] = x16[xo] as number;
        can[co + 1] = x16[xo + 1] as number;
        for (let m = 0; m < pairs; m++) {
          can[co + 2 + 2 * m] = x16[xo + 32 + 32 * m] as number;
          can[co + 3 + 2 * m] = x16[xo + 33 + 32 * m] as number;
        }
      }
    }
  }
}
