import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, OwletError, gatherRows } from '@owlet/core';

/** How mixed sequences are routed (see the package README for the measurements behind the default). */
export type MultiwayStrategy =
  /** Gather the tokens of each modality, run each copy on its tokens only, put the rows back. */
  | 'gather'
  /** Run every copy on every token, then pick per token with `tf.where`. */
  | 'mask';

export const DEFAULT_MULTIWAY_STRATEGY: MultiwayStrategy = 'gather';

/** Modality indicators as given by callers: [B][L] rows, one row, or a flat array of B·L values. */
export type ModalityIndicatorsInput = readonly (readonly number[])[] | readonly number[] | Int32Array | tf.Tensor;

/**
 * Per-token modality routing for the modality-adaptive module: which copy (`multiway.0` text,
 * `multiway.1` image) each token of a [B, L] sequence uses.
 *
 * The indicators live on the host (they are known when the sequence is assembled), so whether every
 * token shares one modality — every decode step, every text-only prompt — is known without a device
 * read, and `MultiwayNetwork` then runs only that copy. For mixed sequences the routing tensors are
 * built once per model forward and shared by every layer.
 */
export class ModalityRouting {
  readonly batch: number;
  readonly length: number;
  readonly numWays: number;
  /** Host copy, row-major [B·L]. */
  readonly indicators: Int32Array;
  /** The single modality of every token, or null for a mixed sequence. */
  readonly uniform: number | null;
  readonly strategy: MultiwayStrategy;
  /** 'gather': flat row indices of each modality's tokens, and the inverse permutation. */
  private gatherIdx: tf.Tensor1D[] | null = null;
  private inverseIdx: tf.Tensor1D | null = null;
  /** 'mask': [B, L, 1] boolean per way (true where the token uses that copy). */
  private masks: tf.Tensor[] | null = null;

  private constructor(
    indicators: Int32Array,
    batch: number,
    length: number,
    numWays: number,
    strategy: MultiwayStrategy,
  ) {
    this.indicators = indicators;
    this.batch = batch;
    this.length = length;
    this.numWays = numWays;
    this.strategy = strategy;
    let u: number | null = indicators.length > 0 ? (indicators[0] as number) : 0;
    for (let i = 1; i < indicators.length; i++) {
      if (indicators[i] !== u) {
        u = null;
        break;
      }
    }
    this.uniform = u;
  }

  /**
   * Validates indicators for a [batch, length] sequence (values in 0 … numWays−1). Creates the
   * routing tensors of a mixed sequence in the current tidy scope; they live as long as it does.
   */
  static create(
    input: ModalityIndicatorsInput | null | undefined,
    batch: number,
    length: number,
    numWays: number,
    strategy: MultiwayStrategy = DEFAULT_MULTIWAY_STRATEGY,
  ): ModalityRouting {
    const flat = ModalityRouting.toHost(input, batch, length, numWays);
    const r = new ModalityRouting(flat, batch, length, numWays, strategy);
    if (r.uniform === null) r.buildTensors();
    return r;
  }

  /** Reads and validates indicators without creating tensors (all zeros when absent). */
  static toHost(
    input: ModalityIndicatorsInput | null | undefined,
    batch: number,
    length: number,
    numWays: number,
  ): Int32Array {
    const n = batch * length;
    if (input === null || input === undefined) return new Int32Array(n);
    let flat: ArrayLike<number>;
    let shape: string;
    if (input instanceof tf.Tensor) {
      shape = `[${input.shape.join(', ')}]`;
      flat = input.dataSync() as ArrayLike<number>;
    } else if (input.length > 0 && Array.isArray(input[0])) {
      const rows = input as readonly (readonly number[])[];
      shape = `[${rows.length}, ${rows[0]?.length ?? 0}]`;
      if (rows.some((r) => r.length !== length) || rows.length !== batch) {
        throw new OwletError(
          ErrorCode.SHAPE_MISMATCH,
          `modality_indicators: expected [${batch}, ${length}], got ${shape}`,
        );
      }
      flat = rows.flat();
    } else {
      flat = input as ArrayLike<number>;
      shape = `[${flat.length}]`;
    }
    if (flat.length !== n) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `modality_indicators: expected [${batch}, ${length}] (${n} values), got ${shape}`,
        {
          details: { expected: [batch, length], actual: shape },
        },
      );
    }
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const m = Number(flat[i]);
      if (!Number.isInteger(m) || m < 0 || m >= numWays) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `modality_indicators: value ${m} at position ${i} is not a modality of this model (expected 0 … ${numWays - 1}${numWays === 1 ? ': the model has no modality-adaptive module' : ''})`,
          { details: { position: i, value: m, numWays } },
        );
      }
      out[i] = m;
    }
    return out;
  }

  private buildTensors(): void {
    if (this.strategy === 'gather') {
      const groups: number[][] = Array.from({ length: this.numWays }, () => []);
      for (const [i, m] of this.indicators.entries()) groups[m]?.push(i); // every m is in 0 … numWays−1 (toHost checked)
      const inverse = new Int32Array(this.indicators.length);
      let offset = 0;
      for (const g of groups) {
        for (const [j, row] of g.entries()) inverse[row] = offset + j;
        offset += g.length;
      }
      this.gatherIdx = groups.map((g) => tf.tensor1d(Int32Array.from(g), 'int32'));
      this.inverseIdx = tf.tensor1d(inverse, 'int32');
    } else {
      this.masks = [];
      for (let m = 0; m < this.numWays; m++) {
        const data = new Uint8Array(this.indicators.length);
        for (let i = 0; i < data.length; i++) data[i] = this.indicators[i] === m ? 1 : 0;
        this.masks.push(tf.tensor3d(data, [this.batch, this.length, 1], 'bool'));
      }
    }
  }

  /** Whether copy `m` has any token. */
  uses(m: number): boolean {
    if (this.uniform !== null) return this.uniform === m;
    return this.indicators.includes(m);
  }

  /**
   * out[b, t] = ways[M[b, t]](x[b, t]) for x [B, L, …, Din] → [B, L, …, Dout].
   * Only the copies that some token uses are run.
   */
  route(x: tf.Tensor, ways: readonly ((t: tf.Tensor) => tf.Tensor)[]): tf.Tensor {
    if (x.shape[0] !== this.batch || x.shape[1] !== this.length) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `multiway: input [${x.shape.join(', ')}] does not match modality indicators [${this.batch}, ${this.length}]`,
      );
    }
    if (ways.length !== this.numWays) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `multiway: ${ways.length} copies, routing built for ${this.numWays}`,
      );
    }
    const only = this.uniform === null ? undefined : ways[this.uniform];
    if (only) return only(x);
    const { gatherIdx, inverseIdx, masks } = this;
    return tf.tidy(() => {
      if (gatherIdx && inverseIdx) {
        const rest = x.shape.slice(2);
        const flat = tf.reshape(x, [this.batch * this.length, ...rest]); // [B, L, …] -> [B·L, …]
        const outs: tf.Tensor[] = [];
        ways.forEach((f, m) => {
          const idx = gatherIdx[m];
          if (!idx || idx.shape[0] === 0) return;
          outs.push(f(gatherRows(flat, idx))); // [n_m, …] rows of modality m
        });
        const [first] = outs;
        // gatherRows: a gradient that works on every backend (tf.gather's needs UnsortedSegmentSum)
        const y = gatherRows(outs.length === 1 && first ? first : tf.concat(outs, 0), inverseIdx); // back to token order
        return tf.reshape(y, [this.batch, this.length, ...y.shape.slice(1)]); // [B·L, …] -> [B, L, …]
      }
      let y: tf.Tensor | null = null;
      for (const [m, f] of ways.entries()) {
        const mask = masks?.[m];
        if (!mask || !this.uses(m)) continue;
        const ym = f(x);
        y = y === null ? ym : tf.where(mask, ym, y);
      }
      if (y === null) throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'multiway: no token uses any copy');
      return y;
    });
  }
}
