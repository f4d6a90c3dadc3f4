/** Test-only helpers: the fixture models and tiny random mPLUG-Owl2 models for loop tests. */
import * as tf from '@tensorflow/tfjs-core';
import { MPLUGOwl2LlamaForCausalLM, MplugOwlForConditionalGeneration, MplugOwlPreTrainedModel } from '@owlet/mplug-owl';
import { loadFixture, loadFixtureJson } from '@owlet/test-utils';

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
