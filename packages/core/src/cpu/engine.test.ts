// The CPU engines (WebAssembly SIMD128, and the native add-on when it is built here) against
// references written in this file: q8 / q4 products equal, bit for bit, a float32 emulation of the
// documented numerics (int16 activations, exact int32 block sums, float32 steps in order) in every
// engine and thread count; everything else within float32 rounding of a float64 reference.
import { availableParallelism } from 'node:os';

import * as tf from '@tensorflow/tfjs-core';
import { expectNoLeaks, randn, useBackend } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  applyRope,
  attentionOverSegments,
  gelu,
  lastKernel,
  layerNorm,
  linear,
  mergeHeads,
  quickGelu,
  rmsNorm,
  ropeTables,
  splitHeads,
  swiglu,
  withoutKernels,
} from '../ops/index.js';
import { refLayerNorm, refRmsNorm, refRope } from '../ops/reference.test-helpers.js';
import { halfToFloat } from '../quant/ggml.js';
import { PackedWeight, packedWeightStats, type WeightDType } from '../quant/packed.js';
import { disableCpuEngine, enableCpuEngine, getCpuEngine, loadNativeAddon } from './index.js';
import { convertX16, x16ByteLength } from './layout.js';

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
const f64 = (a: ArrayLike<number>) => Float64Array.from(a);
const fr = Math.fround;
const { addon: native, why: nativeWhy } = await loadNativeAddon();
const KINDS: ('wasm' | 'native')[] = native ? ['wasm', 'native'] : ['wasm'];

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : r;
}

/**
 * The q8 / q4 products as documented, emulated in float32: per 32 activations d = max|x|/32767,
 * q = round-half-even(x · (1/d)); per block S = Σ w_q · q exactly; acc = acc + float(S)·(d_w·d_x);
 * y = acc (+ bias). Weights from their canonical GGUF bytes.
 */
function exactQuantized(
  dtype: 'q8' | 'q4',
  w: PackedWeight,
  x: Float32Array,
  n: number,
  bias: Float32Array | null,
): Float32Array {
  const [out, k] = w.shape;
  const can = w.canonicalBytes();
  const nb = k / 32;
  const qs = new Int16Array(n * k);
  const qd = new Float32Array(n * nb);
  for (let i = 0; i < n * nb; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i * 32 + j] as number));
    const d = fr(amax / 32767);
    const id = d ? fr(1 / d) : 0;
    qd[i] = d;
    for (let j = 0; j < 32; j++) qs[i * 32 + j] = roundHalfEven(fr((x[i * 32 + j] as number) * id));
  }
  const bb = dtype === 'q8' ? 34 : 18;
  const s8 = new Int8Array(can.buffer, can.byteOffset, can.byteLength);
  const y = new Float32Array(n * out);
  for (let i = 0; i < n; i++)
    for (let r = 0; r < out; r++) {
      let acc = 0;
      for (let b = 0; b < nb; b++) {
        const o = (r * nb + b) * bb;
        const dw = halfToFloat((can[o] as number) | ((can[o + 1] as number) << 8));
        let s = 0;
        for (let j = 0; j < 32; j++) {
          const q =
            dtype === 'q8'
              ? (s8[o + 2 + j] as number)
              : (j < 16 ? (can[o + 2 + j] as number) & 15 : (can[o + 2 + j - 16] as number) >> 4) - 8;
          s += q * (qs[i * k + b * 32 + j] as number);
        }
        acc = fr(acc + fr(fr(s) * fr(dw * (qd[i * nb + b] as number))));
      }
      y[i * out + r] = bias ? fr(acc + (bias[r] as number)) : acc;
    }
  return y;
}

/** float64 product on the decoded weights, and Σ|w·x| per output (for a float32 rounding bound). */
function floatReference(w: PackedWeight, x: Float32Array, n: number, bias: Float32Array | null) {
  const [out, k] = w.shape;
  const dec = w.dequantize();
  const y = new Float64Array(n * out);
  const mag = new Float64Array(n * out);
  for (let i = 0; i < n; i++)
    for (let r = 0; r < out; r++) {
      let s = bias ? (bias[r] as number) : 0;
      let m = Math.abs(s);
      for (let j = 0; j < k; j++) {
        const p = (dec[r * k + j] as number) * (x[i * k + j] as number);
        s += p;
        m += Math.abs(p);
      }
      y[i * out + r] = s;
      mag[i * out + r] = m;
    }
  return { y, mag };
}

/** float64 attention with an additive per-batch mask [B, Lk] (or none), causal with the queries last. */
function refAttention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  [b, h, lq, d]: [number, number, number, number],
  hkv: number,
  lk: number,
  causal: boolean,
  mask: Float64Array | null,
): Float64Array {
  const out = new Float64Array(b * h * lq * d);
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++) {
      const hk = Math.floor(hi / (h / hkv));
      for (let i = 0; i < lq; i++) {
        const s = new Float64Array(lk);
        let m = -Infinity;
        for (let j = 0; j < lk; j++) {
          let t = 0;
          for (let e = 0; e < d; e++)
            t += (q[((bi * h + hi) * lq + i) * d + e] as number) * (k[((bi * hkv + hk) * lk + j) * d + e] as number);
          t = t / Math.sqrt(d) + (mask ? (mask[bi * lk + j] as number) : 0);
          if (causal && j > lk - lq + i) t = -Infinity;
          s[j] = t;
          m = Math.max(m, t);
        }
        let z = 0;
        for (let j = 0; j < lk; j++) {
          s[j] = Math.exp((s[j] as number) - m);
          z += s[j] as number;
        }
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < lk; j++)
            acc += ((s[j] as number) / z) * (v[((bi * hkv + hk) * lk + j) * d + e] as number);
          out[((bi * h + hi) * lq + i) * d + e] = acc;
        }
      }
    }
  return out;
}

const SHAPES: [number, number, number][] = [
  [1, 32, 1],
  [3, 64, 5],
  [5, 96, 33],
  [9, 160, 67],
  [1, 2048, 300], // large enough to be split over the threads
  [17, 1024, 130],
];

/** q8 / q4 outputs per kind and thread count, compared across engines at the end. */
const quantizedOutputs = new Map<string, Float32Array[]>();

for (const backend of ['cpu', 'wasm'] as const) {
  for (const kind of KINDS) {
    for (const threads of [1, 2]) {
      describe(`CPU engine (${kind}, ${threads} thread(s)) on ${backend}`, () => {
        beforeAll(async () => {
          await useBackend(backend);
          disableCpuEngine();
          await enableCpuEngine({ threads, kernels: kind });
        });
        afterAll(() => disableCpuEngine());

        it('linear: q8 / q4 bit-identical to the documented numerics, fp32 / fp16 within float32 rounding, no leaks', async () => {
          expect(getCpuEngine()?.threads).toBe(threads);
          expect(getCpuEngine()?.kind).toBe(kind);
          const outs: Float32Array[] = [];
          for (const dtype of ['q8', 'q4', 'fp32', 'fp16'] as WeightDType[]) {
            for (const [n, k, out] of SHAPES) {
              const stats = packedWeightStats();
              await expectNoLeaks(async () => {
                const x = f32(randn(n * k, n * 7 + k, 1));
                const w = PackedWeight.fromFloat32(f32(randn(out * k, out + k, 0.1)), [out, k], dtype);
                expect(w.allocator).toBe(`owlet-cpu-${kind}`);
                expect(w.layout).toBe('x16');
                const bias = out % 2 ? f32(randn(out, 3)) : null;
                const xt = tf.tensor(x, [1, n, k]);
                const bt = bias ? tf.tensor(bias) : null;
                const yt = linear(xt, w, bt);
                expect(lastKernel('linear')).toBe(`owlet-cpu-${kind}:${dtype}`);
                expect(yt.shape).toEqual([1, n, out]);
                const y = (await yt.data()) as Float32Array;
                if (dtype === 'q8' || dtype === 'q4') {
                  const want = exactQuantized(dtype, w, x, n, bias);
                  const bad = y.findIndex((v, i) => v !== want[i]);
                  if (bad >= 0)
                    throw new Error(`${dtype} [${n}, ${k}] → ${out}: y[${bad}] = ${y[bad]}, want ${want[bad]}`);
                  outs.push(y);
                } else {
                  const ref = floatReference(w, x, n, bias);
                  for (let i = 0; i < y.length; i++) {
                    // float32 accumulation along k (fused or not): k ulps of Σ|w·x|
                    const tol = 2 ** -23 * (ref.mag[i] as number) * k + 1e-6;
                    if (Math.abs((y[i] as number) - (ref.y[i] as number)) > tol)
                      throw new Error(`${dtype} [${n}, ${k}] → ${out}: y[${i}] = ${y[i]}, reference ${ref.y[i]}`);
                  }
                }
                tf.dispose([xt, yt, ...(bt ? [bt] : [])]);
                w.dispose();
              }, `${dtype} ${n}x${k}x${out}`);
              expect(packedWeightStats()).toEqual(stats);
            }
          }
          quantizedOutputs.set(`${backend} ${kind} ${threads}`, outs);
        });

        it('rmsNorm, layerNorm, swiglu, gelu, quickGelu, rope: the owned kernels within float32 rounding of float64', async () => {
          const rows = 7;
          const d = 96;
          const xv = f32(randn(rows * d, 11, 2));
          const wv = f32(randn(d, 12));
          const bv = f32(randn(d, 13));
          await expectNoLeaks(async () => {
            const x = tf.tensor(xv, [1, rows, d]);
            const w = tf.tensor(wv);
            const b = tf.tensor(bv);
            const check = async (t: tf.Tensor, op: string, ref: Float64Array, tol: number) => {
              expect(lastKernel(op as 'rmsNorm')).toBe(`owlet-cpu-${kind}`);
              const got = await t.data();
              let worst = 0;
              for (let i = 0; i < ref.length; i++)
                worst = Math.max(
                  worst,
                  Math.abs((got[i] as number) - (ref[i] as number)) / (1 + Math.abs(ref[i] as number)),
                );
              expect(worst, op).toBeLessThan(tol);
              t.dispose();
            };
            await check(rmsNorm(x, w, 1e-6), 'rmsNorm', refRmsNorm(f64(xv), d, f64(wv), 1e-6), 1e-6);
            await check(layerNorm(x, w, b, 1e-5), 'layerNorm', refLayerNorm(f64(xv), d, f64(wv), f64(bv), 1e-5), 1e-6);
            const sig = (v: number) => 1 / (1 + Math.exp(-v));
            const up = xv.map((v) => v * 0.5 - 0.25);
            const u = tf.tensor(up, [1, rows, d]);
            await check(swiglu(x, u), 'swiglu', f64(xv.map((g, i) => g * sig(g) * (up[i] as number))), 1e-6);
            u.dispose();
            const erf = (v: number) => {
              // erf by its series (|v| ≤ 6 here): an independent float64 reference
              let s = 0;
              let t = v;
              for (let nn = 0; nn < 200; nn++) {
                s += t / (2 * nn + 1);
                t *= (-v * v) / (nn + 1);
              }
              return (2 / Math.sqrt(Math.PI)) * s;
            };
            await check(gelu(x), 'gelu', f64(xv.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)))), 1e-6);
            await check(quickGelu(x), 'quickGelu', f64(xv.map((v) => v * sig(1.702 * v))), 1e-6);
            // rope over [B, H, L, Dh] with per-batch position ids
            const q = tf.tensor(f32(randn(2 * 3 * 5 * 16, 14)), [2, 3, 5, 16]);
            const ids = [
              [4, 5, 6, 7, 8],
              [0, 1, 2, 3, 4],
            ];
            const tables = ropeTables(ids, 16);
            const ref = refRope(f64(await q.data()), [2, 3, 5, 16], ids, 10000);
            await check(applyRope(q, tables), 'rope', ref, 1e-6);
            tf.dispose([x, w, b, q, tables.cos, tables.sin]);
          }, `${kind} elementwise`);
        });

        it('attention over K/V segments (causal, padding mask, grouped heads, decode) without [Lq, Lk] scores, within float32 rounding', async () => {
          await expectNoLeaks(async () => {
            const b = 2;
            const h = 4;
            const hkv = 2;
            const d = 16;
            const lens = [9, 70, 3]; // a segment longer than one 64-key block
            const lk = lens.reduce((x, y) => x + y, 0);
            const segs = lens.map((n, i) => ({
              k: tf.tensor(f32(randn(b * hkv * n * d, 20 + i)), [b, hkv, n, d]),
              v: tf.tensor(f32(randn(b * hkv * n * d, 30 + i)), [b, hkv, n, d]),
            }));
            const kAll = tf.concat(
              segs.map((s) => s.k),
              2,
            );
            const vAll = tf.concat(
              segs.map((s) => s.v),
              2,
            );
            const maskData = new Float32Array(b * lk);
            maskData[lk + 3] = -1e9; // batch 1 cannot see key 3
            const mask = tf.tensor(maskData, [b, 1, 1, lk]);
            for (const [lq, causal, withMask] of [
              [6, true, true],
              [6, false, false],
              [1, true, false],
              [5, false, true],
            ] as const) {
              const q = tf.tensor(f32(randn(b * h * lq * d, 40 + lq)), [b, h, lq, d]);
              const out = attentionOverSegments(q, segs, { causal, mask: withMask ? mask : null });
              expect(lastKernel('attention')).toBe(`owlet-cpu-${kind}`);
              const ref = refAttention(
                f64(await q.data()),
                f64(await kAll.data()),
                f64(await vAll.data()),
                [b, h, lq, d],
                hkv,
                lk,
                causal,
                withMask ? f64(maskData) : null,
              );
              const got = await out.data();
              let worst = 0;
              for (let i = 0; i < ref.length; i++)
                worst = Math.max(worst, Math.abs((got[i] as number) - (ref[i] as number)));
              expect(worst, `lq ${lq} causal ${causal} mask ${withMask}`).toBeLessThan(2e-6);
              tf.dispose([q, out]);
            }
            tf.dispose([kAll, vAll, mask, ...segs.flatMap((s) => [s.k, s.v])]);
          }, `${kind} attention`);
        });

        it('splitHeads / mergeHeads equal the transposes they replace', async () => {
          await expectNoLeaks(async () => {
            for (const [bb, l, hh, p, dh] of [
              [2, 5, 3, 1, 4],
              [1, 1, 4, 1, 8],
              [1, 7, 2, 3, 4],
            ] as const) {
              const x = tf.tensor(f32(randn(bb * l * hh * p * dh, 50)), [bb, l, hh * p * dh]);
              const got = splitHeads(x, hh, p);
              const want = withoutKernels(() => splitHeads(x, hh, p));
              for (let i = 0; i < p; i++)
                expect(Array.from(await (got[i] as tf.Tensor).data())).toEqual(
                  Array.from(await (want[i] as tf.Tensor).data()),
                );
              const m = mergeHeads(got[0] as tf.Tensor);
              const mw = withoutKernels(() => mergeHeads(got[0] as tf.Tensor));
              expect(m.shape).toEqual([bb, l, hh * dh]);
              expect(Array.from(await m.data())).toEqual(Array.from(await mw.data()));
              tf.dispose([x, m, mw, ...got, ...want]);
            }
          }, 'heads');
        });

        it('a weight packed before the engine started is copied into the engine once and freed with it', async () => {
          disableCpuEngine();
          const w = PackedWeight.fromFloat32(f32(randn(4 * 64, 9, 0.1)), [4, 64], 'q8');
          expect(w.allocator).toBe('heap');
          expect(w.layout).toBe('rows');
          await enableCpuEngine({ threads, kernels: kind });
          const xv = f32(randn(64, 10));
          const x = tf.tensor(xv, [1, 64]);
          const y = linear(x, w);
          expect(lastKernel('linear')).toBe(`owlet-cpu-${kind}:q8`);
          expect(Array.from(await y.data())).toEqual(Array.from(exactQuantized('q8', w, xv, 1, null)));
          const engineBytes = getCpuEngine()?.info().weightBytes as number;
          w.dispose();
          expect(getCpuEngine()?.info().weightBytes).toBe(engineBytes - x16ByteLength('q8', 4, 64));
          tf.dispose([x, y]);
        });
      });
    }
  }
}

describe('CPU engine layouts and engines', () => {
  it('every engine and thread count gives the same q8 / q4 products, bit for bit', () => {
    const runs = [...quantizedOutputs.entries()];
    expect(runs.length).toBeGreaterThanOrEqual(2 * KINDS.length * 2);
    const [firstKey, first] = runs[0] as [string, Float32Array[]];
    for (const [key, outs] of runs.slice(1)) {
      expect(outs.length, key).toBe(first.length);
      outs.forEach((o, i) => {
        const f = first[i] as Float32Array;
        const bad = o.findIndex((v, j) => v !== f[j]);
        if (bad >= 0) throw new Error(`${key} differs from ${firstKey} in product ${i} at ${bad}`);
      });
    }
  });

  it('x16 converts exactly to and from the canonical rows for every dtype, padding the last group', () => {
    for (const dtype of ['fp32', 'fp16', 'q8', 'q4'] as const) {
      for (const [out, k] of [
        [1, 32],
        [17, 64],
        [35, 96],
      ] as const) {
        const w = PackedWeight.fromFloat32(f32(randn(out * k, out + k)), [out, k], dtype);
        const can = w.canonicalBytes();
        const x16 = new Uint8Array(x16ByteLength(dtype, out, k)).fill(0xaa);
        convertX16(dtype, out, k, can, x16, true);
        const back = new Uint8Array(can.length);
        convertX16(dtype, out, k, x16, back, false);
        expect(back).toEqual(can);
        if (native) {
          const nx = new Uint8Array(x16.length);
          native.pack(1, ['fp32', 'fp16', 'q8', 'q4'].indexOf(dtype), can, out, k, nx);
          expect(nx).toEqual(x16);
          // quantizing straight into x16 natively = the JS quantizer followed by the conversion
          const direct = new Uint8Array(x16.length);
          native.pack(0, ['fp32', 'fp16', 'q8', 'q4'].indexOf(dtype), w.dequantize(), out, k, direct);
          const requant = PackedWeight.fromFloat32(w.dequantize(), [out, k], dtype).canonicalBytes();
          const want = new Uint8Array(x16.length);
          convertX16(dtype, out, k, requant, want, true);
          expect(direct).toEqual(want);
        }
        w.dispose();
      }
    }
  });

  it(`the native add-on is used when built (here: ${native ? native.info().isa : `not available: ${nativeWhy}`})`, async () => {
    if (process.env.OWLET_REQUIRE_NATIVE === '1') expect(native, nativeWhy).not.toBeNull();
    disableCpuEngine();
    const e = await enableCpuEngine({ threads: 1 });
    expect(e.kind).toBe(native ? 'native' : 'wasm');
    disableCpuEngine();
    if (!native) await expect(enableCpuEngine({ kernels: 'native' })).rejects.toThrow(/native/);
    await expect(enableCpuEngine({ kernels: 'gpu' as 'wasm' })).rejects.toThrow(/kernels must be/);
    disableCpuEngine();
  });

  it('defaults to every hardware thread, rejects a bad count, and says how many it runs', async () => {
    disableCpuEngine();
    const e = await enableCpuEngine();
    expect(e.threads).toBe(availableParallelism());
    expect(e.info()).toMatchObject({ threads: availableParallelism() });
    await expect(enableCpuEngine({ threads: e.threads + 1 })).rejects.toThrow(/already runs with/);
    disableCpuEngine();
    await expect(enableCpuEngine({ threads: 0 })).rejects.toThrow(/positive integer/);
    expect(getCpuEngine()).toBeNull();
  });
});
