import * as tf from '@tensorflow/tfjs-core';
import { IGNORE_INDEX, isOwletError } from '@owlet/core';
import { describeBackends, expectNoLeaks, loadFixture, loadFixtureJson } from '@owlet/test-utils';
import { expect } from 'vitest';

import { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
import { MplugOwlForConditionalGeneration } from './MplugOwlForConditionalGeneration.js';
import { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
import type { MplugOwlModel } from './pretrained.js';
import type { TrainingBatch } from './training-inputs.js';

function build(dir: 'owl2_tiny' | 'owl1_tiny'): MplugOwlModel {
  const config = loadFixtureJson<Record<string, unknown>>(`${dir}/config.json`);
  const model =
    dir === 'owl2_tiny' ? new MPLUGOwl2LlamaForCausalLM(config) : new MplugOwlForConditionalGeneration(config);
  const w = loadFixture(`${dir}/model.safetensors`);
  const sd = new Map(w.keys().map((k) => [k, w.tensor(k)] as const));
  model.loadStateDict(sd, { ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD });
  tf.dispose([...sd.values()]);
  return model;
}

const scalar = async (t: tf.Tensor): Promise<number> => {
  const v = (await t.data())[0] as number;
  t.dispose();
  return v;
};

/** Right-pads rows as the official collator does (ids with 0, labels with −100, mask ids ≠ 0). */
function pad(samples: { ids: number[]; labels: number[] }[]): Omit<TrainingBatch, 'pixel_values'> {
  const max = Math.max(...samples.map((s) => s.ids.length));
  const input_ids = samples.map((s) => [...s.ids, ...new Array(max - s.ids.length).fill(0)]);
  return {
    input_ids,
    labels: samples.map((s) => [...s.labels, ...new Array(max - s.labels.length).fill(IGNORE_INDEX)]),
    attention_mask: input_ids.map((r) => r.map((id) => (id !== 0 ? 1 : 0))),
  };
}

describeBackends('training forward (computeLoss)', ({ it }) => {
  it('mPLUG-Owl2: a right-padded batch of two conversations gives the token-weighted mean of their own losses', async () => {
    const model = build('owl2_tiny');
    const fx = loadFixture('owl2_tiny/case_train_step.safetensors');
    const ids = Array.from(fx.array('input_ids'));
    const labels = Array.from(fx.array('labels'));
    // a second, shorter conversation without the image prefix's answer tokens cut in half
    const short = { ids: ids.slice(0, 20), labels: labels.slice(0, 20) };
    const long = { ids, labels };
    const pixels = fx.tensor('pixel_values');
    const two = tf.concat([pixels, tf.mul(pixels, -0.5)], 0);
    const warm = model.computeLoss({ ...pad([long]), pixel_values: pixels });
    warm.loss.dispose();
    await expectNoLeaks(async () => {
      const a = model.computeLoss({ ...pad([long]), pixel_values: pixels });
      const img2 = tf.slice(two, [1, 0, 0, 0], [1, -1, -1, -1]);
      const b = model.computeLoss({ ...pad([short]), pixel_values: img2 });
      const ab = model.computeLoss({ ...pad([long, short]), pixel_values: two });
      expect(ab.num_tokens).toBe(a.num_tokens + b.num_tokens);
      const [la, lb, lab] = [await scalar(a.loss), await scalar(b.loss), await scalar(ab.loss)];
      const expected = (la * a.num_tokens + lb * b.num_tokens) / (a.num_tokens + b.num_tokens);
      expect(Math.abs(lab - expected)).toBeLessThan(1e-5);
      img2.dispose();
    }, 'computeLoss');
    // the official zero image of a text-only sample is accepted and skipped
    const textOnly = { ids: [1, 88, 1001, 295, 706, 338, 283, 2], labels: [-100, -100, -100, -100, 706, 338, 283, 2] };
    const withZero = tf.concat([pixels, tf.zerosLike(pixels)], 0);
    const r = model.computeLoss({ ...pad([long, textOnly]), pixel_values: withZero });
    const r2 = model.computeLoss({ ...pad([long, textOnly]), pixel_values: pixels });
    expect(Math.abs((await scalar(r.loss)) - (await scalar(r2.loss)))).toBeLessThan(1e-6);
    let err: unknown;
    try {
      model.computeLoss({ ...pad([long]), pixel_values: two });
    } catch (e) {
      err = e;
    }
    expect(isOwletError(err, 'IMAGE_COUNT_MISMATCH')).toBe(true);
    tf.dispose([pixels, two, withZero]);
    model.dispose();
  });

  it('mPLUG-Owl v1: labels on the spliced sequence, image rows overwritten in place', async () => {
    const model = build('owl1_tiny');
    const fx = loadFixture('owl1_tiny/case_one_image.safetensors');
    const ids = Array.from(fx.array('input_ids'));
    const labels = ids.map((id, i) => (i > 50 && id >= 0 ? id : IGNORE_INDEX));
    const pixels = fx.tensor('pixel_values');
    await expectNoLeaks(async () => {
      const out = model.computeLoss({ input_ids: [ids], labels: [labels], pixel_values: pixels });
      expect(out.num_tokens).toBe(labels.slice(1).filter((l) => l !== IGNORE_INDEX).length);
      // the same loss from the inference forward's logits (float64 cross-entropy)
      const f = model.forward({ input_ids: ids, pixel_values: pixels });
      const logits = (await f.logits.data()) as Float32Array;
      const v = model.config.text_config.vocab_size;
      let sum = 0;
      let n = 0;
      for (let t = 0; t + 1 < ids.length; t++) {
        const y = labels[t + 1] as number;
        if (y === IGNORE_INDEX) continue;
        let max = -Infinity;
        for (let j = 0; j < v; j++) max = Math.max(max, logits[t * v + j] as number);
        let z = 0;
        for (let j = 0; j < v; j++) z += Math.exp((logits[t * v + j] as number) - max);
        sum -= (logits[t * v + y] as number) - max - Math.log(z);
        n++;
      }
      expect(Math.abs((await scalar(out.loss)) - sum / n)).toBeLessThan(1e-5);
      tf.dispose([f.logits, f.last_hidden_state]);
    }, 'v1 computeLoss');
    pixels.dispose();
    model.dispose();
  });

  it('persistentBuffers lists every rotary_emb.inv_freq of the official checkpoint', async () => {
    for (const dir of ['owl2_tiny', 'owl1_tiny'] as const) {
      const model = build(dir);
      const w = loadFixture(`${dir}/model.safetensors`);
      const expected = w.keys().filter((k) => k.endsWith('rotary_emb.inv_freq'));
      const buffers = model.persistentBuffers();
      expect([...buffers.keys()].sort()).toEqual(expected.sort());
      for (const [k, t] of buffers) {
        const ref = w.array(k);
        const got = await t.data();
        for (let i = 0; i < ref.length; i++)
          expect(Math.abs((got[i] as number) - (ref[i] as number))).toBeLessThan(1e-7);
      }
      tf.dispose([...buffers.values()]);
      model.dispose();
    }
  });
});
