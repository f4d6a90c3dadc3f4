import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectAllClose, expectNoLeaks, randn, toF32 } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { OwletError } from '../errors.js';
import { Linear } from '../nn/Linear.js';
import { linear } from '../ops/linear.js';
import {
  BLOCK_Q4_0_BYTES,
  BLOCK_Q8_0_BYTES,
  PackedWeight,
  dequantizeQ4_0,
  dequantizeQ8_0,
  halfToFloat,
  packedWeightStats,
  quantizeQ4_0,
  quantizeQ8_0,
  weightByteLength,
  type WeightDType,
} from './index.js';

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

/** float64 reference of what a GGUF block decodes to, read byte by byte (independent of the code under test). */
function refDecode(dtype: WeightDType, bytes: Uint8Array, n: number): Float64Array {
  const out = new Float64Array(n);
  const half = (lo: number, hi: number) => {
    const h = lo | (hi << 8);
    const s = h >> 15 ? -1 : 1;
    const e = (h >> 10) & 31;
    const m = h & 1023;
    return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
  };
  if (dtype === 'q8') {
    for (let b = 0; b < n / 32; b++) {
      const d = half(bytes[b * 34] as number, bytes[b * 34 + 1] as number);
      for (let j = 0; j < 32; j++) out[b * 32 + j] = ((((bytes[b * 34 + 2 + j] as number) + 128) & 255) - 128) * d;
    }
  } else {
    for (let b = 0; b < n / 32; b++) {
      const d = half(bytes[b * 18] as number, bytes[b * 18 + 1] as number);
      for (let j = 0; j < 16; j++) {
        out[b * 32 + j] = (((bytes[b * 18 + 2 + j] as number) & 15) - 8) * d;
        out[b * 32 + 16 + j] = (((bytes[b * 18 + 2 + j] as number) >> 4) - 8) * d;
      }
    }
  }
  return out;
}

describe('GGUF Q8_0 / Q4_0 (core quantizer)', () => {
  const x = f32(randn(32 * 40, 11, 0.7));
  x.fill(0, 32, 64); // an all-zero block: d = 0, every q = 0

  it('decodes to what the bytes say, within half a step of the input', () => {
    for (const dtype of ['q8', 'q4'] as const) {
      const q = dtype === 'q8' ? quantizeQ8_0(x) : quantizeQ4_0(x);
      expect(q.length).toBe((x.length / 32) * (dtype === 'q8' ? BLOCK_Q8_0_BYTES : BLOCK_Q4_0_BYTES));
      const back = dtype === 'q8' ? dequantizeQ8_0(q, x.length) : dequantizeQ4_0(q, x.length);
      const ref = refDecode(dtype, q, x.length);
      for (let i = 0; i < x.length; i++) expect(back[i]).toBe(ref[i]); // exact: int × fp16 fits float32
      for (let b = 0; b < x.length / 32; b++) {
        const blk = Array.from(x.subarray(b * 32, b * 32 + 32));
        const amax = Math.max(...blk.map(Math.abs));
        // step d ≈ amax/127 (q8) or amax/8 (q4); q4's level +8 is clamped to 7: one step at most.
        // q is computed with the float32 d but decoded with the fp16 d: + |q|·|d − fp16(d)| ≤ 127·d·2⁻¹¹
        const step = dtype === 'q8' ? amax / 127 : amax / 8;
        for (let j = 0; j < 32; j++) {
          expect(Math.abs((back[b * 32 + j] as number) - (blk[j] as number))).toBeLessThanOrEqual(
            step * (dtype === 'q8' ? 0.5 + 127 * 2 ** -11 : 1 + 8 * 2 ** -11) * (1 + 1e-6) + 1e-7,
          );
        }
      }
      expect(Array.from(back.subarray(32, 64)).every((v) => v === 0)).toBe(true);
    }
  });

  it('halfToFloat agrees with the float64 formula for every binary16 pattern class', () => {
    for (const h of [0, 1, 0x3ff, 0x400, 0x3c00, 0x7bff, 0x8001, 0xbc00, 0xfbff]) {
      const s = h >> 15 ? -1 : 1;
      const e = (h >> 10) & 31;
      const m = h & 1023;
      expect(halfToFloat(h)).toBe(e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15));
    }
  });

  it('rejects inputs that are not whole 32-value blocks with a typed error', () => {
    expect(() => quantizeQ8_0(new Float32Array(40))).toThrow(OwletError);
    expect(() => quantizeQ4_0(new Float32Array(31))).toThrow(/multiple of 32 values, got 31/);
    expect(() => PackedWeight.fromFloat32(new Float32Array(4 * 40), [4, 40], 'q4')).toThrow(/multiple of 32, got 40/);
    // fp16 / fp32 have no blocks: any input dimension
    const w = PackedWeight.fromFloat32(new Float32Array(4 * 40), [4, 40], 'fp16');
    expect(w.byteLength).toBe(4 * 40 * 2);
    w.dispose();
  });
});

describe('PackedWeight', () => {
  it('fp32 / fp16 / q8 / q4 bytes, decoded rows, exact byte-length checks, dispose', () => {
    const [out, inF] = [5, 64];
    const v = f32(randn(out * inF, 3));
    const before = packedWeightStats();
    for (const dtype of ['fp32', 'fp16', 'q8', 'q4'] as const) {
      const w = PackedWeight.fromFloat32(v, [out, inF], dtype);
      expect(w.byteLength).toBe(weightByteLength(dtype, [out, inF]));
      expect(w.byteLength).toBe(out * (dtype === 'fp32' ? 256 : dtype === 'fp16' ? 128 : dtype === 'q8' ? 68 : 36));
      const all = w.dequantize();
      if (dtype === 'fp32') expect(Array.from(all)).toEqual(Array.from(v));
      if (dtype === 'q8' || dtype === 'q4')
        expect(Array.from(all)).toEqual(Array.from(refDecode(dtype, w.bytes, v.length)));
      expect(Array.from(w.dequantizeRows(2, 4))).toEqual(Array.from(all.subarray(2 * inF, 4 * inF)));
      const again = PackedWeight.fromBytes(w.bytes.slice(), [out, inF], dtype);
      expect(Array.from(again.dequantize())).toEqual(Array.from(all));
      expect(() => PackedWeight.fromBytes(w.bytes.subarray(1), [out, inF], dtype)).toThrow(/bytes, got/);
      again.dispose();
      w.dispose();
      expect(w.isDisposed).toBe(true);
      expect(() => w.dequantize()).toThrow(/after dispose/);
    }
    expect(packedWeightStats()).toEqual(before);
  });
});

describe('PackedWeight.releaseHostBytes', () => {
  it('frees the host bytes once a prepared form holds the values; host reads are then typed errors', () => {
    const stats0 = packedWeightStats();
    const w = PackedWeight.fromFloat32(new Float32Array(64).fill(0.25), [2, 32], 'q4');
    expect(() => w.releaseHostBytes()).toThrow(/no prepared form/);
    let disposed = 0;
    const form = w.prepared('test', () => ({ dispose: () => disposed++ }));
    w.releaseHostBytes();
    expect(w.isHostReleased).toBe(true);
    expect(w.isDisposed).toBe(false);
    expect(w.byteLength).toBe(2 * BLOCK_Q4_0_BYTES);
    expect(packedWeightStats()).toEqual({ count: stats0.count + 1, bytes: stats0.bytes });
    expect(w.prepared('test', () => ({ dispose() {} }))).toBe(form); // the existing form still serves
    for (const read of [() => w.bytes, () => w.dequantize(), () => w.prepared('other', () => ({ dispose() {} }))]) {
      let err: unknown;
      try {
        read();
      } catch (e) {
        err = e;
      }
      expect((err as OwletError).code).toBe('PACKED_HOST_RELEASED');
    }
    w.dispose();
    expect(disposed).toBe(1);
    expect(packedWeightStats()).toEqual(stats0);
    expect(() => w.bytes).toThrow(/after dispose/);
  });
});

describeBackends('linear with packed weights (composite path)', ({ it }) => {
  it('equals x · decode(W)ᵀ + b in float64, ranks 2 and 3, every dtype, no leaks', async () => {
    const [n, inF, out] = [3, 64, 7];
    const x = toF32(randn(n * inF, 5));
    const wv = f32(randn(out * inF, 6, 0.2));
    const b = toF32(randn(out, 7));
    for (const dtype of ['fp32', 'fp16', 'q8', 'q4'] as const) {
      const stats = packedWeightStats();
      await expectNoLeaks(async () => {
        const w = PackedWeight.fromFloat32(wv, [out, inF], dtype);
        const dec = w.dequantize();
        const ref = new Float64Array(n * out);
        for (let i = 0; i < n; i++)
          for (let o = 0; o < out; o++) {
            let s = b[o] as number;
            for (let k = 0; k < inF; k++) s += (x[i * inF + k] as number) * (dec[o * inF + k] as number);
            ref[i * out + o] = s;
          }
        const xt = tf.tensor(Float32Array.from(x), [1, n, inF]);
        const bt = tf.tensor(Float32Array.from(b), [out]);
        const y = linear(xt, w, bt);
        expect(y.shape).toEqual([1, n, out]);
        expectAllClose(await y.data(), ref, { atol: 2e-5, rtol: 2e-5, label: `linear ${dtype}` });
        tf.dispose([xt, bt, y]);
        w.dispose();
      }, `linear ${dtype}`);
      expect(packedWeightStats()).toEqual(stats);
    }
  });

  it('a Linear module with a packed weight: same output as the float32 module on the decoded weight', async () => {
    await expectNoLeaks(async () => {
      const lin = new Linear(64, 6);
      lin.initialize({ seed: 4 });
      const x = tf.randomNormal([2, 64], 0, 1, 'float32', 9);
      const ref = new Linear(64, 6);
      ref.initialize({ seed: 4 });
      lin.weight.pack('q8');
      expect(lin.weight.weightDType).toBe('q8');
      expect(lin.weight.trainable).toBe(false);
      expect(() => lin.weight.value).toThrow(/holds a q8 weight outside the tfjs heap/);
      expect(() => {
        lin.weight.trainable = true;
      }).toThrow(/cannot be trained/);
      const dec = lin.weight.canonical();
      ref.weight.assign(dec);
      const [a, r] = [lin.forward(x), ref.forward(x)];
      expectAllClose(await a.data(), await r.data(), { atol: 1e-5, rtol: 1e-5, label: 'packed Linear' });
      // assign() keeps the packed dtype; unpack() returns to a tfjs variable
      lin.weight.assign(dec);
      expect(lin.weight.weightDType).toBe('q8');
      lin.weight.unpack();
      expect(lin.weight.packed).toBeNull();
      tf.dispose([x, a, r, dec]);
      lin.dispose();
      ref.dispose();
    }, 'packed Linear');
  });
});
