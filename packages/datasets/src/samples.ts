/**
 * A streaming sample source for @owlet/trainer: `get(i)` renders and tokenizes item `i` on demand
 * (nothing is stored), through the `mplug_owl2` chat template exactly as `model.chat` builds the
 * prompt at inference ("USER: <|image|>question ASSISTANT:"), followed by the answer and `</s>`.
 * Only the answer and `</s>` are labelled.
 */
import { OwletError } from '@owlet/errors';
import { apply_chat_template, type LlamaTokenizer } from '@owlet/tokenizer';

import { mixSeed, Rng } from './rng.js';
import { renderScene, type RgbImage } from './render.js';
import { captionItem, vqaItem } from './vqa.js';

/** −100: the label of a token that is not trained on (transformers' IGNORE_INDEX). */
export const IGNORE_INDEX = -100;

/** What @owlet/trainer's causal-LM collator takes (structurally its `CausalLmSample`). */
export interface ShapesSample {
  input_ids: number[];
  labels: number[];
  pixel_values: Float32Array[];
}

export interface ShapesSampleOptions {
  tokenizer: LlamaTokenizer;
  /** Image → `pixel_values[0]` ([3, S, S] float32), e.g. an MplugOwlImageProcessor's `processDecoded`. */
  preprocess: (image: RgbImage) => Float32Array;
  seed: number;
  /** Samples in the stream (random access; default 10 million). */
  length?: number;
  /** Fraction of caption (stage-1) samples; 1 = captions only, 0 = questions only. */
  caption_fraction?: number;
}

/** Tokenized prompt of one user turn with one image (cached per text: the question set is small). */
export function promptIds(tokenizer: LlamaTokenizer, text: string): number[] {
  return apply_chat_template(
    tokenizer,
    [
      {
        role: 'user',
        content: [{ type: 'image' }, { type: 'text', text }],
      },
    ],
    { template: 'mplug_owl2', tokenize: true },
  );
}

export class ShapesVqaSamples {
  readonly length: number;
  private readonly prompts = new Map<string, number[]>();
  private readonly answers = new Map<string, number[]>();

  constructor(private readonly options: ShapesSampleOptions) {
    this.length = options.length ?? 10_000_000;
    const f = options.caption_fraction ?? 0;
    if (!(f >= 0 && f <= 1)) throw new OwletError('INVALID_ARGUMENT', `caption_fraction must be in [0, 1], got ${f}`);
    if (options.tokenizer.eos_token_id === null) {
      throw new OwletError('INVALID_ARGUMENT', 'the tokenizer has no EOS id: answers end with </s>');
    }
  }

  private prompt(text: string): number[] {
    let ids = this.prompts.get(text);
    if (!ids) {
      ids = promptIds(this.options.tokenizer, text);
      this.prompts.set(text, ids);
    }
    return ids;
  }

  private answer(text: string): number[] {
    let ids = this.answers.get(text);
    if (!ids) {
      ids = [
        ...this.options.tokenizer.encode(text, { add_special_tokens: false }),
        this.options.tokenizer.eos_token_id as number,
      ];
      this.answers.set(text, ids);
    }
    return ids;
  }

  /** Whether sample `index` is a caption. */
  isCaption(index: number): boolean {
    const f = this.options.caption_fraction ?? 0;
    if (f <= 0) return false;
    if (f >= 1) return true;
    return new Rng(mixSeed(this.options.seed, index, 0xc1)).float() < f;
  }

  get(index: number): ShapesSample {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new OwletError('INVALID_ARGUMENT', `sample index must be in [0, ${this.length}), got ${index}`);
    }
    const { seed } = this.options;
    let scene: ReturnType<typeof captionItem>['scene'];
    let prompt: string;
    let answer: string;
    if (this.isCaption(index)) {
      const c = captionItem(seed, index);
      ({ scene, prompt } = c);
      answer = c.caption;
    } else {
      const q = vqaItem(seed, index);
      ({ scene, answer } = q);
      prompt = q.question;
    }
    const p = this.prompt(prompt);
    const a = this.answer(answer);
    return {
      input_ids: [...p, ...a],
      labels: [...new Array<number>(p.length).fill(IGNORE_INDEX), ...a],
      pixel_values: [this.options.preprocess(renderScene(scene))],
    };
  }
}
