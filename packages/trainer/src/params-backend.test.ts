import * as tf from '@tensorflow/tfjs-core';
import { isOwletError } from '@owlet/core';
import { describeBackends, loadFixture, useBackend } from '@owlet/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';

import {
  TRAINING_KERNELS,
  Trainer,
  TrainerErrorCode,
  buildParamGroups,
  checkTrainingBackend,
  layerwiseScale,
  type TrainingBatch,
} from './index.js';
import { fixtureModel } from './testing.testutil.js';

/** WebGPU runs on SwiftShader (a CPU Vulkan) in CI: a training step there takes tens of seconds on a loaded machine. */
const SLOW_TIMEOUT = 600_000;

function owl2Batch(): TrainingBatch {
  const fx = loadFixture('owl2_tiny/case_train_step.safetensors');
  const ids = Array.from(fx.array('input_ids'));
  return { input_ids: [ids], labels: [Array.from(fx.array('labels'))], pixel_values: fx.tensor('pixel_values') };
}

function owl1Batch(): TrainingBatch {
  const fx = loadFixture('owl1_tiny/case_one_image.safetensors');
  const ids = Array.from(fx.array('input_ids'));
  return {
    input_ids: [ids],
    labels: [ids.map((id, i) => (i > 50 && id >= 0 ? id : -100))],
    pixel_values: fx.tensor('pixel_values'),
  };
}

describe('parameter groups', () => {
  beforeAll(() => useBackend('cpu'));
  it("transformers' decay rule: no decay for biases and nn.LayerNorm parameters, RMSNorm weights decayed", () => {
    const model = fixtureModel('owl2_tiny');
    const keys = [...model.namedParameters()].map(([k]) => k);
    const groups = buildParamGroups(model, keys, {
      defaults: { lr: 1e-3, lr_scale: 1, weight_decay: 0.05, betas: [0.9, 0.98], eps: 1e-6 },
      weight_decay_exclude: 'bias_and_layernorm',
    });
    const noDecay = new Set(groups.filter((g) => g.weight_decay === 0).flatMap((g) => g.keys));
    // nn.LayerNorm in the towers: vision pre/post/per-layer norms, abstractor norm1/normk/norm2/ffn_ln
    const layerNorm = (k: string) =>
      /(pre_layernorm|post_layernorm|input_layernorm|post_attention_layernorm)\.weight$/.test(k) &&
      k.includes('vision_model');
    const absNorm = (k: string) => /\.(norm1|normk|norm2|ffn_ln)\.weight$/.test(k);
    const expected = keys.filter((k) => k.includes('bias') || layerNorm(k) || absNorm(k));
    expect([...noDecay].sort()).toEqual(expected.sort());
    expect(noDecay.has('model.layers.0.input_layernorm.multiway.0.weight')).toBe(false); // RMSNorm
    expect(noDecay.has('model.norm.weight')).toBe(false);
    const all = buildParamGroups(model, keys, {
      defaults: { lr: 1e-3, lr_scale: 1, weight_decay: 0.05, betas: [0.9, 0.98], eps: 1e-6 },
      weight_decay_exclude: 'none',
      param_groups: [{ params: '^model\\.visual_abstractor\\..*', lr: 2e-5 }],
    });
    expect(all.every((g) => g.weight_decay === 0.05)).toBe(true);
    expect(all.find((g) => g.keys.includes('model.visual_abstractor.vit_eos'))?.lr).toBe(2e-5);
    model.dispose();
  });

  it('layer-wise lr decay: embeddings rate^(N+1), layer i rate^(N−i), the rest 1', () => {
    const d = { rate: 0.9, prefix: 'model.vision_model' };
    expect(layerwiseScale('model.vision_model.embeddings.cls_token', d, 24)).toBeCloseTo(0.9 ** 25, 12);
    expect(layerwiseScale('model.vision_model.encoder.layers.0.mlp.fc1.weight', d, 24)).toBeCloseTo(0.9 ** 24, 12);
    expect(layerwiseScale('model.vision_model.encoder.layers.23.mlp.fc1.weight', d, 24)).toBeCloseTo(0.9, 12);
    expect(layerwiseScale('model.vision_model.post_layernorm.weight', d, 24)).toBe(1);
    expect(layerwiseScale('model.visual_abstractor.vit_eos', d, 24)).toBe(1);
  });
});

describeBackends('training backends', ({ it, backend }) => {
  it(
    'a training step of either model runs only TRAINING_KERNELS (and the check passes here)',
    async () => {
      expect(() => checkTrainingBackend()).not.toThrow();
      const seen = new Set<string>();
      for (const [dir, batch, opts] of [
        ['owl2_tiny', owl2Batch, { max_steps: 2 }],
        ['owl1_tiny', owl1Batch, { recipe: 'mplug_owl_stage2' as const, max_steps: 2 }],
      ] as const) {
        const model = fixtureModel(dir);
        const trainer = new Trainer(model, opts);
        await trainer.step(batch()); // first step: lazily built module state
        const prof = await tf.profile(async () => {
          await trainer.step(batch());
        });
        for (const k of prof.kernelNames) seen.add(k);
        trainer.dispose();
        model.dispose();
      }
      const notKernels = new Set(['logSoftmax__op', 'unnamed scope']); // customGrad scopes in tf.profile
      const missing = [...seen].filter((k) => !notKernels.has(k) && !TRAINING_KERNELS.includes(k));
      expect(missing, `kernels run on ${backend} but not in TRAINING_KERNELS`).toEqual([]);
    },
    SLOW_TIMEOUT,
  );

  it('a backend without a needed kernel is refused before training, naming the kernel', () => {
    let err: unknown;
    try {
      checkTrainingBackend(backend, [...TRAINING_KERNELS, 'Conv2DBackpropFilterNotAKernel']);
    } catch (e) {
      err = e;
    }
    expect(isOwletError(err, TrainerErrorCode.BACKEND_CANNOT_TRAIN)).toBe(true);
    expect((err as Error).message).toContain('Conv2DBackpropFilterNotAKernel');
  });
});
