import * as tf from '@tensorflow/tfjs-core';
import { loadCheckpointInto } from '@owlet/core';
import {
  decodeStepsFor,
  describeBackends,
  fixturePath,
  expectAllClose,
  expectNoLeaks,
  loadFixture,
  loadFixtureJson,
  maxAbsDiff,
} from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
import { MplugOwlForConditionalGeneration } from './MplugOwlForConditionalGeneration.js';
import { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
import type { MplugOwlModel } from './pretrained.js';

type Dir = 'owl2_tiny' | 'owl1_tiny';

function build(dir: Dir): MplugOwlModel {
  const config = loadFixtureJson<Record<string, unknown>>(`${dir}/config.json`);
  const model =
    dir === 'owl2_tiny' ? new MPLUGOwl2LlamaForCausalLM(config) : new MplugOwlForConditionalGeneration(config);
  const weights = loadFixture(`${dir}/model.safetensors`);
  const sd = new Map(weights.keys().map((k) => [k, weights.tensor(k)] as const));
  model.loadStateDict(sd, { ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD });
  tf.dispose([...sd.values()]);
  return model;
}

/** The same weights from the official PyTorch .bin fixture shards (f32), through checkpoint I/O. */
async function buildFromBin(dir: Dir): Promise<MplugOwlModel> {
  const config = loadFixtureJson<Record<string, unknown>>(`${dir}/config.json`);
  const model =
    dir === 'owl2_tiny' ? new MPLUGOwl2LlamaForCausalLM(config) : new MplugOwlForConditionalGeneration(config);
  await loadCheckpointInto(model, fixturePath('torch_bin', `${dir}_f32`), {
    ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD,
  });
  return model;
}

const read = async (t: tf.Tensor): Promise<Float32Array> => {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
};

const CASES: { dir: Dir; name: string }[] = [
  { dir: 'owl2_tiny', name: 'one_image' },
  { dir: 'owl2_tiny', name: 'two_images' },
  { dir: 'owl2_tiny', name: 'text_only' },
  { dir: 'owl1_tiny', name: 'one_image' },
];

// Parity of the assembled models with the official PyTorch code, stage by stage.
describeBackends('assembled models vs fixtures', ({ it: mit }) => {
  for (const c of CASES) {
    mit(`${c.dir}/${c.name}: visual tokens, spliced embeddings, logits and greedy steps`, async () => {
      const fx = loadFixture(`${c.dir}/case_${c.name}.safetensors`);
      const meta = loadFixtureJson<{ generated_ids: number[]; max_new_tokens: number }>(`${c.dir}/case_${c.name}.json`);
      const ids = Array.from(fx.array('input_ids'));
      const model = build(c.dir);
      if (fx.has('pixel_values')) {
        // Module state created on first use (the abstractor's sin-cos tables) is not a leak.
        const warm = fx.tensor('pixel_values');
        tf.dispose([warm, model.encodeImages(warm)]);
      }
      await expectNoLeaks(async () => {
        const pixels = fx.has('pixel_values') ? fx.tensor('pixel_values') : null;
        if (pixels) {
          const vis = await read(model.encodeImages(pixels));
          expectAllClose(vis, fx.array('abstractor_output'), { atol: 1e-5, label: 'abstractor_output' });
        }
        const s = model.prepareInputs(ids, pixels);
        expectAllClose(await read(s.inputs_embeds), fx.array('inputs_embeds'), { atol: 1e-5, label: 'inputs_embeds' });
        if (fx.has('modality_indicators') && c.dir === 'owl2_tiny') {
          expect(Array.from(s.modality_indicators)).toEqual(Array.from(fx.array('modality_indicators')));
        }
        const out = model.forward({ input_ids: ids, pixel_values: pixels, attention_mask: ids.map(() => 1) });
        const logitsDiff = maxAbsDiff(await out.logits.data(), fx.array('logits'));
        expect(logitsDiff.maxAbs).toBeLessThanOrEqual(1e-4);
        tf.dispose([out.logits, out.last_hidden_state]);

        const n = decodeStepsFor(meta.max_new_tokens);
        const gen = await model.generate({
          input_ids: ids,
          pixel_values: pixels,
          max_new_tokens: n,
          eos_token_id: null,
          output_logits: true,
        });
        expect(gen.generated_ids).toEqual(meta.generated_ids.slice(0, n));
        const steps = fx.array('generation_step_logits');
        const vocab = model.config.text_config.vocab_size;
        expect(gen.logits).toHaveLength(n);
        gen.logits!.forEach((row, k) => {
          expectAllClose(row, steps.subarray(k * vocab, (k + 1) * vocab), { atol: 1e-4, label: `step ${k} logits` });
        });
        expect(gen.sequences[0]).toEqual([...ids, ...meta.generated_ids.slice(0, n)]);
        pixels?.dispose();
      }, `${c.dir}/${c.name}`);
      model.dispose();
    });
  }
});

describeBackends('assembled models from the .bin fixture shards', ({ it: mit }) => {
  for (const c of CASES) {
    mit(`${c.dir}/${c.name}: logits and greedy ids`, async () => {
      const fx = loadFixture(`${c.dir}/case_${c.name}.safetensors`);
      const meta = loadFixtureJson<{ generated_ids: number[]; max_new_tokens: number }>(`${c.dir}/case_${c.name}.json`);
      const ids = Array.from(fx.array('input_ids'));
      const model = await buildFromBin(c.dir);
      const pixels = fx.has('pixel_values') ? fx.tensor('pixel_values') : null;
      const out = model.forward({ input_ids: ids, pixel_values: pixels });
      expect(maxAbsDiff(await out.logits.data(), fx.array('logits')).maxAbs).toBeLessThanOrEqual(1e-4);
      tf.dispose([out.logits, out.last_hidden_state]);
      const n = decodeStepsFor(meta.max_new_tokens);
      const gen = await model.generate({
        input_ids: ids,
        pixel_values: pixels,
        max_new_tokens: n,
        eos_token_id: null,
      });
      expect(gen.generated_ids).toEqual(meta.generated_ids.slice(0, n));
      pixels?.dispose();
      model.dispose();
    });
  }
});

describeBackends('lifecycle', ({ it: mit }) => {
  mit('build, load, forward, generate, dispose: the tensor count returns to where it was', async () => {
    const before = tf.memory().numTensors;
    const fx = loadFixture('owl2_tiny/case_one_image.safetensors');
    const model = build('owl2_tiny');
    const pixels = fx.tensor('pixel_values');
    const ids = Array.from(fx.array('input_ids'));
    const out = model.forward({ input_ids: ids, pixel_values: pixels });
    tf.dispose([out.logits, out.last_hidden_state]);
    await model.generate({ input_ids: ids, pixel_values: pixels, max_new_tokens: 3 });
    pixels.dispose();
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  mit('abort stops within one decode step and frees everything', async () => {
    const fx = loadFixture('owl2_tiny/case_one_image.safetensors');
    const model = build('owl2_tiny');
    const pixels = fx.tensor('pixel_values');
    tf.dispose(model.encodeImages(pixels)); // module state created on first use
    const ids = Array.from(fx.array('input_ids'));
    await expectNoLeaks(async () => {
      const ac = new AbortController();
      let seen = 0;
      const gen = await model.generate({
        input_ids: ids,
        pixel_values: pixels,
        max_new_tokens: 16,
        eos_token_id: null,
        signal: ac.signal,
        streamer: (t: number[]) => {
          seen += t.length;
          if (seen === 2) ac.abort();
        },
      });
      expect(gen.finish_reason).toBe('abort');
      expect(gen.generated_ids.length).toBeLessThanOrEqual(3);
    });
    pixels.dispose();
    model.dispose();
  });
});

describe('released configurations, shape-only', () => {
  const cases = [
    {
      file: 'released_keys_mplug_owl2_7b.json',
      make: (cfg: Record<string, unknown>) => new MPLUGOwl2LlamaForCausalLM(cfg),
      cfg: { model_type: 'mplug_owl2' },
    },
    {
      file: 'released_keys_mplug_owl_7b.json',
      make: (cfg: Record<string, unknown>) => new MplugOwlForConditionalGeneration(cfg),
      cfg: { model_type: 'mplug-owl', text_config: {}, vision_config: {}, visual_abstractor_config: {} },
    },
  ];
  for (const c of cases) {
    it(`${c.file}: every key and shape, no memory allocated`, () => {
      const released = loadFixtureJson<{
        keys: { key: string; shape: number[] }[];
        parameter_count_excluding_inv_freq: number;
      }>(c.file);
      const before = tf.memory().numTensors;
      const model = c.make(c.cfg);
      const ours = [...model.namedParameters()].map(([k, p]) => ({ key: k, shape: [...p.shape] }));
      const expected = released.keys.filter((k) => !k.key.endsWith('rotary_emb.inv_freq'));
      const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
      expect(ours.sort(byKey)).toEqual(expected.sort(byKey));
      expect(model.numParameters()).toBe(released.parameter_count_excluding_inv_freq);
      expect(tf.memory().numTensors).toBe(before);
      model.dispose();
    });
  }

  it('mPLUG-Owl2 has 8,197,859,328 parameters', () => {
    const model = new MPLUGOwl2LlamaForCausalLM({ model_type: 'mplug_owl2' });
    expect(model.numParameters()).toBe(8_197_859_328);
    model.dispose();
  });
});
