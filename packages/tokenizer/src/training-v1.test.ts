import { beforeAll, describe, expect, it } from 'vitest';

import { isTokenizerError } from './errors.js';
import { IGNORE_INDEX, V1_MEDIA_TOKEN_ID } from './images.js';
import { LlamaTokenizer } from './llama-tokenizer.js';
import { llamaModelBytes } from './oracle.test-helpers.js';
import { buildTrainingExampleV1 } from './training-v1.js';

let tok: LlamaTokenizer;
beforeAll(() => {
  tok = LlamaTokenizer.fromModelProto(llamaModelBytes());
});

const SYSTEM =
  "The following is a conversation between a curious human and AI assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

describe('buildTrainingExampleV1 (xgpt3_dataset labels)', () => {
  it('BOS, chunks tokenized on their own, media runs, answers + EOS trained, the rest −100', () => {
    const text = `${SYSTEM}\nHuman: <image>\nHuman: What is it?\nAI: An owl.\nHuman: Where?\nAI: On a branch.`;
    const ex = buildTrainingExampleV1(tok, text, { media_tokens_per_image: 5 });
    // the same sequence assembled from the official chunking by hand
    const t = (s: string) => tok.encode(s, { add_special_tokens: false });
    // "\nAI: " is not a delimiter: the split is on "AI: ", so the "\n" stays with the question.
    const chunks: [number[], boolean][] = [
      [[1], false],
      [t(SYSTEM), false],
      [t('\nHuman: '), false],
      [new Array(5).fill(V1_MEDIA_TOKEN_ID), false],
      [t('\nHuman: '), false],
      [t('What is it?\n'), false],
      [t('AI: '), false],
      [[...t('An owl.'), 2], true],
      [t('\nHuman: '), false],
      [t('Where?\n'), false],
      [t('AI: '), false],
      [[...t('On a branch.'), 2], true],
    ];
    const ids = chunks.flatMap(([c]) => c);
    const labels = chunks.flatMap(([c, train]) => c.map((id) => (train ? id : IGNORE_INDEX)));
    expect(ex.input_ids).toEqual(ids);
    expect(ex.labels).toEqual(labels);
    expect(ex.n_images).toBe(1);
    expect(ex.labels.filter((l) => l === 2)).toHaveLength(2);
  });

  it('truncates at max_length and refuses an empty text', () => {
    const text = `${SYSTEM}\nHuman: hi\nAI: ${'word '.repeat(200)}`;
    const ex = buildTrainingExampleV1(tok, text, { max_length: 64 });
    expect(ex.input_ids.length).toBeLessThanOrEqual(65);
    expect(ex.labels.length).toBe(ex.input_ids.length);
    let err: unknown;
    try {
      buildTrainingExampleV1(tok, '');
    } catch (e) {
      err = e;
    }
    expect(isTokenizerError(err)).toBe(true);
  });
});
