/** Host-side normalisation and validation of the decoder's array inputs ([B][L] rows). */
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, OwletError } from '@owlet/core';

/** [B][L] rows, one row (batch 1), or a [B, L] tensor. */
export type IdsInput = readonly (readonly number[])[] | readonly number[] | Int32Array | tf.Tensor;

const shapeOf = (rows: readonly ArrayLike<number>[]) => `[${rows.length}, ${rows[0]?.length ?? 0}]`;

/** Rows of a [B, L] integer input; `name` is used in errors. */
export function toRows(input: IdsInput, name: string): number[][] {
  let rows: number[][];
  if (input instanceof tf.Tensor) {
    if (input.rank !== 2 && input.rank !== 1) {
      throw new OwletError(ErrorCode.SHAPE_MISMATCH, `${name}: expected [B, L], got [${input.shape.join(', ')}]`);
    }
    const a = input.arraySync() as number[] | number[][];
    rows = input.rank === 1 ? [a as number[]] : (a as number[][]);
  } else if (input.length > 0 && Array.isArray(input[0])) {
    rows = (input as readonly (readonly number[])[]).map((r) => Array.from(r));
  } else {
    rows = [Array.from(input as ArrayLike<number>)];
  }
  const l = rows[0]?.length ?? 0;
  if (rows.some((r) => r.length !== l)) {
    throw new OwletError(
      ErrorCode.SHAPE_MISMATCH,
      `${name}: rows differ in length (${rows.map((r) => r.length).join(', ')})`,
    );
  }
  return rows;
}

/** Token ids [B][L], validated against the vocabulary. */
export function toIdRows(input: IdsInput, vocab: number): number[][] {
  const rows = toRows(input, 'input_ids');
  rows.forEach((r, b) => {
    r.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) {
        const hint =
          id < 0 ? ' (image placeholders such as -200 must be replaced by image features: pass inputs_embeds)' : '';
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `input_ids: id ${id} at [${b}, ${t}] is outside the vocabulary [0, ${vocab})${hint}`,
          {
            details: { id, batch: b, position: t, vocab },
          },
        );
      }
    });
  });
  return rows;
}

/** Position ids [B][L]; defaults to past … past + L − 1 for every row. */
export function toPositionRows(
  input: IdsInput | null | undefined,
  batch: number,
  length: number,
  past: number,
): number[][] {
  if (input === null || input === undefined) {
    const row = Array.from({ length }, (_, i) => past + i);
    return Array.from({ length: batch }, () => row);
  }
  let rows = toRows(input, 'position_ids');
  const [only] = rows;
  if (only && rows.length === 1 && batch > 1) rows = Array.from({ length: batch }, () => only);
  if (rows.length !== batch || (rows[0]?.length ?? 0) !== length) {
    throw new OwletError(
      ErrorCode.SHAPE_MISMATCH,
      `position_ids: expected [${batch}, ${length}], got ${shapeOf(rows)}`,
    );
  }
  for (const r of rows) {
    for (const p of r) {
      if (!Number.isSafeInteger(p) || p < 0) {
        throw new OwletError(ErrorCode.INVALID_ARGUMENT, `position_ids: ${p} is not a non-negative integer`);
      }
    }
  }
  return rows;
}

/**
 * The 0/1 attention mask over past + current keys, [B][past + L], as an additive float mask
 * [B, 1, 1, past + L] (host data), or null when every key is attended.
 */
export function toPaddingMask(
  input: IdsInput | null | undefined,
  batch: number,
  keyLength: number,
  maskValue: number,
): { data: Float32Array; shape: [number, number, number, number] } | null {
  if (input === null || input === undefined) return null;
  const rows = toRows(input, 'attention_mask');
  if (rows.length !== batch || (rows[0]?.length ?? 0) !== keyLength) {
    throw new OwletError(
      ErrorCode.SHAPE_MISMATCH,
      `attention_mask: expected [${batch}, ${keyLength}] (past + current positions), got ${shapeOf(rows)}`,
    );
  }
  const data = new Float32Array(batch * keyLength);
  let any = false;
  rows.forEach((r, b) => {
    r.forEach((m, j) => {
      if (m !== 0 && m !== 1)
        throw new OwletError(ErrorCode.INVALID_ARGUMENT, `attention_mask: value ${m} at [${b}, ${j}] is not 0 or 1`);
      if (m === 0) {
        data[b * keyLength + j] = maskValue;
        any = true;
      }
    });
  });
  return any ? { data, shape: [batch, 1, 1, keyLength] } : null;
}
