import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectAllClose, expectNoLeaks } from '@owlet/test-utils';
import { afterEach, expect } from 'vitest';

import { isOwletError } from '../errors.js';
import { lastKernel, registerKernel, type KernelArgs } from './kernels.js';
import { PATCH_CONV_IMPL, patchEmbed, resolvePatchConvImpl } from './patch-embed.js';

/** float64 patch convolution by definition: y[n, row·gw + col, d] = Σ_c,i,j x[n, c, row·p + i, col·p + j] · w[d, c, i, j]. */
function reference(
  x: Float32Array,
  [n, c, h, w]: [number, number, number, number],
  wt: Float32Array,
  d: number,
  p: number,
): Float64Array {
  const gh = Math.floor(h / p);
  const gw = Math.floor(w / p);
  const y = new Float64Array(n * gh * gw * d);
  for (let b = 0; b < n; b++)
    for (let r = 0; r < gh; r++)
      for (let q = 0; q < gw; q++)
        for (let o = 0; o < d; o++) {
          let s = 0;
          for (let ch = 0; ch < c; ch++)
            for (let i = 0; i < p; i++)
              for (let j = 0; j < p; j++)
                s += x[((b * c + ch) * h + r * p + i) * w + q * p + j]! * wt[((o * c + ch) * p + i) * p + j]!;
          y[((b * gh + r) * gw + q) * d + o] = s;
        }
  return y;
}

const undo: (() => void)[] = [];
afterEach(() => {
  for (const u of undo.splice(0)) u();
});

describeBackends('patchEmbed', ({ it, backend }) => {
  it('matmul and conv2d both equal the convolution by definition (trailing pixels dropped)', async () => {
    const [n, c, h, w, d, p] = [2, 3, 11, 9, 5, 4];
    const x = Float32Array.from({ length: n * c * h * w }, (_, i) => Math.sin(i * 0.37));
    const wt = Float32Array.from({ length: d * c * p * p }, (_, i) => Math.cos(i * 0.11) * 0.2);
    const want = reference(x, [n, c, h, w], wt, d, p);
    await expectNoLeaks(async () => {
      const px = tf.tensor4d(x, [n, c, h, w]);
      const weight = tf.tensor4d(wt, [d, c, p, p]);
      for (const impl of ['matmul', 'conv2d'] as const) {
        const y = patchEmbed(px, weight, { impl });
        expect(y.shape).toEqual([n, 2 * 2, d]);
        expectAllClose(await y.data(), want, { atol: 1e-4, label: `${impl} on ${backend}` });
        y.dispose();
      }
      tf.dispose([px, weight]);
    });
    expect(resolvePatchConvImpl('auto')).toBe(PATCH_CONV_IMPL[backend] ?? 'conv2d');
  });

  it('runs a registered patchEmbed kernel first, and checks shapes before it', async () => {
    const seen: number[][] = [];
    undo.push(
      registerKernel({
        op: 'patchEmbed',
        backend,
        name: 'test-patch',
        run: (a: KernelArgs['patchEmbed']) => {
          seen.push([...a.pixels.shape, ...a.weight.shape]);
          return tf.fill([a.pixels.shape[0] as number, 1, a.weight.shape[0] as number], 7);
        },
      }),
    );
    await expectNoLeaks(async () => {
      const px = tf.ones([1, 3, 4, 4]);
      const weight = tf.ones([2, 3, 4, 4]);
      const y = patchEmbed(px, weight);
      expect(lastKernel('patchEmbed')).toBe('test-patch');
      expect(Array.from(await y.data())).toEqual([7, 7]);
      expect(seen).toEqual([[1, 3, 4, 4, 2, 3, 4, 4]]);
      const gray = tf.ones([1, 1, 4, 4]);
      let err: unknown;
      try {
        patchEmbed(gray, weight);
      } catch (e) {
        err = e;
      }
      expect(isOwletError(err, 'SHAPE_MISMATCH'), String(err)).toBe(true);
      expect(String(err)).toContain('[1, 1, 4, 4]');
      expect(seen).toHaveLength(1);
      tf.dispose([px, weight, y, gray]);
    });
  });
});
