/**
 * Batched training inputs with labels, as the official training forward builds them.
 *
 * - mPLUG-Owl2 `prepare_inputs_labels_for_multimodal` (X-PLUG/mPLUG-Owl@0f3068f
 *   mPLUG-Owl2/mplug_owl2/model/modeling_mplug_owl2.py), labels given: per sample, every −200
 *   expands into the T rows of the next image (modality 1, labels −100); a sample without −200 still
 *   consumes one image (the official collator gives it a zero image; its features are unused). The
 *   sequences are then right-padded with zero embeddings to the longest, modality 0, labels −100,
 *   and each attention mask becomes `[1] * (L'_b − L) + attention_mask_b + [0] * (L_max − L'_b)`
 *   (the official construction, literally).
 * - mPLUG-Owl v1 `MplugOwlForConditionalGeneration.forward` (mPLUG-Owl/mplug_owl/modeling_mplug_owl.py):
 *   every run of negative ids is overwritten in place by the next image's T rows; lengths, labels
 *   and the attention mask are unchanged.
 */
import * as tf from '@tensorflow/tfjs-core';
import { IGNORE_INDEX, OwletError, formatShape } from '@owlet/core';
import { IMAGE_TOKEN_INDEX } from '@owlet/tokenizer';

import type { EmbedFn } from './splice.js';

/** A training batch as the official collators make it: right-padded rows, one image per slot. */
export interface TrainingBatch {
  /** [B][L] token ids; −200 per image (v2) or runs of −1 (v1). */
  input_ids: readonly (readonly number[])[];
  /** [B][L] target ids, −100 where no loss is taken (prompt, padding, image slots). */
  labels: readonly (readonly number[])[];
  /** [B][L] 1 for real tokens, 0 for padding (the collator's `input_ids != pad`); default all 1. */
  attention_mask?: readonly (readonly number[])[] | null;
  /** [N, 3, S, S] preprocessed images in slot order (see `prepareTrainingInputsOwl2` for text-only samples). */
  pixel_values?: tf.Tensor | null;
}

export interface PreparedTrainingInputs {
  /** [B, L', D] */
  inputs_embeds: tf.Tensor3D;
  /** [B][L'] 0 text, 1 image */
  modality_indicators: number[][];
  /** [B][L'] */
  attention_mask: number[][];
  /** [B][L'] */
  labels: number[][];
}

function bad(message: string, details: Record<string, unknown> = {}): OwletError {
  return new OwletError('INVALID_ARGUMENT', message, { details });
}

/** rows[i], which the batch checks guarantee exists. */
function row<T>(rows: readonly T[], i: number): T {
  const r = rows[i];
  if (r === undefined) throw bad(`row ${i} is missing`);
  return r;
}

/** Checks the rows of a batch: equal lengths, labels and mask the shape of the ids. */
export function checkTrainingBatch(batch: TrainingBatch): { batch: number; length: number } {
  const ids = batch.input_ids;
  if (ids.length === 0) throw bad('training batch is empty');
  const l = row(ids, 0).length;
  if (l === 0) throw bad('training batch rows are empty');
  const same = (rows: readonly (readonly number[])[] | null | undefined, name: string) => {
    if (!rows) return;
    if (rows.length !== ids.length || rows.some((r) => r.length !== l)) {
      throw bad(
        `${name} must be [${ids.length}, ${l}] like input_ids, got [${rows.length}, ${rows.map((r) => r.length).join('|')}]`,
      );
    }
  };
  same(ids, 'input_ids');
  same(batch.labels, 'labels');
  same(batch.attention_mask, 'attention_mask');
  for (const [b, r] of (batch.attention_mask ?? []).entries()) {
    for (const [t, m] of r.entries()) {
      if (m !== 0 && m !== 1) throw bad(`attention_mask[${b}][${t}] is ${m}, expected 0 or 1`);
    }
  }
  return { batch: ids.length, length: l };
}

/**
 * mPLUG-Owl2: `features` [N, T, D] are the visual tokens of the images in slot order. `N` is
 * either the number of −200 slots, or that plus one per sample without a slot (the official
 * collator's zero images, skipped here).
 */
export function prepareTrainingInputsOwl2(
  batch: TrainingBatch,
  features: tf.Tensor3D | null,
  embed: EmbedFn,
  hidden: number,
): PreparedTrainingInputs {
  const { batch: b, length: l } = checkTrainingBatch(batch);
  const slots = batch.input_ids.map((r) => r.filter((id) => id === IMAGE_TOKEN_INDEX).length);
  const totalSlots = slots.reduce((a, n) => a + n, 0);
  const withPlaceholders = slots.reduce((a, n) => a + Math.max(1, n), 0);
  const n = features ? (features.shape[0] as number) : 0;
  let placeholders: boolean;
  if (n === totalSlots) placeholders = false;
  else if (features && n === withPlaceholders) placeholders = true;
  else {
    throw new OwletError(
      'IMAGE_COUNT_MISMATCH',
      `the batch has ${totalSlots} image slot(s) (${IMAGE_TOKEN_INDEX} ids)${withPlaceholders !== totalSlots ? ` (${withPlaceholders} with one zero image per text-only sample)` : ''} but ${n} image(s) were given`,
      { details: { slots: totalSlots, images: n } },
    );
  }
  const t = features ? (features.shape[1] as number) : 0;
  for (const [bi, r] of batch.input_ids.entries()) {
    for (const [ti, id] of r.entries()) {
      if (id < 0 && id !== IMAGE_TOKEN_INDEX)
        throw bad(`input_ids[${bi}][${ti}] is ${id}: negative and not the image token ${IMAGE_TOKEN_INDEX}`);
    }
  }
  const masks = batch.attention_mask ?? batch.input_ids.map((r) => r.map(() => 1));
  const modality: number[][] = [];
  const labels: number[][] = [];
  const lengths: number[] = [];
  // One embedding lookup for every text token of the batch (one gradient scatter into the
  // table, not one per text chunk); the pieces are slices of it.
  type Piece = { text: true; start: number; length: number } | { text: false; image: number };
  const allText: number[] = [];
  const plan: Piece[][] = [];
  let image = 0;
  for (let s = 0; s < b; s++) {
    const ids = row(batch.input_ids, s);
    const lab = row(batch.labels, s);
    const pieces: Piece[] = [];
    const mod: number[] = [];
    const newLab: number[] = [];
    let start = allText.length;
    const flush = () => {
      if (allText.length > start) pieces.push({ text: true, start, length: allText.length - start });
      start = allText.length;
    };
    for (let i = 0; i < l; i++) {
      const id = row(ids, i);
      if (id !== IMAGE_TOKEN_INDEX) {
        allText.push(id);
        mod.push(0);
        newLab.push(row(lab, i));
        continue;
      }
      flush();
      pieces.push({ text: false, image });
      image++;
      for (let k = 0; k < t; k++) {
        mod.push(1);
        newLab.push(IGNORE_INDEX);
      }
    }
    flush();
    if (slots[s] === 0 && placeholders) image++; // the zero image of a text-only sample
    plan.push(pieces);
    modality.push(mod);
    labels.push(newLab);
    lengths.push(mod.length);
  }
  const embeds = tf.tidy(() => {
    const table = allText.length > 0 ? embed(allText) : null; // [N_text, D]
    const rows = plan.map((pieces) => {
      const parts = pieces.map(
        (p) =>
          p.text
            ? (tf.slice(table as tf.Tensor2D, [p.start, 0], [p.length, -1]) as tf.Tensor2D)
            : (tf.squeeze(tf.slice(features as tf.Tensor3D, [p.image, 0, 0], [1, -1, -1]), [0]) as tf.Tensor2D), // [T, D]
      );
      return parts.length === 1 ? row(parts, 0) : (tf.concat(parts, 0) as tf.Tensor2D); // [L'_s, D]
    });
    const max = Math.max(...lengths);
    const padded = rows.map((r, s) => {
      const extra = max - row(lengths, s);
      return extra === 0 ? r : (tf.concat([r, tf.zeros([extra, hidden])], 0) as tf.Tensor2D); // right-pad with zeros
    });
    return tf.stack(padded) as tf.Tensor3D; // [B, L_max, D]
  });
  const max = Math.max(...lengths);
  const attention: number[][] = [];
  for (let s = 0; s < b; s++) {
    const len = row(lengths, s);
    const extra = max - len;
    for (let k = 0; k < extra; k++) {
      row(modality, s).push(0);
      row(labels, s).push(IGNORE_INDEX);
    }
    // official: [True] * (len(cur_new_labels) - labels.shape[1]) + attention_mask + [False] * right pad
    attention.push([...new Array(len - l).fill(1), ...row(masks, s), ...new Array(extra).fill(0)]);
  }
  return { inputs_embeds: embeds, modality_indicators: modality, attention_mask: attention, labels };
}

/** mPLUG-Owl v1: overwrite each run of negative ids with the next image's T rows (lengths unchanged). */
export function prepareTrainingInputsOwl1(
  batch: TrainingBatch,
  features: tf.Tensor3D | null,
  embed: EmbedFn,
): PreparedTrainingInputs {
  const { batch: b, length: l } = checkTrainingBatch(batch);
  const t = features ? (features.shape[1] as number) : 0;
  const runs: { s: number; start: number; length: number }[] = [];
  for (const [s, ids] of batch.input_ids.entries()) {
    let run: { s: number; start: number; length: number } | null = null;
    for (let i = 0; i < l; i++) {
      if (row(ids, i) >= 0) {
        run = null;
        continue;
      }
      if (!run) {
        run = { s, start: i, length: 0 };
        runs.push(run);
      }
      run.length++;
    }
  }
  const n = features ? (features.shape[0] as number) : 0;
  if (runs.length !== n) {
    throw new OwletError(
      'IMAGE_COUNT_MISMATCH',
      `the batch has ${runs.length} image placeholder run(s) but ${n} image(s) were given`,
      { details: { slots: runs.length, images: n } },
    );
  }
  for (const r of runs) {
    if (r.length !== t) {
      throw new OwletError(
        'IMAGE_COUNT_MISMATCH',
        `sample ${r.s}: an image placeholder run at position ${r.start} has ${r.length} ids, the visual tokens are ${t} (features ${formatShape(features?.shape ?? [])})`,
      );
    }
  }
  // One embedding lookup for every text token of the batch; the pieces are slices of it.
  type Piece = { text: true; start: number; length: number } | { text: false; image: number };
  const allText: number[] = [];
  const plan: Piece[][] = [];
  let image = 0;
  for (let s = 0; s < b; s++) {
    const ids = row(batch.input_ids, s);
    const pieces: Piece[] = [];
    const text = (from: number, to: number) => {
      pieces.push({ text: true, start: allText.length, length: to - from });
      for (let i = from; i < to; i++) allText.push(row(ids, i));
    };
    let pos = 0;
    for (const r of runs.filter((x) => x.s === s)) {
      if (r.start > pos) text(pos, r.start);
      pieces.push({ text: false, image: image++ });
      pos = r.start + r.length;
    }
    if (pos < l) text(pos, l);
    plan.push(pieces);
  }
  const embeds = tf.tidy(() => {
    const table = allText.length > 0 ? embed(allText) : null; // [N_text, D]
    const rows = plan.map((pieces) => {
      const parts = pieces.map(
        (p) =>
          p.text
            ? (tf.slice(table as tf.Tensor2D, [p.start, 0], [p.length, -1]) as tf.Tensor2D)
            : (tf.squeeze(tf.slice(features as tf.Tensor3D, [p.image, 0, 0], [1, -1, -1]), [0]) as tf.Tensor2D), // [T, D]
      );
      return parts.length === 1 ? row(parts, 0) : (tf.concat(parts, 0) as tf.Tensor2D); // [L, D]
    });
    return tf.stack(rows) as tf.Tensor3D; // [B, L, D]
  });
  return {
    inputs_embeds: embeds,
    modality_indicators: batch.input_ids.map((r) => r.map(() => 0)),
    attention_mask: (batch.attention_mask ?? batch.input_ids.map((r) => r.map(() => 1))).map((r) => [...r]),
    labels: batch.labels.map((r) => [...r]),
  };
}

/** The images at `used` of a batch's `pixel_values` ([N, 3, S, S] → [slots, 3, S, S]); null for none. Call inside a tidy. */
export function usedPixels(pixelValues: tf.Tensor | null | undefined, used: readonly number[]): tf.Tensor | null {
  if (!pixelValues || used.length === 0) return null;
  const n = pixelValues.shape[0] as number;
  if (used.length === n && used.every((u, i) => u === i)) return pixelValues;
  return tf.gather(pixelValues, tf.tensor1d([...used], 'int32'));
}
