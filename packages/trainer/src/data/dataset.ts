/**
 * Datasets, seeded data order and the default causal-LM collator.
 *
 * The order of epoch e is a Fisher–Yates permutation drawn from a PRNG seeded with (seed, e), so
 * it is a pure function of the seed and the epoch: a resumed run only needs (epoch, position).
 */
import * as tf from '@tensorflow/tfjs-core';
import { IGNORE_INDEX, OwletError } from '@owlet/core';

import { TrainerErrorCode } from '../errors.js';

/** Random access to training samples. */
export interface Dataset<S = unknown> {
  readonly length: number;
  get(index: number): S | Promise<S>;
}

/** A dataset over samples already in memory. */
export function inMemoryDataset<S>(samples: readonly S[]): Dataset<S> {
  return { length: samples.length, get: (i) => samples[i] as S };
}

/** mulberry32: a small seeded PRNG in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit hash of integers (splitmix-style), for deriving seeds. */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** The sample order of one epoch. */
export function epochPermutation(n: number, seed: number, epoch: number): Int32Array {
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const rnd = mulberry32(mixSeed(seed, epoch));
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = order[i] as number;
    order[i] = order[j] as number;
    order[j] = t;
  }
  return order;
}

/** Where the data stream is: samples of `epoch` consumed so far. */
export interface DataPosition {
  epoch: number;
  index: number;
}

/** Batches in seeded order, resumable from a position. */
export class BatchSampler {
  private order: Int32Array;
  private _position: DataPosition;

  constructor(
    readonly size: number,
    readonly batchSize: number,
    readonly seed: number,
    readonly dropLast: boolean,
    start: DataPosition = { epoch: 0, index: 0 },
  ) {
    if (size < 1) throw new OwletError(TrainerErrorCode.INVALID_DATASET, 'the training dataset is empty');
    if (dropLast && size < batchSize) {
      throw new OwletError(
        TrainerErrorCode.INVALID_DATASET,
        `the dataset has ${size} samples, fewer than one batch of ${batchSize} (dataloader_drop_last)`,
      );
    }
    this._position = { ...start };
    this.order = epochPermutation(size, seed, start.epoch);
  }

  get position(): DataPosition {
    return { ...this._position };
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.size / this.batchSize) : Math.ceil(this.size / this.batchSize);
  }

  /** Indices of the next batch (moving to the next epoch at the end of one). */
  next(): number[] {
    let { epoch, index } = this._position;
    const left = this.size - index;
    if (left <= 0 || (this.dropLast && left < this.batchSize)) {
      epoch++;
      index = 0;
      this.order = epochPermutation(this.size, this.seed, epoch);
    }
    const end = Math.min(this.size, index + this.batchSize);
    const out = Array.from(this.order.subarray(index, end));
    this._position = { epoch, index: end };
    return out;
  }
}

/** One tokenized sample for a causal LM; `pixel_values` holds its images ([3, S, S] each). */
export interface CausalLmSample {
  input_ids: readonly number[];
  labels: readonly number[];
  pixel_values?: readonly (Float32Array | tf.Tensor)[] | null;
  /** Image side, for the zero image of a text-only sample in a batch with images. */
  image_size?: number;
}

export interface CausalLmBatch {
  input_ids: number[][];
  labels: number[][];
  attention_mask: number[][];
  /** [N, 3, S, S], owned by the batch (the trainer disposes it after the step). */
  pixel_values: tf.Tensor4D | null;
}

/**
 * The mPLUG-Owl2 training collator (`DataCollatorForSupervisedDataset`): right-pads input_ids with
 * `pad_token_id` (0 = unk) and labels with −100, attention_mask = input_ids ≠ pad, and stacks the
 * images; when some samples have images, a text-only sample contributes one zero image, as the
 * official dataset gives it.
 */
export function collateCausalLm(
  samples: readonly CausalLmSample[],
  options: { pad_token_id?: number } = {},
): CausalLmBatch {
  const pad = options.pad_token_id ?? 0;
  if (samples.length === 0) throw new OwletError(TrainerErrorCode.INVALID_DATASET, 'cannot collate an empty batch');
  const max = Math.max(...samples.map((s) => s.input_ids.length));
  const input_ids: number[][] = [];
  const labels: number[][] = [];
  const attention_mask: number[][] = [];
  for (const [i, s] of samples.entries()) {
    if (s.labels.length !== s.input_ids.length) {
      throw new OwletError(
        TrainerErrorCode.INVALID_DATASET,
        `sample ${i}: ${s.input_ids.length} input_ids but ${s.labels.length} labels`,
      );
    }
    const extra = max - s.input_ids.length;
    const ids = [...s.input_ids, ...new Array<number>(extra).fill(pad)];
    input_ids.push(ids);
    labels.push([...s.labels, ...new Array<number>(extra).fill(IGNORE_INDEX)]);
    attention_mask.push(ids.map((id) => (id !== pad ? 1 : 0)));
  }
  const withImages = samples.filter((s) => s.pixel_values && s.pixel_values.length > 0);
  if (withImages.length === 0) return { input_ids, labels, attention_mask, pixel_values: null };
  const first = withImages[0]?.pixel_values?.[0];
  const side =
    first instanceof tf.Tensor
      ? (first.shape[1] as number)
      : Math.round(Math.sqrt(((first as Float32Array).length ?? 0) / 3));
  const pixel_values = tf.tidy(() => {
    const images: tf.Tensor3D[] = [];
    for (const s of samples) {
      const pv = s.pixel_values ?? [];
      if (pv.length === 0) {
        images.push(tf.zeros([3, side, side]));
        continue;
      }
      for (const p of pv) {
        const t = p instanceof tf.Tensor ? p : tf.tensor3d(p, [3, side, side]);
        if (t.rank !== 3 || t.shape[0] !== 3 || t.shape[1] !== side || t.shape[2] !== side) {
          throw new OwletError(
            TrainerErrorCode.INVALID_DATASET,
            `images in a batch must all be [3, ${side}, ${side}], got [${t.shape.join(', ')}]`,
          );
        }
        images.push(t as tf.Tensor3D);
      }
    }
    return tf.stack(images) as tf.Tensor4D; // [N, 3, S, S]
  });
  return { input_ids, labels, attention_mask, pixel_values };
}
