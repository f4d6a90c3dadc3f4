/**
 * One training step of the official PyTorch code (`owl2_tiny/case_train_step`): the loss, the
 * gradient of every parameter, and every parameter after two torch.optim.AdamW steps must match
 * within the fixture README's tolerances.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MPLUGOwl2LlamaForCausalLM, MplugOwlPreTrainedModel } from '@owlet/mplug-owl';
import { describeBackends, loadFixture, loadFixtureJson, maxAbsDiff } from '@owlet/test-utils';
import { expect } from 'vitest';

import { Trainer, type TrainingBatch } from './index.js';

/** WebGPU runs on SwiftShader (a CPU Vulkan) in CI: a training step there takes tens of seconds on a loaded machine. */
const SLOW_TIMEOUT = 600_000;

function buildModel(): MPLUGOwl2LlamaForCausalLM {
  const model = new MPLUGOwl2LlamaForCausalLM(loadFixtureJson<Record<string, unknown>>('owl2_tiny/config.json'));
  const w = loadFixture('owl2_tiny/model.safetensors');
  const sd = new Map(w.keys().map((k) => [k, w.tensor(k)] as const));
  model.loadStateDict(sd, { ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD });
  tf.dispose([...sd.values()]);
  return model;
}

const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i])));
  return m;
};

describeBackends('case_train_step (official MPLUGOwl2LlamaForCausalLM + torch.optim.AdamW)', ({ it, backend }) => {
  it(
    'loss, every gradient and every parameter after two AdamW steps match the fixture',
    async () => {
      const fx = loadFixture('owl2_tiny/case_train_step.safetensors');
      const meta = loadFixtureJson<{
        optimizer: { lr: number; betas: [number, number]; eps: number; weight_decay: number };
      }>('owl2_tiny/case_train_step.json');
      const ids = Array.from(fx.array('input_ids'));
      const labels = Array.from(fx.array('labels'));
      const batch = (): TrainingBatch => ({
        input_ids: [ids],
        labels: [labels],
        attention_mask: [ids.map(() => 1)],
        pixel_values: fx.tensor('pixel_values'),
      });
      const model = buildModel();
      const o = meta.optimizer;
      const trainer = new Trainer(model, {
        learning_rate: o.lr,
        adam_beta1: o.betas[0],
        adam_beta2: o.betas[1],
        adam_epsilon: o.eps,
        weight_decay: o.weight_decay,
        weight_decay_exclude: 'none', // plain torch.optim.AdamW over model.parameters()
        max_grad_norm: 0, // no clipping
        lr_scheduler_type: 'constant', // no schedule
        max_steps: 2,
      });
      const gradKeys = fx.keys().filter((k) => k.startsWith('grad/'));
      expect(trainer.trainableKeys.sort()).toEqual(gradKeys.map((k) => k.slice(5)).sort());

      const report: Record<string, number> = {};
      // Loss and gradients at step 0.
      const g = await trainer.gradients(batch());
      const loss0 = (fx.array('loss_step0')[0] as number) ?? Number.NaN;
      report.loss_step0_rel = Math.abs(g.loss - loss0) / Math.abs(loss0);
      const gradData = new Map<string, Float32Array>();
      let worstGradAbs = 0;
      let worstGradRel = 0;
      const bad: string[] = [];
      for (const k of gradKeys) {
        const key = k.slice(5);
        const got = g.grads.get(key);
        expect(got, key).toBeDefined();
        const ref = fx.array(k);
        const data = ((await got?.data()) ?? new Float32Array(0)) as Float32Array;
        gradData.set(key, data);
        const d = maxAbsDiff(data, ref).maxAbs;
        const scale = Math.max(1, maxAbs(ref));
        worstGradAbs = Math.max(worstGradAbs, d);
        worstGradRel = Math.max(worstGradRel, d / scale);
        if (d > 1e-5 * scale) bad.push(`${key}: max |diff| ${d} (tensor max ${maxAbs(ref)})`);
      }
      tf.dispose([...g.grads.values()]);
      report.grad_max_abs = worstGradAbs;
      report.grad_max_rel_to_tensor_max = worstGradRel;
      expect(bad, 'gradients over 1e-5 of the tensor max').toEqual([]);
      expect(report.loss_step0_rel).toBeLessThanOrEqual(1e-5);

      // Two AdamW steps on the same batch (our step-1 gradients are kept for the error budget below).
      const s0 = await trainer.step(batch());
      const g1 = await trainer.gradients(batch());
      const s1 = await trainer.step(batch());
      const loss1 = fx.array('loss_step1')[0] as number;
      report.loss_step0_rel_from_step = Math.abs(s0.loss - loss0) / Math.abs(loss0);
      report.loss_step1_rel = Math.abs(s1.loss - loss1) / Math.abs(loss1);
      expect(report.loss_step1_rel).toBeLessThanOrEqual(1e-5);

      // Parameters after the two updates, within 1e-6 (the README's tolerance) — except where
      // AdamW's update m̂/(√v̂ + ε) is ill-conditioned: for a gradient near ε (1e-6) a float32
      // difference in the gradient moves the parameter by up to lr. Ours and torch's gradients are
      // both float32 sums in different orders and differ by up to δ per tensor (measured above; at
      // the worst such elements ours is the closer one to a float64 central difference, see the
      // README). So each element's two-step update is re-evaluated in float64 with the gradients
      // moved by ±4δ; where that moves it by more than 1e-6 the element may differ by 1e-6 + that
      // amount. Every other element must be within 1e-6.
      const [b1, b2] = o.betas;
      const { lr, eps, weight_decay: wd } = o;
      const twoSteps = (p: number, a: number, b: number): number => {
        const x = p * (1 - lr * wd) - lr * (a / (Math.abs(a) + eps));
        const m = b1 * (1 - b1) * a + (1 - b1) * b;
        const v = b2 * (1 - b2) * a * a + (1 - b2) * b * b;
        return x * (1 - lr * wd) - (lr / (1 - b1 * b1)) * (m / (Math.sqrt(v) / Math.sqrt(1 - b2 * b2) + eps));
      };
      const weights = loadFixture('owl2_tiny/model.safetensors');
      let worstParam = 0;
      let worstConditioned = 0;
      let illConditioned = 0;
      let over = 0;
      let elements = 0;
      const badParams: string[] = [];
      for (const [key, p] of trainer.params) {
        const v = p.canonical();
        const got = (await v.data()) as Float32Array;
        v.dispose();
        const ref = fx.array(`param_after_2_steps/${key}`);
        const gRef = fx.array(`grad/${key}`);
        const a0 = gradData.get(key) as Float32Array;
        const a1 = (await g1.grads.get(key)?.data()) as Float32Array;
        const p0 = weights.array(key);
        let delta = 0;
        for (let i = 0; i < gRef.length; i++)
          delta = Math.max(delta, Math.abs((a0[i] as number) - (gRef[i] as number)));
        const h = 4 * Math.max(delta, 1e-9);
        for (let i = 0; i < ref.length; i++) {
          elements++;
          const d = Math.abs((got[i] as number) - (ref[i] as number));
          worstParam = Math.max(worstParam, d);
          if (d > 1e-6) over++;
          const x0 = p0[i] as number;
          const a = a0[i] as number;
          const b = a1[i] as number;
          const base = twoSteps(x0, a, b);
          // Structural zeros (embedding rows of tokens not in the batch) are exact in any implementation.
          const h0 = a === 0 && gRef[i] === 0 ? 0 : h;
          const h1 = a === 0 && b === 0 ? 0 : h;
          const sens =
            Math.max(Math.abs(twoSteps(x0, a + h0, b) - base), Math.abs(twoSteps(x0, a - h0, b) - base)) +
            Math.max(Math.abs(twoSteps(x0, a, b + h1) - base), Math.abs(twoSteps(x0, a, b - h1) - base));
          if (sens > 1e-6) {
            illConditioned++;
            if (d > 1e-6 + sens) badParams.push(`${key}[${i}]: ${d} > 1e-6 + ${sens} (ill-conditioned)`);
          } else {
            worstConditioned = Math.max(worstConditioned, d);
            if (d > 1e-6) badParams.push(`${key}[${i}]: ${d}`);
          }
        }
      }
      tf.dispose([...g1.grads.values()]);
      report.param_after_2_steps_max_abs = worstParam;
      report.param_after_2_steps_max_abs_well_conditioned = worstConditioned;
      report.param_elements = elements;
      report.param_elements_over_1e6 = over;
      report.param_elements_ill_conditioned = illConditioned;
      expect(badParams, 'parameters after two steps').toEqual([]);
      // Float32 noise explains a handful of elements, not a systematic difference.
      expect(over / elements).toBeLessThan(1e-3);
      console.info(`[case_train_step ${backend}] ${JSON.stringify(report)}`);
      trainer.dispose();
      model.dispose();
    },
    SLOW_TIMEOUT,
  );
});
