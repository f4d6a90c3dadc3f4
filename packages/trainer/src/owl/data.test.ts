import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { isOwletError } from '@owlet/core';
import { REPO_ROOT, useBackend } from '@owlet/test-utils';
import { LlamaTokenizer, buildTrainingExample, buildTrainingExampleV1 } from '@owlet/tokenizer';
import { MplugOwlImageProcessor } from '@owlet/vision-encoder';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  BatchSampler,
  TrainerErrorCode,
  collateCausalLm,
  epochPermutation,
  loadOwlTrainingData,
  parseLlavaJson,
  parseOwlV1Jsonl,
} from '../index.js';

const tmp = mkdtempSync(join(tmpdir(), 'owlet-data-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const IMAGE = join(REPO_ROOT, 'apps/cli/assets/owl.png');
let tok: LlamaTokenizer;
let proc: MplugOwlImageProcessor;
beforeAll(async () => {
  await useBackend('cpu');
  tok = LlamaTokenizer.fromModelProto(
    readFileSync(join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random/tokenizer.model')),
  );
  proc = new MplugOwlImageProcessor({ size: 56, crop_size: 56 }, { entryPoint: 'pad' });
  copyFileSync(IMAGE, join(tmp, 'owl.png'));
});

const code = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return isOwletError(e) ? e.code : e;
  }
  return undefined;
};

describe('mPLUG-Owl training data', () => {
  it('LLaVA JSON (mPLUG-Owl2): preprocess_v1 labels, the image through the processor, typed errors', async () => {
    const records = [
      {
        id: 'a',
        image: 'owl.png',
        conversations: [
          { from: 'human', value: 'What is this?\n<|image|>' },
          { from: 'gpt', value: 'An owl.' },
        ],
      },
      {
        id: 'b',
        conversations: [
          { from: 'human', value: 'Hi' },
          { from: 'gpt', value: 'Hello.' },
        ],
      },
    ];
    const path = join(tmp, 'train.json');
    writeFileSync(path, JSON.stringify(records));
    const ds = await loadOwlTrainingData(path, { tokenizer: tok, image_processor: proc });
    expect(ds.length).toBe(2);
    const s0 = await ds.get(0);
    const ex = buildTrainingExample(tok, (records[0] as { conversations: unknown }).conversations as never, {
      template: 'vicuna_v1',
      has_image: true,
    });
    expect(s0.input_ids).toEqual(ex.input_ids);
    expect(s0.labels).toEqual(ex.labels);
    expect(s0.input_ids.filter((id) => id === -200)).toHaveLength(1);
    const px = (await proc.preprocess(readFileSync(IMAGE))).data;
    expect(Array.from(s0.pixel_values?.[0] as Float32Array)).toEqual(Array.from(px));
    const s1 = await ds.get(1);
    expect(s1.pixel_values).toEqual([]);
    // a batch of both: right padding with 0, labels −100, a zero image for the text-only sample
    const b = collateCausalLm([s0, s1]);
    expect(b.input_ids[1]?.slice(s1.input_ids.length).every((x) => x === 0)).toBe(true);
    expect(b.labels[1]?.slice(s1.labels.length).every((x) => x === -100)).toBe(true);
    expect(b.attention_mask[1]?.slice(s1.input_ids.length).every((x) => x === 0)).toBe(true);
    expect(b.pixel_values?.shape).toEqual([2, 3, 56, 56]);
    expect(Math.max(...(await tf.abs(tf.slice(b.pixel_values as tf.Tensor, [1], [1])).data()))).toBe(0);
    b.pixel_values?.dispose();
    expect(code(() => parseLlavaJson('{}'))).toBe(TrainerErrorCode.INVALID_DATASET);
    expect(code(() => parseLlavaJson('[{"conversations": [{"from": "bot", "value": "x"}]}]'))).toBe(
      TrainerErrorCode.INVALID_DATASET,
    );
    expect(code(() => parseLlavaJson('not json'))).toBe(TrainerErrorCode.INVALID_DATASET);
    const missing = await loadOwlTrainingData(path, {
      tokenizer: tok,
      image_processor: proc,
      image_folder: join(tmp, 'nope'),
    });
    await expect(missing.get(0)).rejects.toThrow(/cannot read image owl\.png/);
    await expect(loadOwlTrainingData(join(tmp, 'x.csv'), { tokenizer: tok })).rejects.toThrow(/cannot read/);
  });

  it('jsonl (mPLUG-Owl v1): xgpt3 labels, one image per <image>, a count mismatch is refused', async () => {
    const text =
      "The following is a conversation between a curious human and AI assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.\nHuman: <image>\nHuman: What is it?\nAI: An owl.";
    const path = join(tmp, 'train.jsonl');
    writeFileSync(
      path,
      `${JSON.stringify({ image: ['owl.png'], text, task_type: 'llava_sft' })}\n\n${JSON.stringify({ image: [], text })}\n`,
    );
    const ds = await loadOwlTrainingData(path, { tokenizer: tok, image_processor: proc, media_tokens_per_image: 9 });
    const s0 = await ds.get(0);
    const ex = buildTrainingExampleV1(tok, text, { media_tokens_per_image: 9 });
    expect(s0.input_ids).toEqual(ex.input_ids);
    expect(s0.labels).toEqual(ex.labels);
    expect(s0.pixel_values).toHaveLength(1);
    await expect(ds.get(1)).rejects.toThrow(/1 <image> slot\(s\) but "image" lists 0/);
    expect(code(() => parseOwlV1Jsonl('{"text": ""}'))).toBe(TrainerErrorCode.INVALID_DATASET);
    expect(code(() => parseOwlV1Jsonl('\n\n'))).toBe(TrainerErrorCode.INVALID_DATASET);
  });

  it('data order: a seeded permutation per epoch, resumable from a position', () => {
    const p0 = Array.from(epochPermutation(10, 42, 0));
    expect([...p0].sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
    expect(Array.from(epochPermutation(10, 42, 0))).toEqual(p0);
    expect(Array.from(epochPermutation(10, 42, 1))).not.toEqual(p0);
    expect(Array.from(epochPermutation(10, 43, 0))).not.toEqual(p0);
    const a = new BatchSampler(10, 4, 42, false);
    const seq = Array.from({ length: 6 }, () => a.next());
    expect(seq.map((b) => b.length)).toEqual([4, 4, 2, 4, 4, 2]);
    const b = new BatchSampler(10, 4, 42, false);
    b.next();
    b.next();
    const resumed = new BatchSampler(10, 4, 42, false, b.position);
    expect(Array.from({ length: 4 }, () => resumed.next())).toEqual(seq.slice(2));
    const dropped = new BatchSampler(10, 4, 42, true);
    expect(Array.from({ length: 3 }, () => dropped.next().length)).toEqual([4, 4, 4]);
    expect(code(() => new BatchSampler(0, 4, 1, false))).toBe(TrainerErrorCode.INVALID_DATASET);
  });
});
