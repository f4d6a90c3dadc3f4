import { availableParallelism } from 'node:os';

import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectNoLeaks, randn } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it, it as vitestIt } from 'vitest';

import { lastKernel, linear } from '../ops/index.js';
import { PackedWeight, packedWeightStats, type WeightDType } from '../quant/packed.js';
import { CPU_ENGINE_BACKENDS, disableCpuEngine, enableCpuEngine, getCpuEngine } from './index.js';

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);

/** The kernels' int16 activations (per 32 values d = max|x|/32767), float32 rounding where they round. */
function quantizeActivations(x: Float32Array, n: number, k: number): { d: Float64Array; q: Int16Array } {
  const nb = k / 32;
  const d = new Float64Array(n * nb);
  const q = new Int16Array(n * k);
  for (let i = 0; i < n * nb; i++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i * 32 + j] as number));
    const dd = Math.fround(amax / 32767);
    const id = dd ? Math.fround(1 / dd) : 0;
    d[i] = dd;
    for (let j = 0; j < 32; j++) {
      const v = Math.fround((x[i * 32 + j] as number) * id);
      const r = Math.round(v);
      q[i * 32 + j] = Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : r; // ties to even
    }
  }
  return { d, q };
}

/** float64 reference of what the kernel computes, and a bound on float32 rounding. */
function reference(
  dtype: WeightDType,
  x: Float32Array,
  w: PackedWeight,
  bias: Float32Array | null,
  n: number,
): { y: Float64Array; mag: Float64Array } {
  const [out, k] = w.shape;
  const dec = w.dequantize(); // exact decoded weights
  const y = new Float64Array(n * out);
  const mag = new Float64Array(n * out);
  const qa = dtype === 'q8' || dtype === 'q4' ? quantizeActivations(x, n, k) : null;
  for (let i = 0; i < n; i++)
    for (let r = 0; r < out; r++) {
      let s = bias ? (bias[r] as number) : 0;
      let m = Math.abs(s);
      for (let j = 0; j < k; j++) {
        const xv = qa
          ? (qa.q[i * k + j] as number) * (qa.d[i * (k / 32) + Math.floor(j / 32)] as number)
          : (x[i * k + j] as number);
        s += (dec[r * k + j] as number) * xv;
        m += Math.abs((dec[r * k + j] as number) * xv);
      }
      y[i * out + r] = s;
      mag[i * out + r] = m;
    }
  return { y, mag };
}

for (const threads of [1, 2]) {
  describeBackends(`CPU engine, ${threads} thread(s)`, ({ backend, it: matrixIt }) => {
    // The engine's kernels serve the backends whose tensors live in host memory; on webgpu the
    // composite (or the WebGPU engine) answers, which the WebGPU tests cover.
    const onHost = CPU_ENGINE_BACKENDS.includes(backend);
    const it: typeof matrixIt = onHost
      ? matrixIt
      : (name) => vitestIt.skip(`${name} (the CPU engine serves ${CPU_ENGINE_BACKENDS.join(' and ')} only)`, () => {});
    beforeAll(async () => {
      disableCpuEngine();
      await enableCpuEngine({ threads });
    });
    afterAll(() => disableCpuEngine());

    it('linear for fp32 / fp16 / q8 / q4 weights equals the float64 reference on ragged shapes, no leaks', async () => {
      expect(getCpuEngine()?.threads).toBe(threads);
      const shapes: [number, number, number][] = [
        [1, 32, 1],
        [3, 64, 5],
        [5, 96, 33],
        [7, 160, 67],
        [1, 2048, 300], // large enough to be split over the threads
        [6, 1024, 130],
      ];
      for (const dtype of ['fp32', 'fp16', 'q8', 'q4'] as const) {
        for (const [n, k, out] of shapes) {
          const stats = packedWeightStats();
          await expectNoLeaks(async () => {
            const x = f32(randn(n * k, n * 7 + k, 1));
            const w = PackedWeight.fromFloat32(f32(randn(out * k, out + k, 0.1)), [out, k], dtype);
            expect(w.allocator).toBe('owlet-cpu');
            const bias = out % 2 ? f32(randn(out, 3)) : null;
            const xt = tf.tensor(x, [1, n, k]);
            const bt = bias ? tf.tensor(bias) : null;
            const yt = linear(xt, w, bt);
            expect(lastKernel('linear')).toBe(`owlet-cpu:${dtype}`);
            expect(yt.shape).toEqual([1, n, out]);
            const y = await yt.data();
            const ref = reference(dtype, x, w, bias, n);
            for (let i = 0; i < y.length; i++) {
              // float32 accumulation: a few ulps of the sum of magnitudes
              const tol = 4e-7 * (ref.mag[i] as number) * Math.sqrt(k) + 1e-6;
              if (Math.abs((y[i] as number) - (ref.y[i] as number)) > tol) {
                throw new Error(
                  `${dtype} [${n}, ${k}] → ${out}: y[${i}] = ${y[i]}, reference ${ref.y[i]} (tol ${tol})`,
                );
              }
            }
            tf.dispose([xt, yt, ...(bt ? [bt] : [])]);
            w.dispose();
          }, `${dtype} ${n}x${k}x${out}`);
          expect(packedWeightStats()).toEqual(stats);
        }
      }
    });

    it('q8 / q4 inputs that are not whole 32-value blocks cannot be packed; fp32 / fp16 take any size', async () => {
      expect(() => PackedWeight.fromFloat32(new Float32Array(3 * 48), [3, 48], 'q4')).toThrow(/multiple of 32/);
      for (const dtype of ['fp32', 'fp16'] as const) {
        const w = PackedWeight.fromFloat32(f32(randn(3 * 7, 1)), [3, 7], dtype);
        const x = tf.tensor(f32(randn(2 * 7, 2)), [2, 7]);
        const y = linear(x, w);
        const ref = reference(dtype, (await x.data()) as Float32Array, w, null, 2);
        const got = await y.data();
        for (let i = 0; i < 6; i++) expect(Math.abs((got[i] as number) - (ref.y[i] as number))).toBeLessThan(1e-5);
        tf.dispose([x, y]);
        w.dispose();
      }
    });

    it('a weight packed before the engine started is copied into the engine once and freed with it', async () => {
      disableCpuEngine();
      const w = PackedWeight.fromFloat32(f32(randn(4 * 64, 9, 0.1)), [4, 64], 'q8');
      expect(w.allocator).toBe('heap');
      await enableCpuEngine({ threads });
      const x = tf.tensor(f32(randn(64, 10)), [1, 64]);
      const y = linear(x, w);
      expect(lastKernel('linear')).toBe('owlet-cpu:q8');
      const ref = reference('q8', (await x.data()) as Float32Array, w, null, 1);
      const got = await y.data();
      for (let i = 0; i < 4; i++) expect(Math.abs((got[i] as number) - (ref.y[i] as number))).toBeLessThan(1e-5);
      const engineBytes = getCpuEngine()?.info().weightBytes;
      w.dispose();
      expect(getCpuEngine()?.info().weightBytes).toBe((engineBytes as number) - 4 * 2 * 34);
      tf.dispose([x, y]);
    });
  });
}

describe('CPU engine threads', () => {
  it('defaults to every hardware thread, rejects a bad count, and says how many it runs', async () => {
    disableCpuEngine();
    const e = await enableCpuEngine();
    expect(e.threads).toBe(availableParallelism());
    expect(e.info()).toMatchObject({ threads: availableParallelism(), sharedMemory: true });
    await expect(enableCpuEngine({ threads: e.threads + 1 })).rejects.toThrow(/already runs with/);
    disableCpuEngine();
    await expect(enableCpuEngine({ threads: 0 })).rejects.toThrow(/positive integer/);
    expect(getCpuEngine()).toBeNull();
  });
});
