/** Test-only helpers: the fixture models and tiny random mPLUG-Owl2 models for loop tests. */
import * as tf from '@tensorflow/tfjs-core';
import { MPLUGOwl2LlamaForCausalLM, MplugOwlForConditionalGeneration, MplugOwlPreTrainedModel } from '@owlet/mplug-owl';
import { loadFixture, loadFixtureJson } from '@owlet/test-utils';

import type { CausalLmSample } from './index.js';

export function fixtureModel(
  dir: 'owl2_tiny' | 'owl1_tiny',
): MPLUGOwl2LlamaForCausalLM | MplugOwlForConditionalGeneration {
  const config = loadFixtureJson<Record<string, unknown>>(`${dir}/config.json`);
  const model =
    dir === 'owl2_tiny' ? new MPLUGOwl2LlamaForCausalLM(config) : new MplugOwlForConditionalGeneration(config);
  const w = loadFixture(`${dir}/model.safetensors`);
  const sd = new Map(w.keys().map((k) => [k, w.tensor(k)] as const));
  model.loadStateDict(sd, { ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD });
  tf.dispose([...sd.values()]);
  return model;
}

/** A config.json of a very small mPLUG-Owl2 (28-px images: 2×2 patches, 4 queries → 5 visual tokens). */
export function tinyOwl2Config(vocab = 96): Record<string, unknown> {
  const base = loadFixtureJson<Record<string, unknown>>('owl2_tiny/config.json');
  const cfg = structuredClone(base) as Record<string, unknown> & {
    visual_config: { visual_model: Record<string, unknown>; visual_abstractor: Record<string, unknown> };
  };
  Object.assign(cfg, {
    vocab_size: vocab,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
  });
  Object.assign(cfg.visual_config.visual_model, {
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    image_size: 28,
  });
  Object.assign(cfg.visual_config.visual_abstractor, {
    hidden_size: 16,
    encoder_hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_learnable_queries: 4,
    grid_size: 2,
  });
  return cfg;
}

export function tinyOwl2(seed = 1, vocab = 96): MPLUGOwl2LlamaForCausalLM {
  return new MPLUGOwl2LlamaForCausalLM(tinyOwl2Config(vocab)).initialize({ seed });
}

export const take = async (t: tf.Tensor): Promise<Float32Array> => {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
};

/** Bit patterns of every parameter (for bit-identity checks). */
export async function paramBits(model: {
  namedParameters(): Iterable<[string, { canonical(): tf.Tensor }]>;
}): Promise<Map<string, Uint32Array>> {
  const out = new Map<string, Uint32Array>();
  for (const [k, p] of model.namedParameters()) {
    const d = await take(p.canonical());
    out.set(k, new Uint32Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength)));
  }
  return out;
}

/**
 * A generated "which colour is the image" dataset in id space for the tiny model: the answer id
 * (20 + class) is only predictable from the image; questions have 0–3 filler ids, so lengths vary.
 */
export function colourDataset(n: number, seed: number, side = 28): CausalLmSample[] {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: CausalLmSample[] = [];
  for (let i = 0; i < n; i++) {
    const c = Math.floor(rnd() * 4);
    const px = new Float32Array(3 * side * side);
    for (let ch = 0; ch < 3; ch++) {
      const level = c === 3 ? -1 : ch === c ? 1.5 : -0.5;
      for (let j = 0; j < side * side; j++) px[ch * side * side + j] = level + 0.3 * (rnd() - 0.5);
    }
    const filler = Array.from({ length: Math.floor(rnd() * 4) }, () => 30 + Math.floor(rnd() * 40));
    const prompt = [1, 10, 11, -200, 12, ...filler, 13, 14];
    const input_ids = [...prompt, 20 + c, 2];
    const labels = input_ids.map((id, k) => (k >= prompt.length ? id : -100));
    out.push({ input_ids, labels, pixel_values: [px] });
  }
  return out;
}
