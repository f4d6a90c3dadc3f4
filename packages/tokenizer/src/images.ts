/**
 * Image placeholders in prompts.
 *
 * - mPLUG-Owl2 `tokenizer_image_token` (mplug_owl2/mm_utils.py @0f3068f): split the prompt on
 *   `<|image|>`, tokenize every chunk separately (HF-slow, with BOS), keep BOS only from the
 *   first chunk, put −200 between chunks. At HEAD an empty chunk is not tokenized, so a prompt that
 *   starts with the image gives `[-200, 1, …]`; the release commit 9a28b3b tokenized empty chunks
 *   (to `[1]`) and gave `[1, -200, …]` (`variant: 'release-9a28b3b'`).
 * - mPLUG-Owl v1 `_tokenize_prompt` / `tokenize_prompts` (mplug_owl/processing_mplug_owl.py): BOS,
 *   then every `<image>` becomes a run of −1 (`media_tokens_per_image`, 65), text chunks are
 *   tokenized with `add_special_tokens=False`; a batch is right-padded with EOS and gets an
 *   attention mask.
 *
 * Both count the image slots and throw `IMAGE_COUNT_MISMATCH` unless it equals `n_images`
 * (reliability checklist B24). A plain string prompt is trusted (all markers and `</s>` count, as in
 * the official code); pass `PromptPart[]` to keep user text literal.
 */
import { TokenizerError, TokenizerErrorCode } from './errors.js';
import type { LlamaTokenizer, PromptPart } from './llama-tokenizer.js';

export const IMAGE_TOKEN_INDEX = -200;
export const DEFAULT_IMAGE_TOKEN = '<|image|>';
export const IGNORE_INDEX = -100;
export const V1_MEDIA_TOKEN = '<image>';
export const V1_MEDIA_TOKEN_ID = -1;
export const V1_MEDIA_TOKENS_PER_IMAGE = 65;

export type Prompt = string | readonly PromptPart[];

function asParts(prompt: Prompt): PromptPart[] {
  if (typeof prompt === 'string') return [{ text: prompt, trusted: true }];
  return prompt.map((p) => ({ text: p.text, trusted: p.trusted }));
}

/**
 * Splits parts on `marker`, only where the marker lies entirely inside a trusted part. Returns
 * the chunks (each a list of parts) — n markers give n + 1 chunks.
 */
export function splitPartsOnMarker(parts: readonly PromptPart[], marker: string): PromptPart[][] {
  let last: PromptPart[] = [];
  const chunks: PromptPart[][] = [last];
  for (const p of parts) {
    if (!p.trusted) {
      last.push(p);
      continue;
    }
    const pieces = p.text.split(marker);
    pieces.forEach((t, i) => {
      if (i > 0) {
        last = [];
        chunks.push(last);
      }
      if (t.length > 0) last.push({ text: t, trusted: true });
    });
  }
  return chunks;
}

const chunkText = (c: readonly PromptPart[]): string => c.map((p) => p.text).join('');

function checkCount(found: number, given: number | undefined, marker: string): void {
  if (given === undefined) return;
  if (!Number.isInteger(given) || given < 0) {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_ARGUMENT,
      `n_images must be a non-negative integer, got ${String(given)}`,
    );
  }
  if (found !== given) {
    throw new TokenizerError(
      TokenizerErrorCode.IMAGE_COUNT_MISMATCH,
      `the prompt has ${found} image slot(s) (${marker}) but ${given} image(s) were given`,
      { details: { slots: found, images: given } },
    );
  }
}

export interface TokenizeWithImagesOptions {
  /** Number of images attached; must equal the number of image slots. Required. */
  n_images: number;
  image_token?: string;
  image_token_index?: number;
  /** 'head' (X-PLUG/mPLUG-Owl@0f3068f, default) or 'release-9a28b3b' (Nov 2023). */
  variant?: 'head' | 'release-9a28b3b';
}

/** mPLUG-Owl2 `tokenizer_image_token(prompt, tokenizer)`. */
export function tokenizeWithImages(
  tokenizer: LlamaTokenizer,
  prompt: Prompt,
  options: TokenizeWithImagesOptions,
): number[] {
  if (options === undefined || options.n_images === undefined) {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_ARGUMENT,
      'tokenizeWithImages needs { n_images } (the number of attached images)',
    );
  }
  const marker = options.image_token ?? DEFAULT_IMAGE_TOKEN;
  const imageIndex = options.image_token_index ?? IMAGE_TOKEN_INDEX;
  const variant = options.variant ?? 'head';
  const chunks = splitPartsOnMarker(asParts(prompt), marker);
  checkCount(chunks.length - 1, options.n_images, marker);
  // `tokenizer(chunk).input_ids`: HF-slow with special tokens parsed in trusted text, BOS added.
  const promptChunks = chunks.map((c) =>
    variant === 'head' && chunkText(c).length === 0 ? [] : tokenizer.encodeParts(c, { add_special_tokens: true }),
  );
  const inputIds: number[] = [];
  let offset = 0;
  const first = promptChunks[0];
  if (first !== undefined && first.length > 0 && first[0] === tokenizer.bos_token_id) {
    offset = 1;
    inputIds.push(first[0]);
  }
  // insert_separator(prompt_chunks, [image] * (offset + 1)), then extend with x[offset:]
  const sep = new Array<number>(offset + 1).fill(imageIndex);
  promptChunks.forEach((x, i) => {
    if (i > 0) for (const id of sep.slice(offset)) inputIds.push(id);
    for (const id of x.slice(offset)) inputIds.push(id);
  });
  return inputIds;
}

export interface TokenizePromptV1Options {
  /** Number of images attached; must equal the number of `<image>` slots. Required. */
  n_images: number;
  /** Visual tokens per image (65 for the released model). */
  media_tokens_per_image?: number;
  media_token?: string;
  add_bos?: boolean;
}

/** mPLUG-Owl v1 `_tokenize_prompt(prompt, tokenizer, add_BOS=True)`. */
export function tokenizePromptV1(
  tokenizer: LlamaTokenizer,
  prompt: Prompt,
  options: TokenizePromptV1Options,
): number[] {
  if (options === undefined || options.n_images === undefined) {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_ARGUMENT,
      'tokenizePromptV1 needs { n_images } (the number of attached images)',
    );
  }
  const marker = options.media_token ?? V1_MEDIA_TOKEN;
  const perImage = options.media_tokens_per_image ?? V1_MEDIA_TOKENS_PER_IMAGE;
  if (!Number.isInteger(perImage) || perImage < 1) {
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_ARGUMENT,
      `media_tokens_per_image must be a positive integer, got ${String(perImage)}`,
    );
  }
  const chunks = splitPartsOnMarker(asParts(prompt), marker);
  checkCount(chunks.length - 1, options.n_images, marker);
  const ids: number[] = [];
  if ((options.add_bos ?? true) && tokenizer.bos_token_id !== null) ids.push(tokenizer.bos_token_id);
  chunks.forEach((c, i) => {
    if (i > 0) for (let k = 0; k < perImage; k++) ids.push(V1_MEDIA_TOKEN_ID);
    if (chunkText(c).length > 0) for (const id of tokenizer.encodeParts(c, { add_special_tokens: false })) ids.push(id);
  });
  return ids;
}

export interface TokenizePromptsV1Options extends Omit<TokenizePromptV1Options, 'n_images'> {
  /** Images per prompt (same length as `prompts`). */
  n_images: readonly number[];
  /** Extra EOS padding columns, as the official `tokens_to_generate` (default 0). */
  tokens_to_generate?: number;
}

export interface BatchEncoding {
  input_ids: number[][];
  attention_mask: number[][];
  /** Unpadded length of each row. */
  lengths: number[];
}

/** mPLUG-Owl v1 `tokenize_prompts` as called by `MplugOwlProcessor`: right-padded with EOS. */
export function tokenizePromptsV1(
  tokenizer: LlamaTokenizer,
  prompts: readonly Prompt[],
  options: TokenizePromptsV1Options,
): BatchEncoding {
  if (!Array.isArray(options.n_images) || options.n_images.length !== prompts.length) {
    throw new TokenizerError(
      TokenizerErrorCode.IMAGE_COUNT_MISMATCH,
      `n_images must list the image count of each of the ${prompts.length} prompts, got ${JSON.stringify(options.n_images)}`,
    );
  }
  const counts = options.n_images;
  const rows = prompts.map((p, i) => {
    const n = counts[i];
    if (n === undefined) {
      throw new TokenizerError(TokenizerErrorCode.IMAGE_COUNT_MISMATCH, `n_images has no count for prompt ${i}`);
    }
    return tokenizePromptV1(tokenizer, p, { ...options, n_images: n });
  });
  const lengths = rows.map((r) => r.length);
  const width = Math.max(0, ...lengths) + (options.tokens_to_generate ?? 0);
  const pad = tokenizer.eos_token_id ?? 0;
  return {
    input_ids: rows.map((r) => [...r, ...new Array<number>(width - r.length).fill(pad)]),
    attention_mask: rows.map((r) => [
      ...new Array<number>(r.length).fill(1),
      ...new Array<number>(width - r.length).fill(0),
    ]),
    lengths,
  };
}
