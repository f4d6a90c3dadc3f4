/**
 * mPLUG-Owl v1 training samples: the jsonl `text` of `pipeline/data_utils/xgpt3_dataset.py`
 * (`_extract_text_token_from_conversation`, X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl/), tokenized with its
 * label mask.
 *
 * BOS, then the text split on the media token (`<image>`), `"AI: "` and `"\nHuman: "` (the
 * delimiters kept as chunks of their own); each chunk is tokenized on its own without special
 * tokens. A media token becomes `media_tokens_per_image` ids −1; the chunk right after `"AI: "`
 * is an answer: its tokens and an appended EOS are trained, every other token is −100. The
 * sequence is cut at `max_length` tokens (answers truncated, a media run that does not fit ends
 * the sample). Deviation: a text that starts with the media token gets its media ids (the
 * official code would tokenize the first chunk as text whatever it is).
 */
import { TokenizerError, TokenizerErrorCode } from './errors.js';
import { IGNORE_INDEX, V1_MEDIA_TOKEN, V1_MEDIA_TOKEN_ID, V1_MEDIA_TOKENS_PER_IMAGE } from './images.js';
import type { LlamaTokenizer } from './llama-tokenizer.js';

export interface TrainingExampleV1 {
  input_ids: number[];
  /** −100 everywhere but the answers and their EOS. */
  labels: number[];
  /** Media runs in the sequence (images the sample needs). */
  n_images: number;
}

export interface BuildTrainingExampleV1Options {
  media_tokens_per_image?: number;
  media_token?: string;
  /** Longest sequence (the official `max_length`, 2048 in train_it.sh). */
  max_length?: number;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function buildTrainingExampleV1(
  tokenizer: LlamaTokenizer,
  text: string,
  options: BuildTrainingExampleV1Options = {},
): TrainingExampleV1 {
  if (typeof text !== 'string' || text.length === 0) {
    throw new TokenizerError(TokenizerErrorCode.INVALID_ARGUMENT, 'a v1 training sample needs a non-empty text');
  }
  const media = options.media_token ?? V1_MEDIA_TOKEN;
  const perImage = options.media_tokens_per_image ?? V1_MEDIA_TOKENS_PER_IMAGE;
  const maxLength = options.max_length ?? 2048;
  if (!Number.isInteger(perImage) || perImage < 1)
    throw new TokenizerError(
      TokenizerErrorCode.INVALID_ARGUMENT,
      `media_tokens_per_image must be ≥ 1, got ${perImage}`,
    );
  if (!Number.isInteger(maxLength) || maxLength < 2)
    throw new TokenizerError(TokenizerErrorCode.INVALID_ARGUMENT, `max_length must be ≥ 2, got ${maxLength}`);
  const eos = tokenizer.eos_token_id;
  const bos = tokenizer.bos_token_id;
  if (eos === null || bos === null)
    throw new TokenizerError(TokenizerErrorCode.INVALID_ARGUMENT, 'the tokenizer needs BOS and EOS ids');
  const pattern = new RegExp(`(${[media, 'AI: ', '\nHuman: '].map(escapeRegExp).join('|')})`);
  const chunks = text.split(pattern).filter((c) => c.length > 0);
  const ids: number[] = [bos];
  const train: boolean[] = [false];
  let images = 0;
  const tok = (s: string) => tokenizer.encode(s, { add_special_tokens: false });
  for (const [i, chunk] of chunks.entries()) {
    if (ids.length >= maxLength + 1) break;
    if (chunk === media) {
      if (ids.length + perImage > maxLength + 1) break;
      for (let k = 0; k < perImage; k++) {
        ids.push(V1_MEDIA_TOKEN_ID);
        train.push(false);
      }
      images++;
      continue;
    }
    let piece = tok(chunk);
    const answer = i > 0 && chunks[i - 1] === 'AI: ';
    if (answer) {
      if (ids.length + piece.length >= maxLength) piece = piece.slice(0, Math.max(0, maxLength - ids.length));
      piece = [...piece, eos];
    }
    for (const id of piece) {
      ids.push(id);
      train.push(answer);
    }
  }
  const input_ids = ids.slice(0, maxLength + 1);
  const labels = input_ids.map((id, k) => (train[k] ? id : IGNORE_INDEX));
  return { input_ids, labels, n_images: images };
}
