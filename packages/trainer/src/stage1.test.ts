/**
 * A stage-1 training case of our own, checked against float64 references: two right-padded
 * conversations of different lengths with their images, the mPLUG-Owl2 stage-1 recipe (LLM
 * frozen, layer-wise lr decay on the ViT), global-norm clipping and the warmup + cosine schedule.
 *
 * Each step is checked three ways: the loss against a float64 forward of each conversation on
 * its own (no padding), the gradient against float64 central differences along random directions,
 * and the update against torch's AdamW + clip_grad_norm_ + LambdaLR written in float64.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { Parameter } from '@owlet/core';
import { describeBackends, loadFixture, loadFixtureJson, mulberry32 } from '@owlet/test-utils';
import { expect } from 'vitest';

import { Trainer, collateCausalLm, layerwiseScale, lrLambda, type TrainingBatch } from './index.js';
import { batchLoss64, resolveMplugOwlModelConfig, type Sample64, type Weights } from './reference64.testutil.js';
import { fixtureModel, take } from './testing.testutil.js';

/** WebGPU runs on SwiftShader (a CPU Vulkan) in CI: a training step there takes tens of seconds on a loaded machine. */
const SLOW_TIMEOUT = 600_000;

const STEPS = 3;
const MAX_STEPS = 6;
const WARMUP = 1;
const MAX_NORM = 1;

async function weights64(model: ReturnType<typeof fixtureModel>): Promise<Weights> {
  const w: Weights = new Map();
  for (const [k, p] of model.namedParameters()) w.set(k, Float64Array.from(await take(p.canonical())));
  return w;
}

describeBackends('stage-1 case vs float64 references', ({ it }) => {
  it(
    'loss, gradients (directional central differences), clipping, cosine schedule and frozen LLM over three steps',
    async () => {
      const cfgJson = loadFixtureJson<Record<string, unknown>>('owl2_tiny/config.json');
      const cfg = resolveMplugOwlModelConfig(cfgJson);
      const fx = loadFixture('owl2_tiny/case_train_step.safetensors');
      const idsA = Array.from(fx.array('input_ids'));
      const labA = Array.from(fx.array('labels'));
      // a shorter second conversation: the same prompt, a 3-token answer + </s>
      const idsB = [...idsA.slice(0, 17), 300, 301, 302, 2];
      const labB = idsB.map((id, i) => (i >= 17 ? id : -100));
      const pxA = fx.array('pixel_values') as Float32Array;
      const pxB = Float32Array.from(pxA, (v, i) => -0.5 * v + 0.1 * Math.sin(i));
      const side = cfg.vision_config.image_size;
      const samples64: Sample64[] = [
        { input_ids: idsA, labels: labA, images: [pxA] },
        { input_ids: idsB, labels: labB, images: [pxB] },
      ];
      const batch = (): TrainingBatch =>
        collateCausalLm([
          { input_ids: idsA, labels: labA, pixel_values: [pxA] },
          { input_ids: idsB, labels: labB, pixel_values: [pxB] },
        ]) as unknown as TrainingBatch;
      {
        const b = batch();
        expect(b.input_ids[1]?.length).toBe(idsA.length); // right-padded to the longer one
        expect(b.attention_mask?.[1]?.slice(idsB.length).every((m) => m === 0)).toBe(true);
        expect((b.pixel_values as tf.Tensor).shape).toEqual([2, 3, side, side]);
        (b.pixel_values as tf.Tensor).dispose();
      }

      const model = fixtureModel('owl2_tiny');
      const trainer = new Trainer(model, {
        recipe: 'mplug_owl2_stage1',
        learning_rate: 1e-3,
        warmup_steps: WARMUP,
        max_steps: MAX_STEPS,
        max_grad_norm: MAX_NORM,
      });
      const a = trainer.args;
      expect(a.lr_scheduler_type).toBe('cosine');
      const trainable = new Set(trainer.trainableKeys);
      const frozenKeys = [...model.namedParameters()].map(([k]) => k).filter((k) => !trainable.has(k));
      expect(frozenKeys.some((k) => k === 'lm_head.weight')).toBe(true);
      const frozenBefore = new Map<string, Float32Array>();
      for (const k of frozenKeys) frozenBefore.set(k, await take((model.getParameter(k) as Parameter).canonical()));

      // float64 AdamW state, fed with the gradients owlet computes
      const m = new Map<string, Float64Array>();
      const v = new Map<string, Float64Array>();
      const nLayers = cfg.vision_config.num_hidden_layers;
      const decays = new Map(trainer.optimizer.groups.flatMap((g) => g.keys.map((k) => [k, g.weight_decay] as const)));
      const rnd = mulberry32(77);

      for (let step = 0; step < STEPS; step++) {
        const w = await weights64(model);
        const { loss, grads } = await trainer.gradients(batch());
        const g = new Map<string, Float64Array>();
        for (const [k, t] of grads) g.set(k, Float64Array.from(await take(t)));
        expect([...g.keys()].sort()).toEqual([...trainable].sort()); // frozen parameters get no gradient

        // 1. loss = float64 mean over both conversations' labelled tokens, each run unpadded
        const loss64 = batchLoss64(cfg, w, samples64);
        expect(Math.abs(loss - loss64) / loss64).toBeLessThan(1e-5);

        // 2. gradient: ⟨g, u⟩ against (L(θ + h·u) − L(θ − h·u)) / 2h in float64, two random directions
        for (let d = 0; d < 2; d++) {
          const u = new Map<string, Float64Array>();
          let norm = 0;
          for (const k of trainable) {
            const r = Float64Array.from(w.get(k) as Float64Array, () => rnd() - 0.5);
            for (const x of r) norm += x * x;
            u.set(k, r);
          }
          norm = Math.sqrt(norm);
          const h = 1e-3;
          const shifted = (sign: number): Weights => {
            const out: Weights = new Map(w);
            for (const [k, r] of u)
              out.set(
                k,
                Float64Array.from(w.get(k) as Float64Array, (x, i) => x + (sign * h * (r[i] as number)) / norm),
              );
            return out;
          };
          const fd = (batchLoss64(cfg, shifted(1), samples64) - batchLoss64(cfg, shifted(-1), samples64)) / (2 * h);
          let dot = 0;
          for (const [k, r] of u) {
            const gk = g.get(k) as Float64Array;
            for (let i = 0; i < r.length; i++) dot += ((gk[i] as number) * (r[i] as number)) / norm;
          }
          expect(Math.abs(dot - fd)).toBeLessThan(1e-4 * Math.max(1, Math.abs(fd)));
        }

        // 3. the step: clipping on the float64 norm of these gradients, lr from the schedule
        let sq = 0;
        for (const gk of g.values()) for (const x of gk) sq += x * x;
        const totalNorm = Math.sqrt(sq);
        const r = await trainer.step(batch());
        expect(Math.abs(r.loss - loss) / loss).toBeLessThan(1e-6);
        expect(Math.abs(r.grad_norm - totalNorm) / totalNorm).toBeLessThan(1e-5);
        expect(totalNorm).toBeGreaterThan(MAX_NORM); // clipping is active
        const lambda = lrLambda({ type: 'cosine', warmup_steps: WARMUP, total_steps: MAX_STEPS }, step);
        expect(r.learning_rate).toBeCloseTo(a.learning_rate * lambda, 15);
        if (step === 0) expect(lambda).toBe(0);
        const coef = Math.min(1, MAX_NORM / (totalNorm + 1e-6));
        let worst = 0;
        for (const k of trainable) {
          const lr = a.learning_rate * lambda * layerwiseScale(k, { rate: 0.9, prefix: 'model.vision_model' }, nLayers);
          const wd = decays.get(k) as number;
          const p0 = w.get(k) as Float64Array;
          const gk = g.get(k) as Float64Array;
          const mk = m.get(k) ?? new Float64Array(p0.length);
          const vk = v.get(k) ?? new Float64Array(p0.length);
          const t = step + 1;
          const got = await take((model.getParameter(k) as Parameter).canonical());
          for (let i = 0; i < p0.length; i++) {
            const gi = (gk[i] as number) * coef;
            mk[i] = a.adam_beta1 * (mk[i] as number) + (1 - a.adam_beta1) * gi;
            vk[i] = a.adam_beta2 * (vk[i] as number) + (1 - a.adam_beta2) * gi * gi;
            const denom = Math.sqrt(vk[i] as number) / Math.sqrt(1 - a.adam_beta2 ** t) + a.adam_epsilon;
            const expected =
              (p0[i] as number) * (1 - lr * wd) - (lr / (1 - a.adam_beta1 ** t)) * ((mk[i] as number) / denom);
            worst = Math.max(worst, Math.abs((got[i] as number) - expected));
            if (step === 0) expect(got[i]).toBe(Math.fround(p0[i] as number)); // lr 0: unchanged
          }
          m.set(k, mk);
          v.set(k, vk);
        }
        expect(worst).toBeLessThan(1e-6);
      }
      for (const k of frozenKeys) {
        expect(Array.from(await take((model.getParameter(k) as Parameter).canonical())), k).toEqual(
          Array.from(frozenBefore.get(k) ?? []),
        );
      }
      trainer.dispose();
      model.dispose();
    },
    SLOW_TIMEOUT,
  );

  it(
    'case_train_step: where ours and torch differ most, ours is the closer to a float64 central difference',
    async () => {
      const cfg = resolveMplugOwlModelConfig(loadFixtureJson<Record<string, unknown>>('owl2_tiny/config.json'));
      const fx = loadFixture('owl2_tiny/case_train_step.safetensors');
      const ids = Array.from(fx.array('input_ids'));
      const labels = Array.from(fx.array('labels'));
      const model = fixtureModel('owl2_tiny');
      const w = await weights64(model);
      const trainer = new Trainer(model, { max_steps: 1 });
      const { grads } = await trainer.gradients({
        input_ids: [ids],
        labels: [labels],
        pixel_values: fx.tensor('pixel_values'),
      });
      const sample = [{ input_ids: ids, labels, images: [fx.array('pixel_values')] }];
      // The elements whose AdamW update differs most between the two gradients (lr 1e-3, ε 1e-6).
      const upd = (x: number) => x / (Math.abs(x) + 1e-6);
      const probes: { key: string; i: number; ours: number; torch: number; d: number }[] = [];
      for (const [key, t] of grads) {
        const ours = await take(t);
        const torch = fx.array(`grad/${key}`);
        let best = { i: 0, d: -1 };
        for (let i = 0; i < ours.length; i++) {
          const d = Math.abs(upd(ours[i] as number) - upd(torch[i] as number));
          if (d > best.d) best = { i, d };
        }
        probes.push({ key, i: best.i, ours: ours[best.i] as number, torch: torch[best.i] as number, d: best.d });
      }
      probes.sort((x, y) => y.d - x.d);
      let errOurs = 0;
      let errTorch = 0;
      for (const p of probes.slice(0, 4)) {
        const arr = w.get(p.key) as Float64Array;
        const orig = arr[p.i] as number;
        const h = 1e-4;
        arr[p.i] = orig + h;
        const lp = batchLoss64(cfg, w, sample);
        arr[p.i] = orig - h;
        const lm = batchLoss64(cfg, w, sample);
        arr[p.i] = orig;
        const fd = (lp - lm) / (2 * h);
        errOurs += Math.abs(p.ours - fd);
        errTorch += Math.abs(p.torch - fd);
      }
      expect(errOurs).toBeLessThan(errTorch);
      trainer.dispose();
      model.dispose();
    },
    SLOW_TIMEOUT,
  );
});
