import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectAllClose, expectNoLeaks, randn, toF32 } from '@owlet/test-utils';
import { expect } from 'vitest';

import { OwletError } from '../errors.js';
import { Parameter } from '../parameter.js';
import { compositeOpsRequired, isGradientRecording, isTraining, withCompositeOps, withTraining } from '../training.js';
import {
  IGNORE_INDEX,
  causalLmLoss,
  crossEntropySum,
  dropout,
  embedding,
  gatherRows,
  linear,
  matMul,
  registerKernel,
  shiftedTargets,
} from './index.js';
import { dot, refLinear } from './reference.test-helpers.js';

const rnd = (n: number, seed: number, std = 1): Float64Array => toF32(randn(n, seed, std));
const t = (a: Float64Array, shape: number[]): tf.Tensor => tf.tensor(Float32Array.from(a), shape, 'float32');
const read = async (x: tf.Tensor): Promise<Float32Array> => {
  const d = (await x.data()) as Float32Array;
  x.dispose();
  return d;
};

/** float64 log-softmax cross-entropy summed over rows. */
function refCrossEntropySum(logits: Float64Array, v: number, targets: number[]): number {
  let s = 0;
  targets.forEach((y, i) => {
    let m = -Infinity;
    for (let j = 0; j < v; j++) m = Math.max(m, logits[i * v + j] as number);
    let z = 0;
    for (let j = 0; j < v; j++) z += Math.exp((logits[i * v + j] as number) - m);
    s -= (logits[i * v + y] as number) - m - Math.log(z);
  });
  return s;
}

describeBackends('training ops', ({ it }) => {
  it('gatherRows equals tf.gather and its gradient sums repeated rows (no UnsortedSegmentSum)', async () => {
    const x = rnd(6 * 3, 1);
    const idx = [4, 1, 4, 0, 4];
    const r = rnd(idx.length * 3, 2);
    await expectNoLeaks(async () => {
      const xt = t(x, [6, 3]);
      const it32 = tf.tensor2d([idx.slice(0, 3), [idx[3] as number, idx[4] as number, 1]], [2, 3], 'int32');
      const g1 = gatherRows(xt, it32);
      expect(g1.shape).toEqual([2, 3, 3]);
      const ref = tf.gather(xt, it32);
      expectAllClose(await read(g1), await read(ref), { atol: 0, label: 'values' });
      const flat = tf.tensor1d(idx, 'int32');
      const rt = t(r, [idx.length, 3]);
      const [g] = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(gatherRows(a, flat), rt)))([xt]);
      const expected = new Float64Array(18);
      idx.forEach((row, i) => {
        for (let c = 0; c < 3; c++)
          expected[row * 3 + c] = (expected[row * 3 + c] as number) + (r[i * 3 + c] as number);
      });
      expectAllClose(await read(g as NonNullable<typeof g>), expected, { atol: 1e-6, label: 'dL/dx' });
      const prof = await tf.profile(() => {
        const [h] = tf.grads((a: tf.Tensor) => tf.sum(gatherRows(a, flat)))([xt]);
        (h as NonNullable<typeof h>).dispose();
      });
      expect(prof.kernelNames).not.toContain('UnsortedSegmentSum');
      tf.dispose([xt, it32, flat, rt]);
    }, 'gatherRows');
  });

  it('embedding is differentiable with respect to the table', async () => {
    const w = rnd(5 * 2, 3);
    await expectNoLeaks(async () => {
      const wt = t(w, [5, 2]);
      const [g] = tf.grads((a: tf.Tensor) => tf.sum(tf.square(embedding(a, [2, 2, 3]))))([wt]);
      const expected = new Float64Array(10);
      for (const row of [2, 2, 3])
        for (let c = 0; c < 2; c++)
          expected[row * 2 + c] = (expected[row * 2 + c] as number) + 2 * (w[row * 2 + c] as number);
      expectAllClose(await read(g as NonNullable<typeof g>), expected, { atol: 1e-5, label: 'dL/dW' });
      wt.dispose();
    });
  });

  it('crossEntropySum matches float64 and rejects an out-of-range target naming it', async () => {
    const [n, v] = [4, 7];
    const logits = rnd(n * v, 5, 2);
    const targets = [0, 6, 3, 3];
    await expectNoLeaks(async () => {
      const lt = t(logits, [n, v]);
      const got = (await read(crossEntropySum(lt, targets)))[0] as number;
      expect(Math.abs(got - refCrossEntropySum(logits, v, targets))).toBeLessThan(2e-5);
      expect(() => crossEntropySum(lt, [0, 7, 1, 1])).toThrow(/target 7 at row 1/);
      lt.dispose();
    });
  });

  it('shiftedTargets applies the causal shift and skips −100', () => {
    const labels = [
      [IGNORE_INDEX, IGNORE_INDEX, 5, 6],
      [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX],
    ];
    const s = shiftedTargets(labels, 4);
    expect(Array.from(s.rows)).toEqual([1, 2, 4]);
    expect(Array.from(s.targets)).toEqual([5, 6, 7]);
    expect(() => shiftedTargets([[1, 2]], 3)).toThrow(OwletError);
  });

  it('causalLmLoss equals the mean shifted cross-entropy of full logits, value and gradients', async () => {
    const [b, l, d, v] = [2, 5, 3, 6];
    const h = rnd(b * l * d, 7);
    const w = rnd(v * d, 8);
    const labels = [
      [IGNORE_INDEX, IGNORE_INDEX, 1, 4, 0],
      [IGNORE_INDEX, 5, 2, IGNORE_INDEX, IGNORE_INDEX],
    ];
    const lossRef = (hh: Float64Array, ww: Float64Array): number => {
      const logits = refLinear(hh, b * l, d, ww, v);
      const { rows, targets } = shiftedTargets(labels, l);
      const picked = new Float64Array(rows.length * v);
      rows.forEach((r, i) => {
        for (let j = 0; j < v; j++) picked[i * v + j] = logits[r * v + j] as number;
      });
      return refCrossEntropySum(picked, v, Array.from(targets)) / rows.length;
    };
    await expectNoLeaks(async () => {
      const ht = t(h, [b, l, d]);
      const p = new Parameter('lm_head.weight', [v, d], { linearWeight: true });
      const wt = t(w, [v, d]);
      p.assign(wt);
      const r = causalLmLoss(ht, p, labels);
      expect(r.num_tokens).toBe(5);
      expect(Math.abs(((await read(r.loss))[0] as number) - lossRef(h, w))).toBeLessThan(2e-6);
      const [gh] = tf.grads((x: tf.Tensor) => causalLmLoss(x, p, labels).loss)([ht]);
      // directional derivative against central differences of the float64 loss
      const u = rnd(h.length, 9);
      const eps = 1e-5;
      const plus = Float64Array.from(h, (x, i) => x + eps * (u[i] as number));
      const minus = Float64Array.from(h, (x, i) => x - eps * (u[i] as number));
      const fd = (lossRef(plus, w) - lossRef(minus, w)) / (2 * eps);
      expect(Math.abs(dot(Float64Array.from(await read(gh as NonNullable<typeof gh>)), u) - fd)).toBeLessThan(1e-5);
      const empty = causalLmLoss(ht, p, [
        [1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
        [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
      ]);
      expect(empty.num_tokens).toBe(0);
      expect((await read(empty.loss))[0]).toBe(0);
      tf.dispose([ht, wt]);
      p.dispose();
    });
  });

  it('dropout is the identity outside training and a seeded, scaled mask inside', async () => {
    await expectNoLeaks(async () => {
      const x = tf.ones([64, 32]);
      expect(dropout(x, 0.25)).toBe(x);
      expect(isTraining()).toBe(false);
      const run = (seed: number) =>
        withTraining(seed, () => {
          expect(isTraining()).toBe(true);
          expect(compositeOpsRequired()).toBe(true);
          return [dropout(x, 0.25), dropout(x, 0.25)] as const;
        });
      const [a1, a2] = run(11);
      const [b1, b2] = run(11);
      const [c1, c2] = run(12);
      tf.dispose([b2, c2]);
      const [va1, va2, vb1, vc1] = await Promise.all([a1, a2, b1, c1].map(read));
      expect(Array.from(va1 as NonNullable<typeof va1>)).toEqual(Array.from(vb1 as NonNullable<typeof vb1>)); // same step seed: same mask
      expect(Array.from(va1 as NonNullable<typeof va1>)).not.toEqual(Array.from(va2 as NonNullable<typeof va2>)); // second call in a step: another mask
      expect(Array.from(va1 as NonNullable<typeof va1>)).not.toEqual(Array.from(vc1 as NonNullable<typeof vc1>));
      const kept = (va1 as NonNullable<typeof va1>).filter((v) => v !== 0);
      expect(kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-6)).toBe(true);
      expect(Math.abs(kept.length / (va1 as NonNullable<typeof va1>).length - 0.75)).toBeLessThan(0.05);
      expect(() => dropout(x, 1)).toThrow(OwletError);
      expect(() => withTraining(1, () => withTraining(2, () => 0))).toThrow(/nested/);
      x.dispose();
    });
  });

  it('compositeOpsRequired is true under a gradient tape and withCompositeOps, false otherwise', () => {
    expect(compositeOpsRequired()).toBe(false);
    expect(withCompositeOps(() => compositeOpsRequired())).toBe(true);
    const x = tf.scalar(2);
    let seen = false;
    const [g] = tf.grads((a: tf.Tensor) => {
      seen = isGradientRecording() && compositeOpsRequired();
      return tf.square(a);
    })([x]);
    expect(seen).toBe(true);
    expect(compositeOpsRequired()).toBe(false);
    tf.dispose([x, g as NonNullable<typeof g>]);
  });

  it('matMul (training path) equals tf.matMul, value and gradients, for every transpose combination', async () => {
    await expectNoLeaks(async () => {
      for (const [ta, tb] of [
        [false, false],
        [false, true],
        [true, false],
        [true, true],
      ] as const) {
        const a = t(rnd(2 * 3 * 4, 20), ta ? [2, 4, 3] : [2, 3, 4]);
        const b = t(rnd(2 * 4 * 5, 21), tb ? [2, 5, 4] : [2, 4, 5]);
        const r = t(rnd(2 * 3 * 5, 22), [2, 3, 5]);
        const ours = withTraining(1, () =>
          tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(matMul(x, y, ta, tb), r)))([a, b]),
        );
        const ref = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, ta, tb), r)))([a, b]);
        const v1 = withTraining(1, () => matMul(a, b, ta, tb));
        const v2 = tf.matMul(a, b, ta, tb);
        expectAllClose(await read(v1), await read(v2), { atol: 1e-5, label: `value ${ta} ${tb}` });
        for (let i = 0; i < 2; i++) {
          expectAllClose(await read(ours[i] as tf.Tensor), await read(ref[i] as tf.Tensor), {
            atol: 1e-5,
            label: `grad ${i} ${ta} ${tb}`,
          });
        }
        tf.dispose([a, b, r]);
      }
    }, 'matMul');
  });

  it('inside withTraining a non-differentiable kernel steps aside (the composite runs), even without a tape', async () => {
    const off = registerKernel({
      op: 'linear',
      backend: '*',
      name: 'test-constant',
      run: ({ x, outFeatures }) => tf.fill([...x.shape.slice(0, -1), outFeatures], 7),
    });
    try {
      const x = tf.ones([2, 3]);
      const w = tf.ones([4, 3]);
      expect(Array.from(await read(linear(x, w)))).toEqual(new Array(8).fill(7));
      expect(Array.from(await read(withTraining(1, () => linear(x, w))))).toEqual(new Array(8).fill(3));
      tf.dispose([x, w]);
    } finally {
      off();
    }
  });
});
