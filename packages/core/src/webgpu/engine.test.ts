import * as tf from '@tensorflow/tfjs-core';
import { expectAllClose, expectNoLeaks, randn, selectedBackends, toF32, useBackend } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { attentionOverSegments } from '../ops/attention.js';
import { quickGelu, swiglu } from '../ops/activations.js';
import { lastKernel, withoutKernels } from '../ops/kernels.js';
import { linear } from '../ops/linear.js';
import { layerNorm, rmsNorm } from '../ops/norm.js';
import { applyRope, ropeTables } from '../ops/rope.js';
import { refAttention, refLayerNorm, refLinear, refRmsNorm, refRope } from '../ops/reference.test-helpers.js';
import { PackedWeight, type WeightDType } from '../quant/packed.js';
import { isOwletError } from '../errors.js';
import { Module } from '../module.js';
import { Linear } from '../nn/Linear.js';
import { disableWebGPUEngine, enableWebGPUEngine, uploadWebGPUWeights, webgpuEngineInfo } from './index.js';
import { planWeightChunks } from './weights.js';

const f32 = (a: Float64Array) => Float32Array.from(a);
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

describe.runIf(selectedBackends().includes('webgpu'))('WebGPU engine kernels [webgpu]', () => {
  beforeAll(async () => {
    await useBackend('webgpu');
    enableWebGPUEngine();
  });
  afterAll(() => disableWebGPUEngine());

  const DTYPES: WeightDType[] = ['fp32', 'fp16', 'q8', 'q4'];

  it('linear: every dtype, GEMV (1 and 3 rows) and tiled GEMM (41 rows), with and without bias, rows of x equals the decoded weights in float64', async () => {
    const inF = 96;
    const out = 40;
    const wv = toF32(randn(out * inF, 1, 0.5));
    const bias = toF32(randn(out, 2));
    await expectNoLeaks(async () => {
      for (const dtype of DTYPES) {
        const w = PackedWeight.fromFloat32(f32(wv), [out, inF], dtype);
        const decoded = Float64Array.from(w.dequantize());
        for (const [n, withBias] of [
          [1, false],
          [3, true],
          [41, true],
        ] as const) {
          const xv = toF32(randn(n * inF, 10 + n));
          const x = tf.tensor2d(f32(xv), [n, inF]);
          {
            const b = withBias ? tf.tensor1d(f32(bias)) : null;
            const y = linear(x, w, b);
            expect(lastKernel('linear')).toBe(`owlet-webgpu:${dtype}`);
            const ref = refLinear(xv, n, inF, decoded, out, withBias ? bias : undefined);
            expectAllClose(await y.data(), ref, { atol: 2e-4, rtol: 1e-5, label: `${dtype} n=${n} bias=${withBias}` });
            tf.dispose([y, b as tf.Tensor]);
          }
          x.dispose();
        }
        w.dispose();
      }
    });
  });

  it('linear: a float32 [out, in] tensor weight and a rank-3 input', async () => {
    const [inF, out] = [64, 24];
    const wv = toF32(randn(out * inF, 3));
    const xv = toF32(randn(2 * 5 * inF, 4));
    await expectNoLeaks(async () => {
      const w = tf.tensor2d(f32(wv), [out, inF]);
      const x = tf.tensor3d(f32(xv), [2, 5, inF]);
      const y = linear(x, w);
      expect(lastKernel('linear')).toBe('owlet-webgpu:fp32');
      expect(y.shape).toEqual([2, 5, out]);
      expectAllClose(await y.data(), refLinear(xv, 10, inF, wv, out), { atol: 1e-4 });
      tf.dispose([w, x, y]);
    });
  });

  it('linear: a weight over the binding limit is split into chunks and gives the same numbers', async () => {
    const [inF, out] = [64, 200];
    const wv = toF32(randn(out * inF, 5, 0.3));
    const limit = 64 * 2 * 16; // q4: 64 rows of 2 blocks (16 bytes of quants each) per chunk
    expect(planWeightChunks('q4', out, inF, limit).map((c) => c.rows)).toEqual([64, 64, 64, 8]);
    enableWebGPUEngine({ maxBindingBytes: limit });
    try {
      await expectNoLeaks(async () => {
        for (const dtype of DTYPES) {
          const w = PackedWeight.fromFloat32(f32(wv), [out, inF], dtype);
          const decoded = Float64Array.from(w.dequantize());
          for (const n of [2, 33]) {
            const xv = toF32(randn(n * inF, 6 + n));
            const x = tf.tensor2d(f32(xv), [n, inF]);
            const y = linear(x, w);
            expectAllClose(await y.data(), refLinear(xv, n, inF, decoded, out), {
              atol: 2e-4,
              label: `${dtype} split n=${n}`,
            });
            tf.dispose([x, y]);
          }
          w.dispose();
        }
      });
      expect(webgpuEngineInfo()?.weights).toBe(0);
    } finally {
      enableWebGPUEngine();
    }
  });

  it('a float32 parameter over the binding limit fails the upload with WEBGPU_LIMIT naming it; packed ones are split', async () => {
    class Tiny extends Module {
      constructor() {
        super();
        this.registerModule('proj', new Linear(64, 16, { bias: true }));
        this.registerModule('head', new Linear(64, 40, { bias: false }));
      }
    }
    enableWebGPUEngine({ maxBindingBytes: 2048 });
    try {
      const m = new Tiny().initialize({ seed: 1 });
      // proj.weight is 64·16·4 = 4096 bytes as float32: over the limit
      const err = await uploadWebGPUWeights(m).catch((e: unknown) => e);
      expect(isOwletError(err, 'WEBGPU_LIMIT'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/proj\.weight \[16, 64\] is 4096 bytes/);
      expect((err as Error).message).toMatch(/maxStorageBufferBindingSize of 2048 bytes/);
      // packed, the same weights are split into chunks of ≤ 2048 bytes and upload
      m.setWeightDTypes({ decoder: 'q8' });
      const r = await uploadWebGPUWeights(m);
      expect(r.packed).toBe(2);
      expect(r.tensors).toBe(1); // the bias
      m.dispose();
      expect(webgpuEngineInfo()?.weights).toBe(0);
    } finally {
      enableWebGPUEngine();
    }
  });

  it('releaseHostBytes: the GPU copy keeps computing; host decoding is a typed error', async () => {
    class Tiny extends Module {
      constructor() {
        super();
        this.registerModule('proj', new Linear(64, 24, { bias: false }));
      }
    }
    const m = new Tiny().initialize({ seed: 4 });
    m.setWeightDTypes({ decoder: 'q4' });
    const x = tf.tensor2d(Float32Array.from(randn(2 * 64, 5)), [2, 64]);
    const p = m.getParameter('proj.weight');
    if (!p?.packed) throw new Error('not packed');
    const before = linear(x, p);
    const r = await uploadWebGPUWeights(m, { releaseHostBytes: true });
    expect(r.releasedHostBytes).toBe(24 * 2 * 18);
    expect(p.packed.isHostReleased).toBe(true);
    const after = linear(x, p);
    expect(lastKernel('linear')).toBe('owlet-webgpu:q4');
    expect(Array.from(await after.data())).toEqual(Array.from(await before.data()));
    expect(() => withoutKernels(() => linear(x, p))).toThrow(/host bytes were released/);
    tf.dispose([x, before, after]);
    m.dispose();
  });

  it('fp16 weights decode exactly, subnormal halves included', async () => {
    // values whose binary16 forms are subnormal (< 2^-14), normal and large
    const inF = 8;
    const wv = Float32Array.from([3e-7, -5.9604645e-8, 6.1e-5, -1e-6, 0.5, -1.25, 1000, 2 ** -20]);
    const w = PackedWeight.fromFloat32(wv, [1, inF], 'fp16');
    const decoded = Float64Array.from(w.dequantize());
    const x = tf.eye(inF);
    const y = linear(x, w); // row i = weight i
    expect(Array.from(await y.data())).toEqual(Array.from(decoded));
    tf.dispose([x, y]);
    w.dispose();
  });

  it('rmsNorm and layerNorm match their float64 definitions (rows wider than a workgroup too)', async () => {
    await expectNoLeaks(async () => {
      for (const d of [8, 100]) {
        const xv = toF32(randn(3 * d, 7));
        const wv = toF32(randn(d, 8));
        const bv = toF32(randn(d, 9));
        const x = tf.tensor2d(f32(xv), [3, d]);
        const w = tf.tensor1d(f32(wv));
        const b = tf.tensor1d(f32(bv));
        const y = rmsNorm(x, w, 1e-6);
        expect(lastKernel('rmsNorm')).toBe('owlet-webgpu');
        expectAllClose(await y.data(), refRmsNorm(xv, d, wv, 1e-6), { atol: 2e-5, label: `rms d=${d}` });
        const z = layerNorm(x, w, b, 1e-5);
        expect(lastKernel('layerNorm')).toBe('owlet-webgpu');
        expectAllClose(await z.data(), refLayerNorm(xv, d, wv, bv, 1e-5), { atol: 2e-5, label: `ln d=${d}` });
        tf.dispose([x, w, b, y, z]);
      }
    });
  });

  it('rope, swiglu and quickGelu match their float64 definitions', async () => {
    await expectNoLeaks(async () => {
      const shape: [number, number, number, number] = [2, 3, 4, 8];
      const n = shape.reduce((a, b) => a * b, 1);
      const xv = toF32(randn(n, 11));
      const pos = [
        [0, 1, 2, 3],
        [5, 6, 9, 40],
      ];
      const x = tf.tensor4d(f32(xv), shape);
      const t = ropeTables(pos, 8);
      const y = applyRope(x, t);
      expect(lastKernel('rope')).toBe('owlet-webgpu');
      expectAllClose(await y.data(), refRope(xv, shape, pos, 10000), { atol: 2e-5, label: 'rope' });
      const gv = toF32(randn(n, 12));
      const g = tf.tensor4d(f32(gv), shape);
      const s = swiglu(g, x);
      expect(lastKernel('swiglu')).toBe('owlet-webgpu');
      expectAllClose(
        await s.data(),
        gv.map((v, i) => v * sigmoid(v) * (xv[i] as number)),
        { atol: 2e-5, label: 'swiglu' },
      );
      const qg = quickGelu(g);
      expect(lastKernel('quickGelu')).toBe('owlet-webgpu');
      expectAllClose(
        await qg.data(),
        gv.map((v) => v * sigmoid(1.702 * v)),
        { atol: 2e-5, label: 'quickGelu' },
      );
      tf.dispose([x, t.cos, t.sin, y, g, s, qg]);
    });
  });

  it('attention over 1–7 segments (several passes), causal and full, grouped-query, with an additive mask', async () => {
    const dims = { B: 2, H: 4, Hkv: 2, Lq: 3, Lk: 70, D: 8 };
    const { B, H, Hkv, Lq, Lk, D } = dims;
    const qv = toF32(randn(B * H * Lq * D, 21));
    const kv = toF32(randn(B * Hkv * Lk * D, 22));
    const vv = toF32(randn(B * Hkv * Lk * D, 23));
    const maskv = new Float64Array(Lq * Lk);
    for (let j = 0; j < Lk; j += 7) for (let i = 0; i < Lq; i++) maskv[i * Lk + j] = -1e9;
    const q = tf.tensor4d(f32(qv), [B, H, Lq, D]);
    const k = tf.tensor4d(f32(kv), [B, Hkv, Lk, D]);
    const v = tf.tensor4d(f32(vv), [B, Hkv, Lk, D]);
    const mask = tf.tensor2d(f32(maskv), [Lq, Lk]);
    await expectNoLeaks(async () => {
      for (const cuts of [[], [64], [10, 20, 40], [1, 2, 3, 10, 20, 69]]) {
        const bounds = [0, ...cuts, Lk];
        const segs = bounds.slice(1).map((e, i) => {
          const s = bounds[i] as number;
          return {
            k: tf.slice(k, [0, 0, s, 0], [-1, -1, e - s, -1]),
            v: tf.slice(v, [0, 0, s, 0], [-1, -1, e - s, -1]),
          };
        });
        for (const causal of [false, true]) {
          for (const withMask of [false, true]) {
            const y = attentionOverSegments(q, segs, { causal, mask: withMask ? mask : null });
            expect(lastKernel('attention')).toBe('owlet-webgpu');
            const ref = refAttention(qv, kv, vv, dims, causal, withMask ? maskv : undefined);
            expectAllClose(await y.data(), ref, {
              atol: 2e-5,
              label: `segments=${segs.length} causal=${causal} mask=${withMask}`,
            });
            y.dispose();
          }
        }
        tf.dispose(segs.flatMap((s) => [s.k, s.v]));
      }
    });
    tf.dispose([q, k, v, mask]);
  });
});
