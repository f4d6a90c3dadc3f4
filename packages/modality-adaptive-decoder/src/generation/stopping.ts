/** Stopping rules of a generation (transformers `generation/stopping_criteria.py` semantics). */
import { ErrorCode, OwletError } from '@owlet/core';

export type FinishReason = 'eos' | 'stop_string' | 'length' | 'abort';

export interface StopCheck {
  reason: FinishReason;
  /** The stop string found, for `stop_string`. */
  stop_string?: string;
}

export interface StoppingOptions {
  maxNewTokens: number;
  eosTokenIds: readonly number[];
  stopStrings: readonly string[];
  /** Turns generated ids into text (the tokenizer lives in another package). Needed for stop strings. */
  decode?: ((ids: number[]) => string) | undefined;
}

/** Checks, after each new token, whether generation is over. */
export class StoppingCriteria {
  private readonly eos: Set<number>;

  constructor(private readonly options: StoppingOptions) {
    if (!Number.isSafeInteger(options.maxNewTokens) || options.maxNewTokens < 1) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `max_new_tokens must be a positive integer, got ${options.maxNewTokens}`,
      );
    }
    for (const s of options.stopStrings) {
      if (typeof s !== 'string' || s.length === 0) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `stop_strings must be non-empty strings, got ${JSON.stringify(s)}`,
        );
      }
    }
    if (options.stopStrings.length > 0 && typeof options.decode !== 'function') {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        'stop_strings need a decode function ((ids) => string) to turn generated ids into text',
      );
    }
    this.eos = new Set(options.eosTokenIds);
  }

  /** `generated`: every new token so far (the last one just produced). */
  check(generated: readonly number[]): StopCheck | null {
    const last = generated[generated.length - 1];
    if (last !== undefined && this.eos.has(last)) return { reason: 'eos' };
    const { decode } = this.options;
    if (this.options.stopStrings.length > 0 && decode) {
      const text = decode([...generated]);
      for (const s of this.options.stopStrings) if (text.includes(s)) return { reason: 'stop_string', stop_string: s };
    }
    if (generated.length >= this.options.maxNewTokens) return { reason: 'length' };
    return null;
  }
}
