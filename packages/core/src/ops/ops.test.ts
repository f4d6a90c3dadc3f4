import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectAllClose, expectNoLeaks, randn, toF32 } from '@owlet/test-utils';
import { expect } from 'vitest';

import { OwletError } from '../errors.js';
import {
  attention,
  attentionOverSegments,
  causalMask,
  embedding,
  gelu,
  layerNorm,
  linear,
  quickGelu,
  rmsNorm,
  rope,
  ropeTables,
  applyRope,
  silu,
  softmax,
  swiglu,
} from './index.js';
import {
  dot,
  erf,
  finiteDiff,
  refAttention,
  refLayerNorm,
  refLinear,
  refRmsNorm,
  refRope,
  refSoftmaxRows,
  sigmoid,
} from './reference.test-helpers.js';

/** Random float32-representable inputs, as float64 for the reference. */
const rnd = (n: number, seed: number, std = 1): Float64Array => toF32(randn(n, seed, std));
const t = (a: Float64Array, shape: number[]): tf.Tensor => tf.tensor(Float32Array.from(a), shape, 'float32');
const read = async (x: tf.Tensor): Promise<Float32Array> => {
  const d = (await x.data()) as Float32Array;
  x.dispose();
  return d;
};

// Tolerances: float32 compute vs float64 reference on O(1) values.
const ATOL = 2e-5;
const RTOL = 2e-5;
// Gradients: float32 backprop vs float64 central differences.
const GRAD_ATOL = 2e-4;
const GRAD_RTOL = 1e-3;

describeBackends('ops', ({ it }) => {
  it('linear matches the float64 reference, with and without bias, rank 2 and 3', async () => {
    const [n, inF, out] = [6, 5, 7];
    const x = rnd(n * inF, 1);
    const w = rnd(out * inF, 2);
    const b = rnd(out, 3);
    await expectNoLeaks(async () => {
      const xt = t(x, [2, 3, inF]);
      const wt = t(w, [out, inF]);
      const bt = t(b, [out]);
      const y = linear(xt, wt, bt);
      expect(y.shape).toEqual([2, 3, out]);
      expectAllClose(await read(y), refLinear(x, n, inF, w, out, b), { atol: ATOL, rtol: RTOL, label: 'linear+bias' });
      const x2 = tf.reshape(xt, [n, inF]);
      const y2 = linear(x2, wt);
      expectAllClose(await read(y2), refLinear(x, n, inF, w, out), { atol: ATOL, rtol: RTOL, label: 'linear' });
      tf.dispose([xt, x2, wt, bt]);
    }, 'linear');
  });

  it('linear rejects mismatched shapes with a typed error naming both sides', () => {
    const x = tf.zeros([2, 5]);
    const w = tf.zeros([3, 4]);
    expect(() => linear(x, w)).toThrow(OwletError);
    expect(() => linear(x, w)).toThrow(/5 features.*\[3, 4\]/);
    tf.dispose([x, w]);
  });

  it('layerNorm matches the reference for eps 1e-5 and 1e-6 (and the eps is visible)', async () => {
    const d = 16;
    const x = rnd(4 * d, 4, 0.01); // small RMS so eps matters
    const w = rnd(d, 5);
    const b = rnd(d, 6);
    await expectNoLeaks(async () => {
      const [xt, wt, bt] = [t(x, [4, d]), t(w, [d]), t(b, [d])];
      for (const eps of [1e-5, 1e-6]) {
        expectAllClose(await read(layerNorm(xt, wt, bt, eps)), refLayerNorm(x, d, w, b, eps), {
          atol: 5e-5,
          rtol: 1e-4,
          label: `layerNorm eps ${eps}`,
        });
      }
      const a = await read(layerNorm(xt, wt, bt, 1e-5));
      const c = await read(layerNorm(xt, wt, bt, 1e-6));
      let maxd = 0;
      for (let i = 0; i < a.length; i++) maxd = Math.max(maxd, Math.abs((a[i] as number) - (c[i] as number)));
      expect(maxd).toBeGreaterThan(1e-3);
      tf.dispose([xt, wt, bt]);
    }, 'layerNorm');
  });

  it('rmsNorm matches the reference', async () => {
    const d = 16;
    const x = rnd(5 * d, 7, 0.01);
    const w = rnd(d, 8);
    await expectNoLeaks(async () => {
      const [xt, wt] = [t(x, [5, d]), t(w, [d])];
      for (const eps of [1e-5, 1e-6]) {
        expectAllClose(await read(rmsNorm(xt, wt, eps)), refRmsNorm(x, d, w, eps), {
          atol: 5e-5,
          rtol: 1e-4,
          label: `rmsNorm eps ${eps}`,
        });
      }
      tf.dispose([xt, wt]);
    }, 'rmsNorm');
  });

  it('embedding gathers rows and range-checks numeric ids', async () => {
    const [V, D] = [9, 4];
    const w = rnd(V * D, 9);
    const ids = [3, 0, 8, 3, 5, 1];
    await expectNoLeaks(async () => {
      const wt = t(w, [V, D]);
      const idt = tf.tensor2d(ids, [2, 3], 'int32');
      const y = embedding(wt, idt);
      idt.dispose();
      expect(y.shape).toEqual([2, 3, D]);
      const expected = new Float64Array(ids.length * D);
      ids.forEach((id, r) => {
        expected.set(w.subarray(id * D, id * D + D), r * D);
      });
      expectAllClose(await read(y), expected, { atol: 0, label: 'embedding' });
      expect(() => embedding(wt, [1, 9])).toThrow(/id 9 at position 1 is outside the vocabulary \[0, 9\)/);
      expect(() => embedding(wt, [-1])).toThrow(OwletError);
      wt.dispose();
    }, 'embedding');
  });

  it('rope matches the HF rotate_half reference at arbitrary positions', async () => {
    const shape: [number, number, number, number] = [2, 3, 4, 8];
    const x = rnd(
      shape.reduce((a, b) => a * b),
      10,
    );
    const pos = [
      [0, 1, 2, 3],
      [7, 100, 31, 2047],
    ];
    await expectNoLeaks(async () => {
      const xt = t(x, shape);
      const y = rope(xt, pos, { theta: 10000 });
      // Angles up to 2047 rad: float32 argument rounding gives ~1e-4 absolute error there.
      expectAllClose(await read(y), refRope(x, shape, pos, 10000), { atol: 5e-4, label: 'rope' });
      const small = [[0, 1, 2, 3]];
      const x1 = t(x.subarray(0, 3 * 4 * 8), [1, 3, 4, 8]);
      const tables = ropeTables([0, 1, 2, 3], 8, 500000);
      expectAllClose(await read(applyRope(x1, tables)), refRope(x.subarray(0, 96), [1, 3, 4, 8], small, 500000), {
        atol: ATOL,
        label: 'rope theta',
      });
      tf.dispose([xt, x1, tables.cos, tables.sin]);
    }, 'rope');
  });

  it('attention: full, causal with a KV-cache offset, grouped-query, additive mask', async () => {
    const cases = [
      { B: 1, H: 2, Hkv: 2, Lq: 5, Lk: 5, D: 4, causal: false, masked: false },
      { B: 2, H: 2, Hkv: 2, Lq: 5, Lk: 5, D: 4, causal: true, masked: false },
      { B: 1, H: 2, Hkv: 2, Lq: 2, Lk: 6, D: 4, causal: true, masked: false },
      { B: 1, H: 4, Hkv: 2, Lq: 3, Lk: 3, D: 4, causal: true, masked: true },
    ];
    let seed = 20;
    for (const c of cases) {
      const q = rnd(c.B * c.H * c.Lq * c.D, seed++);
      const k = rnd(c.B * c.Hkv * c.Lk * c.D, seed++);
      const v = rnd(c.B * c.Hkv * c.Lk * c.D, seed++);
      const mask = c.masked
        ? Float64Array.from({ length: c.Lq * c.Lk }, (_, i) => (i % 3 === 1 ? -1e9 : 0))
        : undefined;
      await expectNoLeaks(async () => {
        const [qt, kt, vt] = [
          t(q, [c.B, c.H, c.Lq, c.D]),
          t(k, [c.B, c.Hkv, c.Lk, c.D]),
          t(v, [c.B, c.Hkv, c.Lk, c.D]),
        ];
        const mt = mask ? t(mask, [c.Lq, c.Lk]) : null;
        const y = attention(qt, kt, vt, { causal: c.causal, mask: mt });
        expect(y.shape).toEqual([c.B, c.H, c.Lq, c.D]);
        expectAllClose(await read(y), refAttention(q, k, v, c, c.causal, mask), {
          atol: ATOL,
          rtol: RTOL,
          label: JSON.stringify(c),
        });
        tf.dispose([qt, kt, vt, ...(mt ? [mt] : [])]);
      }, 'attention');
    }
  });

  it('attentionOverSegments equals attention over the concatenated keys (grouped-query, causal, mask)', async () => {
    const c = { B: 1, H: 4, Hkv: 2, Lq: 3, Lk: 7, D: 4 };
    const q = rnd(c.B * c.H * c.Lq * c.D, 90);
    const k = rnd(c.B * c.Hkv * c.Lk * c.D, 91);
    const v = rnd(c.B * c.Hkv * c.Lk * c.D, 92);
    const mask = Float64Array.from({ length: c.Lq * c.Lk }, (_, i) => (i % 4 === 2 ? -1e9 : 0));
    await expectNoLeaks(async () => {
      const [qt, kt, vt, mt] = [t(q, [1, 4, 3, 4]), t(k, [1, 2, 7, 4]), t(v, [1, 2, 7, 4]), t(mask, [3, 7])];
      const segs = [
        [0, 4],
        [4, 2],
        [6, 1],
      ].map(([s0, n]) => ({
        k: tf.slice(kt, [0, 0, s0!, 0], [-1, -1, n!, -1]),
        v: tf.slice(vt, [0, 0, s0!, 0], [-1, -1, n!, -1]),
      }));
      const y = attentionOverSegments(qt, segs, { causal: true, mask: mt });
      expectAllClose(await read(y), refAttention(q, k, v, c, true, mask), {
        atol: ATOL,
        rtol: RTOL,
        label: 'segments',
      });
      tf.dispose([qt, kt, vt, mt, ...segs.flatMap((s) => [s.k, s.v])]);
    }, 'attentionOverSegments');
  });

  it('causalMask hides exactly the future keys', async () => {
    const m = causalMask(2, 4);
    const d = await read(m);
    expect(Array.from(d).map((x) => (x < -1e8 ? 1 : 0))).toEqual([0, 0, 0, 1, 0, 0, 0, 0]);
  });

  it('activations match their float64 definitions; softmax is float32 on any axis', async () => {
    const n = 64;
    const x = rnd(n, 30, 2);
    const u = rnd(n, 31, 2);
    await expectNoLeaks(async () => {
      const xt = t(x, [8, 8]);
      const ut = t(u, [8, 8]);
      expectAllClose(
        await read(silu(xt)),
        x.map((a) => a * sigmoid(a)),
        { atol: ATOL, rtol: RTOL, label: 'silu' },
      );
      expectAllClose(
        await read(quickGelu(xt)),
        x.map((a) => a * sigmoid(1.702 * a)),
        { atol: ATOL, rtol: RTOL, label: 'quickGelu' },
      );
      expectAllClose(
        await read(gelu(xt)),
        x.map((a) => 0.5 * a * (1 + erf(a / Math.SQRT2))),
        { atol: 1e-4, rtol: 1e-4, label: 'gelu' },
      );
      expectAllClose(
        await read(swiglu(xt, ut)),
        x.map((a, i) => a * sigmoid(a) * (u[i] as number)),
        { atol: ATOL, rtol: RTOL, label: 'swiglu' },
      );
      expectAllClose(await read(softmax(xt)), refSoftmaxRows(x, 8), { atol: 1e-6, rtol: 1e-5, label: 'softmax' });
      // axis 0 = softmax of the transpose
      const xT = new Float64Array(n);
      for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) xT[j * 8 + i] = x[i * 8 + j] as number;
      const refT = refSoftmaxRows(xT, 8);
      const ref0 = new Float64Array(n);
      for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) ref0[i * 8 + j] = refT[j * 8 + i] as number;
      expectAllClose(await read(softmax(xt, 0)), ref0, { atol: 1e-6, rtol: 1e-5, label: 'softmax axis 0' });
      const xi = tf.cast(xt, 'int32');
      const s = softmax(xi);
      expect(s.dtype).toBe('float32');
      tf.dispose([xt, ut, xi, s]);
    }, 'activations');
  });

  // ---- gradients against float64 finite differences ----

  it('linear gradients (x, W, b) match finite differences', async () => {
    const [n, inF, out] = [3, 4, 5];
    const x = rnd(n * inF, 40);
    const w = rnd(out * inF, 41);
    const b = rnd(out, 42);
    const r = rnd(n * out, 43);
    await expectNoLeaks(async () => {
      const [xt, wt, bt, rt] = [t(x, [n, inF]), t(w, [out, inF]), t(b, [out]), t(r, [n, out])];
      const grads = tf.grads((a: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(linear(a, ww, bb), rt)))([
        xt,
        wt,
        bt,
      ]);
      const [gx, gw, gb] = await Promise.all(grads.map(read));
      const L = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(refLinear(xx, n, inF, ww, out, bb), r);
      expectAllClose(
        gx!,
        finiteDiff((v) => L(v, w, b), x),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dx' },
      );
      expectAllClose(
        gw!,
        finiteDiff((v) => L(x, v, b), w),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dW' },
      );
      expectAllClose(
        gb!,
        finiteDiff((v) => L(x, w, v), b),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/db' },
      );
      tf.dispose([xt, wt, bt, rt]);
    }, 'linear grads');
  });

  it('rmsNorm gradients (x, weight) match finite differences', async () => {
    const d = 6;
    const x = rnd(3 * d, 50);
    const w = rnd(d, 51);
    const r = rnd(3 * d, 52);
    const eps = 1e-6;
    await expectNoLeaks(async () => {
      const [xt, wt, rt] = [t(x, [3, d]), t(w, [d]), t(r, [3, d])];
      const grads = tf.grads((a: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(rmsNorm(a, ww, eps), rt)))([xt, wt]);
      const [gx, gw] = await Promise.all(grads.map(read));
      const L = (xx: Float64Array, ww: Float64Array) => dot(refRmsNorm(xx, d, ww, eps), r);
      expectAllClose(
        gx!,
        finiteDiff((v) => L(v, w), x),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dx' },
      );
      expectAllClose(
        gw!,
        finiteDiff((v) => L(x, v), w),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dw' },
      );
      tf.dispose([xt, wt, rt]);
    }, 'rmsNorm grads');
  });

  it('layerNorm gradients (x, weight, bias) match finite differences', async () => {
    const d = 6;
    const x = rnd(3 * d, 60);
    const w = rnd(d, 61);
    const b = rnd(d, 62);
    const r = rnd(3 * d, 63);
    const eps = 1e-5;
    await expectNoLeaks(async () => {
      const [xt, wt, bt, rt] = [t(x, [3, d]), t(w, [d]), t(b, [d]), t(r, [3, d])];
      const grads = tf.grads((a: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
        tf.sum(tf.mul(layerNorm(a, ww, bb, eps), rt)),
      )([xt, wt, bt]);
      const [gx, gw, gb] = await Promise.all(grads.map(read));
      const L = (xx: Float64Array, ww: Float64Array, bb: Float64Array) => dot(refLayerNorm(xx, d, ww, bb, eps), r);
      expectAllClose(
        gx!,
        finiteDiff((v) => L(v, w, b), x),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dx' },
      );
      expectAllClose(
        gw!,
        finiteDiff((v) => L(x, v, b), w),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dw' },
      );
      expectAllClose(
        gb!,
        finiteDiff((v) => L(x, w, v), b),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/db' },
      );
      tf.dispose([xt, wt, bt, rt]);
    }, 'layerNorm grads');
  });

  it('attention gradients (q, k, v) match finite differences, causal', async () => {
    const dims = { B: 1, H: 2, Hkv: 2, Lq: 3, Lk: 3, D: 4 };
    const q = rnd(24, 70);
    const k = rnd(24, 71);
    const v = rnd(24, 72);
    const r = rnd(24, 73);
    await expectNoLeaks(async () => {
      const shape = [1, 2, 3, 4];
      const [qt, kt, vt, rt] = [t(q, shape), t(k, shape), t(v, shape), t(r, shape)];
      const grads = tf.grads((a: tf.Tensor, bb: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.mul(attention(a, bb, c, { causal: true }), rt)),
      )([qt, kt, vt]);
      const [gq, gk, gv] = await Promise.all(grads.map(read));
      const L = (qq: Float64Array, kk: Float64Array, vv: Float64Array) => dot(refAttention(qq, kk, vv, dims, true), r);
      expectAllClose(
        gq!,
        finiteDiff((x) => L(x, k, v), q),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dq' },
      );
      expectAllClose(
        gk!,
        finiteDiff((x) => L(q, x, v), k),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dk' },
      );
      expectAllClose(
        gv!,
        finiteDiff((x) => L(q, k, x), v),
        { atol: GRAD_ATOL, rtol: GRAD_RTOL, label: 'dL/dv' },
      );
      tf.dispose([qt, kt, vt, rt]);
    }, 'attention grads');
  });
});
