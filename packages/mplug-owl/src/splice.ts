/**
 * Splicing image features into the text embedding sequence, batch 1, as the official code does.
 *
 * - mPLUG-Owl2 (`prepare_inputs_labels_for_multimodal`, X-PLUG/mPLUG-Owl@0f3068f
 *   mPLUG-Owl2/mplug_owl2/model/modeling_mplug_owl2.py): every id −200 EXPANDS into the T rows of the
 *   next image (T = queries + 1), all with modality 1; text rows have modality 0. The i-th −200 takes
 *   image i.
 * - mPLUG-Owl v1 (`MplugOwlForConditionalGeneration.generate`, mPLUG-Owl/mplug_owl/modeling_mplug_owl.py):
 *   each run of negative ids (−1 placeholders) is looked up as id 0 and then OVERWRITTEN in place by
 *   the next image's T rows; the length does not change.
 */
import * as tf from '@tensorflow/tfjs-core';
import { OwletError, formatShape } from '@owlet/core';
import { IMAGE_TOKEN_INDEX } from '@owlet/tokenizer';

export interface SplicedSequence {
  /** [1, L', D] */
  inputs_embeds: tf.Tensor3D;
  /** length L': 0 text, 1 image */
  modality_indicators: Int32Array;
  /** Where each image's rows sit in the spliced sequence. */
  imageSpans: { start: number; length: number }[];
}

/** Looks up embeddings for text ids: [n] → [n, D]. */
export type EmbedFn = (ids: number[]) => tf.Tensor2D;

function checkFeatures(features: tf.Tensor | null | undefined, expectedImages: number, what: string): void {
  const n = features ? (features.shape[0] as number) : 0;
  if (expectedImages !== n) {
    throw new OwletError(
      'IMAGE_COUNT_MISMATCH',
      `the prompt has ${expectedImages} image slot(s) (${what}) but ${n} image(s) were given`,
      { details: { slots: expectedImages, images: n } },
    );
  }
  if (features && features.rank !== 3) {
    throw new OwletError('SHAPE_MISMATCH', `image features must be [N, T, D], got ${formatShape(features.shape)}`);
  }
}

/**
 * Length of the spliced sequence, known before any image is encoded: mPLUG-Owl2 expands each −200
 * into `tokensPerImage` rows; mPLUG-Owl v1 overwrites its placeholder runs in place (same length).
 */
export function splicedLength(ids: ArrayLike<number>, tokensPerImage: number, expands: boolean): number {
  let n = ids.length;
  if (expands) for (let i = 0; i < ids.length; i++) if (ids[i] === IMAGE_TOKEN_INDEX) n += tokensPerImage - 1;
  return n;
}

/** mPLUG-Owl2: expand each −200 into the rows of the next image. */
export function spliceOwl2(
  inputIds: ArrayLike<number>,
  features: tf.Tensor3D | null | undefined,
  embed: EmbedFn,
): SplicedSequence {
  const ids = Array.from(inputIds);
  const slots = ids.filter((id) => id === IMAGE_TOKEN_INDEX).length;
  checkFeatures(features, slots, `${IMAGE_TOKEN_INDEX} ids`);
  for (const id of ids) {
    if (id < 0 && id !== IMAGE_TOKEN_INDEX) {
      throw new OwletError(
        'INVALID_ARGUMENT',
        `input id ${id} is negative and not the image token ${IMAGE_TOKEN_INDEX}`,
      );
    }
  }
  const t = features ? (features.shape[1] as number) : 0;
  const modality: number[] = [];
  const imageSpans: { start: number; length: number }[] = [];
  const embeds = tf.tidy(() => {
    const parts: tf.Tensor2D[] = [];
    let text: number[] = [];
    let image = 0;
    const flush = () => {
      if (text.length === 0) return;
      parts.push(embed(text));
      for (let i = 0; i < text.length; i++) modality.push(0);
      text = [];
    };
    for (const id of ids) {
      if (id !== IMAGE_TOKEN_INDEX) {
        text.push(id);
        continue;
      }
      flush();
      imageSpans.push({ start: modality.length, length: t });
      // [N, T, D] -> [T, D] for image `image`
      parts.push(tf.squeeze(tf.slice(features as tf.Tensor3D, [image, 0, 0], [1, -1, -1]), [0]) as tf.Tensor2D);
      for (let i = 0; i < t; i++) modality.push(1);
      image++;
    }
    flush();
    if (parts.length === 0) {
      throw new OwletError('INVALID_ARGUMENT', 'the prompt is empty: no text ids and no images');
    }
    return tf.expandDims(parts.length === 1 ? (parts[0] as tf.Tensor2D) : tf.concat(parts, 0), 0) as tf.Tensor3D; // [L', D] -> [1, L', D]
  });
  return { inputs_embeds: embeds, modality_indicators: Int32Array.from(modality), imageSpans };
}

/** mPLUG-Owl v1: overwrite each run of negative placeholder ids with the next image's rows. */
export function spliceOwl1(
  inputIds: ArrayLike<number>,
  features: tf.Tensor3D | null | undefined,
  embed: EmbedFn,
): SplicedSequence {
  const ids = Array.from(inputIds);
  const runs: { start: number; length: number }[] = [];
  for (let i = 0; i < ids.length; i++) {
    if ((ids[i] as number) < 0 && (i === 0 || (ids[i - 1] as number) >= 0)) runs.push({ start: i, length: 0 });
    if ((ids[i] as number) < 0) (runs[runs.length - 1] as { length: number }).length++;
  }
  checkFeatures(features, runs.length, 'runs of negative placeholder ids');
  const t = features ? (features.shape[1] as number) : 0;
  for (const r of runs) {
    if (r.length !== t) {
      throw new OwletError(
        'IMAGE_COUNT_MISMATCH',
        `an image placeholder run at position ${r.start} has ${r.length} ids, the visual tokens are ${t}`,
        { details: { start: r.start, run: r.length, tokens: t } },
      );
    }
  }
  const modality = new Int32Array(ids.length); // v1 has no modality-adaptive module: all 0 for the LLM
  const embeds = tf.tidy(() => {
    const parts: tf.Tensor2D[] = [];
    let pos = 0;
    runs.forEach((r, image) => {
      if (r.start > pos) parts.push(embed(ids.slice(pos, r.start)));
      parts.push(tf.squeeze(tf.slice(features as tf.Tensor3D, [image, 0, 0], [1, -1, -1]), [0]) as tf.Tensor2D); // [T, D]
      pos = r.start + r.length;
    });
    if (pos < ids.length) parts.push(embed(ids.slice(pos)));
    if (parts.length === 0) throw new OwletError('INVALID_ARGUMENT', 'the prompt is empty');
    return tf.expandDims(parts.length === 1 ? (parts[0] as tf.Tensor2D) : tf.concat(parts, 0), 0) as tf.Tensor3D; // [1, L, D]
  });
  return { inputs_embeds: embeds, modality_indicators: modality, imageSpans: runs };
}
