import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectAllClose, expectNoLeaks } from '@owlet/test-utils';
import { afterEach, expect } from 'vitest';

import { Parameter } from '../parameter.js';
import { PackedWeight } from '../quant/packed.js';
import {
  getKernels,
  lastKernel,
  linear,
  registerKernel,
  rmsNorm,
  setKernelsEnabled,
  swiglu,
  withoutKernels,
  type KernelArgs,
} from './index.js';

const undo: (() => void)[] = [];
afterEach(() => {
  while (undo.length) undo.pop()?.();
  setKernelsEnabled(true);
});

describeBackends('kernel registry', ({ it, backend }) => {
  it('dispatches linear by backend and weight dtype; a declining kernel falls through to the composite', async () => {
    const seen: string[] = [];
    // a q4 "kernel" that computes the product from the decoded weight itself (so its result is checkable)
    undo.push(
      registerKernel({
        op: 'linear',
        backend,
        dtype: 'q4',
        name: 'test-q4',
        run: (a: KernelArgs['linear']) => {
          seen.push(`q4 ${a.inFeatures}->${a.outFeatures}`);
          if (a.inFeatures !== 64) return null; // declines
          return tf.tidy(() => tf.add(tf.matMul(a.x, (a.weight as PackedWeight).toTensor(), false, true), 1000));
        },
      }),
      registerKernel({ op: 'linear', backend: 'no-such-backend', name: 'elsewhere', run: () => tf.scalar(0) }),
    );
    expect(getKernels('linear', backend, 'q4').map((k) => k.name)).toEqual(['test-q4']);
    expect(getKernels('linear', backend, 'q8')).toEqual([]);
    await expectNoLeaks(async () => {
      const x = tf.ones([2, 64]);
      const w4 = PackedWeight.fromFloat32(new Float32Array(3 * 64).fill(0.5), [3, 64], 'q4');
      const y = linear(x, w4);
      expect(lastKernel('linear')).toBe('test-q4');
      expectAllClose(await y.data(), new Float64Array(6).fill(1032), { atol: 1e-4, label: 'kernel result' });
      // fp32 tensors and q8 weights have no kernel here: composite
      const w8 = PackedWeight.fromFloat32(new Float32Array(3 * 64).fill(0.5), [3, 64], 'q8');
      const y8 = linear(x, w8);
      expect(lastKernel('linear')).toBe('composite');
      const d8 = w8.dequantize()[0] as number; // 0.5 through an fp16 scale
      expectAllClose(await y8.data(), new Float64Array(6).fill(64 * d8), { atol: 1e-4, label: 'composite q8' });
      // the kernel declines other shapes
      const x2 = tf.ones([2, 32]);
      const w2 = PackedWeight.fromFloat32(new Float32Array(3 * 32).fill(0.5), [3, 32], 'q4');
      const y2 = linear(x2, w2);
      expect(lastKernel('linear')).toBe('composite');
      expectAllClose(await y2.data(), new Float64Array(6).fill(16), { atol: 1e-4, label: 'declined' });
      // disabled kernels: the composite runs
      const y3 = withoutKernels(() => linear(x, w4));
      expect(lastKernel('linear')).toBe('composite');
      expectAllClose(await y3.data(), new Float64Array(6).fill(32), { atol: 1e-4, label: 'withoutKernels' });
      tf.dispose([x, x2, y, y8, y2, y3]);
      for (const w of [w4, w8, w2]) w.dispose();
    }, 'registry');
    expect(seen).toEqual(['q4 64->3', 'q4 32->3']);
  });

  it('a gradient tape skips non-differentiable kernels (training stays on the composite path)', async () => {
    let calls = 0;
    undo.push(
      registerKernel({
        op: 'rmsNorm',
        backend: '*',
        name: 'test-rms',
        run: (a: KernelArgs['rmsNorm']) => {
          calls++;
          return tf.clone(a.x);
        },
      }),
    );
    await expectNoLeaks(async () => {
      const x = tf.tensor2d([[1, 2, 3, 4]]);
      const y = rmsNorm(x, null, 1e-6);
      expect(calls).toBe(1);
      expect(lastKernel('rmsNorm')).toBe('test-rms');
      const g = tf.grad((t: tf.Tensor) => tf.sum(rmsNorm(t, null, 1e-6)))(x);
      expect(calls).toBe(1);
      // d/dx sum(x / rms(x)) is not all ones: the composite's gradient, not the identity kernel's
      const gd = await g.data();
      expect(Math.abs((gd[0] as number) - 1)).toBeGreaterThan(1e-3);
      tf.dispose([x, y, g]);
    }, 'tape');
  });

  it('ops without a weight dispatch with dtype fp32; a Linear Parameter passes itself to the kernel', async () => {
    let got: Parameter | null = null;
    undo.push(
      registerKernel({ op: 'swiglu', backend, name: 'test-swiglu', run: (a) => tf.mul(a.gate, a.up) }),
      registerKernel({
        op: 'linear',
        backend,
        dtype: 'fp32',
        name: 'test-fp32',
        run: (a) => {
          got = a.param;
          return null;
        },
      }),
    );
    await expectNoLeaks(async () => {
      const a = tf.tensor1d([1, 2]);
      const b = tf.tensor1d([3, 4]);
      const y = swiglu(a, b);
      expect(Array.from(await y.data())).toEqual([3, 8]);
      const p = new Parameter('w', [2, 2], { linearWeight: true });
      p.initialize(1);
      const one = tf.ones([1, 2]);
      const z = linear(one, p);
      expect(got).toBe(p);
      tf.dispose([a, b, y, z, one]);
      p.dispose();
    }, 'swiglu');
  });
});
