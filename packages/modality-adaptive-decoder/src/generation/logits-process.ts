/**
 * Logits processors and warpers with the semantics of transformers 4.31
 * (`generation/logits_process.py`): each transforms one row of scores in place, given the token ids
 * seen so far. Scores are float64 on the host.
 */
import { ErrorCode, OwletError } from '@owlet/core';

export interface LogitsProcessor {
  /** Transforms `scores` (one vocabulary row) in place. `ids` are the prompt ids plus the generated ones. */
  process(ids: readonly number[], scores: Float64Array): void;
}

function invalid(name: string, value: unknown, expected: string): never {
  throw new OwletError(ErrorCode.INVALID_ARGUMENT, `${name} must be ${expected}, got ${String(value)}`, {
    details: { name, value },
  });
}

/** Divides positive scores of already-seen tokens by `penalty` and multiplies negative ones (CTRL). */
export class RepetitionPenaltyLogitsProcessor implements LogitsProcessor {
  constructor(readonly penalty: number) {
    if (typeof penalty !== 'number' || !Number.isFinite(penalty) || penalty <= 0)
      invalid('repetition_penalty', penalty, 'a finite number > 0');
  }

  process(ids: readonly number[], scores: Float64Array): void {
    for (const id of new Set(ids)) {
      if (id < 0 || id >= scores.length) continue;
      const s = scores[id] as number;
      scores[id] = s < 0 ? s * this.penalty : s / this.penalty;
    }
  }
}

/** Forbids the EOS ids until `minNewTokens` tokens have been generated. */
export class MinNewTokensLengthLogitsProcessor implements LogitsProcessor {
  constructor(
    readonly promptLength: number,
    readonly minNewTokens: number,
    readonly eosTokenIds: readonly number[],
  ) {
    if (!Number.isSafeInteger(minNewTokens) || minNewTokens < 0)
      invalid('min_new_tokens', minNewTokens, 'a non-negative integer');
  }

  process(ids: readonly number[], scores: Float64Array): void {
    if (ids.length - this.promptLength >= this.minNewTokens) return;
    for (const e of this.eosTokenIds) if (e >= 0 && e < scores.length) scores[e] = -Infinity;
  }
}

/** Divides the scores by `temperature` (transformers' `TemperatureLogitsWarper`; sampling only). */
export class TemperatureLogitsWarper implements LogitsProcessor {
  constructor(readonly temperature: number) {
    if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
      invalid('temperature', temperature, 'a finite number > 0');
    }
  }

  process(_ids: readonly number[], scores: Float64Array): void {
    for (let i = 0; i < scores.length; i++) scores[i] = (scores[i] as number) / this.temperature;
  }
}

/** Keeps the `topK` highest scores (and every score tied with the k-th); the rest become −∞. */
export class TopKLogitsWarper implements LogitsProcessor {
  constructor(
    readonly topK: number,
    readonly minTokensToKeep = 1,
  ) {
    if (!Number.isSafeInteger(topK) || topK < 1) invalid('top_k', topK, 'a positive integer');
  }

  process(_ids: readonly number[], scores: Float64Array): void {
    const k = Math.min(Math.max(this.topK, this.minTokensToKeep), scores.length);
    if (k >= scores.length) return;
    const kth = Float64Array.from(scores).sort((a, b) => b - a)[k - 1] as number;
    for (let i = 0; i < scores.length; i++) if ((scores[i] as number) < kth) scores[i] = -Infinity;
  }
}

/**
 * Nucleus filtering: sorts ascending, removes the tokens whose cumulative probability is ≤ 1 − top_p
 * (always keeping the `minTokensToKeep` most likely).
 */
export class TopPLogitsWarper implements LogitsProcessor {
  constructor(
    readonly topP: number,
    readonly minTokensToKeep = 1,
  ) {
    if (typeof topP !== 'number' || !Number.isFinite(topP) || topP <= 0 || topP > 1)
      invalid('top_p', topP, 'a number in (0, 1]');
  }

  process(_ids: readonly number[], scores: Float64Array): void {
    const n = scores.length;
    // Stable ascending order (ties keep index order, as torch.sort's stable path).
    const order = Array.from({ length: n }, (_, i) => i).sort(
      (a, b) => (scores[a] as number) - (scores[b] as number) || a - b,
    );
    const probs = softmax64(scores);
    let cum = 0;
    const cutoff = 1 - this.topP;
    for (let r = 0; r < n - this.minTokensToKeep; r++) {
      const i = order[r] as number;
      cum += probs[i] as number;
      if (cum <= cutoff) scores[i] = -Infinity;
      else break;
    }
  }
}

/** Applies processors in order. */
export class LogitsProcessorList implements LogitsProcessor {
  readonly processors: LogitsProcessor[];

  constructor(processors: Iterable<LogitsProcessor> = []) {
    this.processors = [...processors];
  }

  push(p: LogitsProcessor): void {
    this.processors.push(p);
  }

  process(ids: readonly number[], scores: Float64Array): void {
    for (const p of this.processors) p.process(ids, scores);
  }
}

/** Float64 softmax of a row (−∞ gives probability 0). */
export function softmax64(scores: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < scores.length; i++) m = Math.max(m, scores[i] as number);
  const out = new Float64Array(scores.length);
  if (m === -Infinity) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'every token was filtered out (all scores are -Infinity)');
  }
  let z = 0;
  for (let i = 0; i < scores.length; i++) {
    const e = Math.exp((scores[i] as number) - m);
    out[i] = e;
    z += e;
  }
  for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) / z;
  return out;
}

/** Index of the largest score (the first one on ties, as torch.argmax). NaN scores are an error. */
export function argmax(scores: ArrayLike<number>): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i] as number;
    if (Number.isNaN(v)) throw new OwletError(ErrorCode.INVALID_ARGUMENT, `logits contain NaN at index ${i}`);
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** Draws an index from softmax(scores) with one uniform draw u ∈ [0, 1) (inverse CDF). */
export function sampleFromScores(scores: ArrayLike<number>, u: number): number {
  const p = softmax64(scores);
  let cum = 0;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    const pi = p[i] as number;
    if (pi <= 0) continue;
    last = i;
    cum += pi;
    if (u < cum) return i;
  }
  return last; // rounding: u beyond the float64 total
}
