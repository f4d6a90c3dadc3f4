import * as tf from '@tensorflow/tfjs-core';
import { OwletError, Parameter } from '@owlet/core';
import { describeBackends, expectAllClose, expectNoLeaks, randn } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { AdamW, clipGradNorm, lrLambda, resolveTrainingArguments, warmupSteps } from './index.js';

/** transformers' schedules, written from optimization.py (float64). */
function refLambda(type: string, step: number, w: number, total: number): number {
  if (type === 'constant') return 1;
  if (step < w) return step / Math.max(1, w);
  if (type === 'constant_with_warmup') return 1;
  const progress = (step - w) / Math.max(1, total - w);
  if (type === 'linear') return Math.max(0, (total - step) / Math.max(1, total - w));
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
}

describe('schedules', () => {
  it('match transformers: lr 0 at step 0 with warmup, linear / cosine decay to 0 at max_steps', () => {
    for (const type of ['linear', 'cosine', 'constant', 'constant_with_warmup'] as const) {
      for (const [w, total] of [
        [0, 10],
        [3, 10],
        [10, 10],
      ] as const) {
        for (let s = 0; s <= total; s++) {
          expect(lrLambda({ type, warmup_steps: w, total_steps: total }, s)).toBeCloseTo(
            refLambda(type, s, w, total),
            12,
          );
        }
      }
    }
    expect(lrLambda({ type: 'cosine', warmup_steps: 2, total_steps: 10 }, 0)).toBe(0);
    expect(lrLambda({ type: 'linear', warmup_steps: 0, total_steps: 10 }, 10)).toBe(0);
    expect(() => lrLambda({ type: 'polynomial' as never, warmup_steps: 0, total_steps: 1 }, 0)).toThrow(OwletError);
    expect(warmupSteps({ warmup_steps: 0, warmup_ratio: 0.03 }, 100)).toBe(3);
    expect(warmupSteps({ warmup_steps: 7, warmup_ratio: 0.5 }, 100)).toBe(7);
  });

  it('training arguments: HF defaults, layering, typed errors naming the field', () => {
    const a = resolveTrainingArguments({ learning_rate: 1e-4 }, { adam_beta2: 0.98 });
    expect(a).toMatchObject({
      learning_rate: 1e-4,
      adam_beta1: 0.9,
      adam_beta2: 0.98,
      adam_epsilon: 1e-8,
      max_grad_norm: 1,
    });
    expect(() => resolveTrainingArguments({ adam_beta1: 1 })).toThrow(/adam_beta1 must be in \[0, 1\)/);
    expect(() => resolveTrainingArguments({ gradient_accumulation_steps: 0 })).toThrow(/gradient_accumulation_steps/);
    expect(() => resolveTrainingArguments({ lerning_rate: 1 } as never)).toThrow(
      /unknown training argument "lerning_rate"/,
    );
    expect(() => resolveTrainingArguments({ lr_scheduler_type: 'poly' as never })).toThrow(/lr_scheduler_type/);
  });
});

/** torch.optim.AdamW (single-tensor) in float64. */
function refAdamW(
  p: Float64Array,
  grads: Float64Array[],
  o: { lr: number[]; b1: number; b2: number; eps: number; wd: number },
): Float64Array {
  const x = Float64Array.from(p);
  const m = new Float64Array(p.length);
  const v = new Float64Array(p.length);
  grads.forEach((g, s) => {
    const t = s + 1;
    const lr = o.lr[s] as number;
    for (let i = 0; i < x.length; i++) {
      x[i] = (x[i] as number) * (1 - lr * o.wd);
      m[i] = o.b1 * (m[i] as number) + (1 - o.b1) * (g[i] as number);
      v[i] = o.b2 * (v[i] as number) + (1 - o.b2) * (g[i] as number) ** 2;
      const denom = Math.sqrt(v[i] as number) / Math.sqrt(1 - o.b2 ** t) + o.eps;
      x[i] = (x[i] as number) - (lr / (1 - o.b1 ** t)) * ((m[i] as number) / denom);
    }
  });
  return x;
}

describeBackends('AdamW', ({ it }) => {
  for (const impl of ['ops', 'host'] as const) {
    it(`${impl}: three steps equal torch's AdamW in float64, per group, a parameter without a gradient untouched`, async () => {
      const pa = new Parameter('a.weight', [4, 3], { linearWeight: true });
      const pb = new Parameter('b.bias', [5]);
      const pc = new Parameter('c', [2]);
      const init = [randn(12, 1), randn(5, 2), randn(2, 3)];
      [pa, pb, pc].forEach((p, i) => {
        const t = tf.tensor(Float32Array.from(init[i] as Float64Array), [...p.shape]);
        p.assign(t);
        t.dispose();
      });
      const params = new Map([
        ['a.weight', pa],
        ['b.bias', pb],
        ['c', pc],
      ]);
      const groupA = {
        name: 'a',
        keys: ['a.weight', 'c'],
        lr: 1e-2,
        lr_scale: 0.5,
        weight_decay: 0.1,
        betas: [0.9, 0.98] as const,
        eps: 1e-6,
      };
      const groupB = {
        name: 'b',
        keys: ['b.bias'],
        lr: 3e-2,
        lr_scale: 1,
        weight_decay: 0,
        betas: [0.8, 0.9] as const,
        eps: 1e-8,
      };
      const opt = new AdamW([groupA, groupB], { impl });
      const mult = [0.5, 1, 0.25];
      const gA = [0, 1, 2].map((s) => randn(12, 10 + s, 0.1));
      const gB = [0, 1, 2].map((s) => randn(5, 20 + s, 0.1));
      await expectNoLeaks(async () => {
        for (let s = 0; s < 3; s++) {
          const ga = tf.tensor(Float32Array.from(gA[s] as Float64Array), [4, 3]);
          const g = new Map([
            ['a.weight', pa.storedTransposed ? tf.transpose(ga) : tf.clone(ga)],
            ['b.bias', tf.tensor(Float32Array.from(gB[s] as Float64Array))],
          ]);
          opt.step(params, g, mult[s] as number);
          tf.dispose([ga, ...g.values()]);
        }
        const expectA = refAdamW(Float64Array.from(Float32Array.from(init[0] as Float64Array)), gA, {
          lr: mult.map((m) => 1e-2 * 0.5 * m),
          b1: 0.9,
          b2: 0.98,
          eps: 1e-6,
          wd: 0.1,
        });
        const expectB = refAdamW(Float64Array.from(Float32Array.from(init[1] as Float64Array)), gB, {
          lr: mult.map((m) => 3e-2 * m),
          b1: 0.8,
          b2: 0.9,
          eps: 1e-8,
          wd: 0,
        });
        const a = pa.canonical();
        expectAllClose(await a.data(), expectA, { atol: 2e-7, label: 'a' });
        a.dispose();
        expectAllClose(await pb.value.data(), expectB, { atol: 2e-7, label: 'b' });
        expectAllClose(await pc.value.data(), Float32Array.from(init[2] as Float64Array), {
          atol: 0,
          label: 'c untouched',
        });
        expect([opt.stepCount('a.weight'), opt.stepCount('c')]).toEqual([3, 0]);
        // the state dict round-trips through the checkpoint layout
        const sd = opt.stateDict(params);
        expect(sd.steps).toEqual({ 'a.weight': 3, 'b.bias': 3 });
        expect(sd.tensors.get('exp_avg/a.weight')?.shape).toEqual([4, 3]);
        const opt2 = new AdamW([groupA, groupB], { impl });
        opt2.loadStateDict(params, sd);
        const again = opt2.stateDict(params);
        for (const [k, t] of sd.tensors)
          expectAllClose(await (again.tensors.get(k) as tf.Tensor).data(), await t.data(), { atol: 0, label: k });
        expect(() => opt2.loadStateDict(params, { tensors: sd.tensors, steps: { nope: 1 } })).toThrow(
          /nope is not a trainable/,
        );
        tf.dispose([...sd.tensors.values(), ...again.tensors.values()]);
        opt.dispose();
        opt2.dispose();
      }, 'AdamW');
      for (const p of [pa, pb, pc]) p.dispose();
    });
  }

  it('clipGradNorm is torch clip_grad_norm_: total norm before clipping, scaled only above max_norm', async () => {
    const g1 = randn(6, 30);
    // a dozen tensors: tf.addN of more than two returns a wrong sum on tfjs-webgpu 4.22
    const rest = Array.from({ length: 11 }, (_, i) => randn(4, 31 + i));
    const total = Math.sqrt([...g1, ...rest.flatMap((r) => [...r])].reduce((a, x) => a + Math.fround(x) ** 2, 0));
    await expectNoLeaks(async () => {
      const grads = new Map([
        ['x', tf.tensor(Float32Array.from(g1))],
        ...rest.map((r, i) => [`y${i}`, tf.tensor(Float32Array.from(r))] as [string, tf.Tensor]),
      ]);
      const r = await clipGradNorm(grads, 1);
      expect(r.total_norm).toBeCloseTo(total, 5);
      expect(r.clip_coef).toBeCloseTo(1 / (total + 1e-6), 7);
      expectAllClose(
        await (grads.get('x') as tf.Tensor).data(),
        Float32Array.from(g1).map((v) => v * r.clip_coef),
        { atol: 1e-6 },
      );
      const big = await clipGradNorm(grads, 1000);
      expect(big.clip_coef).toBe(1);
      tf.dispose([...grads.values()]);
    });
  });
});
