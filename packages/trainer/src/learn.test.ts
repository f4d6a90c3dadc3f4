/**
 * End to end: a tiny mPLUG-Owl2 trained on a generated dataset drives its loss down tenfold. The
 * answer (one of four ids) is only predictable from the image, so a model that ignores the image
 * plateaus at ln(4)/2 ≈ 0.69 per token: a tenfold drop from ≈ ln(96) ≈ 4.6 needs the image path.
 */
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '@owlet/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';

import { Trainer, collateCausalLm, inMemoryDataset, type TrainingBatch } from './index.js';
import { colourDataset, tinyOwl2 } from './testing.testutil.js';

beforeAll(() => useBackend('wasm'));

describe('learning [wasm]', () => {
  it('250 steps on 64 generated samples bring the held-out loss down more than tenfold', async () => {
    const model = tinyOwl2(21);
    const train = inMemoryDataset(colourDataset(64, 1));
    const held = collateCausalLm(colourDataset(32, 2)) as unknown as TrainingBatch;
    const evalLoss = () => {
      const l = tf.tidy(() => model.computeLoss(held).loss);
      const v = l.dataSync()[0] as number;
      l.dispose();
      return v;
    };
    const before = evalLoss();
    const trainer = new Trainer(model, {
      learning_rate: 3e-3,
      lr_scheduler_type: 'cosine',
      warmup_steps: 10,
      max_steps: 250,
      per_device_train_batch_size: 8,
      weight_decay: 0,
      seed: 3,
      logging_steps: 50,
    });
    const logs: number[] = [];
    const out = await trainer.train(train, { on_log: (e) => logs.push(e.loss) });
    const after = evalLoss();
    console.info(
      `[learn] held-out loss ${before.toFixed(3)} -> ${after.toFixed(4)} (${out.metrics.train_steps_per_second.toFixed(1)} steps/s)`,
    );
    expect(out.global_step).toBe(250);
    expect(before).toBeGreaterThan(3.5);
    expect(after).toBeLessThan(before / 10);
    expect(logs.length).toBe(5);
    (held.pixel_values as tf.Tensor).dispose();
    trainer.dispose();
    model.dispose();
  }, 600_000);
});
