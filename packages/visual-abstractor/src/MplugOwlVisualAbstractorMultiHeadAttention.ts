// Mirrors MplugOwlVisualAbstractorMultiHeadAttention — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
// (v1: mPLUG-Owl/mplug_owl/modeling_mplug_owl.py, the same without position embeddings).
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, Linear, Module, OwletError, attention, formatShape, mergeHeads, splitHeads } from '@owlet/core';

import type { MplugOwlVisualAbstractorConfig } from './config.js';
import { abstractorImageTokens } from './config.js';
import { sincos1d, sincos2d } from './sincos.js';

/** The float32 tables per (frozen) config, so the layers of one model compute them once. */
const tableCache = new WeakMap<MplugOwlVisualAbstractorConfig, { q: Float32Array; k: Float32Array }>();

function positionTables(config: MplugOwlVisualAbstractorConfig): { q: Float32Array; k: Float32Array } {
  let t = tableCache.get(config);
  if (!t) {
    const positions = Array.from({ length: config.num_learnable_queries }, (_, i) => i);
    t = {
      q: sincos1d(config.hidden_size, positions),
      k: sincos2d(config.hidden_size, config.grid_size ?? 0, config.use_cls_token),
    };
    tableCache.set(config, t);
  }
  return t;
}

/**
 * Cross attention of the queries over `[norm1(queries); normk(image)]`. For mPLUG-Owl2 the fixed
 * sin-cos tables are added to the query input (`q_pos_embed`) and to the key input
 * (`[q_pos_embed; k_pos_embed]`), never to the values. The tables are buffers: computed at
 * first use in float32, owned by this module, not parameters, freed by `dispose()`.
 * There is no mask (the reference's additive mask is identically zero).
 */
export class MplugOwlVisualAbstractorMultiHeadAttention extends Module {
  readonly config: MplugOwlVisualAbstractorConfig;
  readonly numHeads: number;
  readonly headDim: number;
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  /** [Q, D] buffer added to the query input (null without position embeddings). */
  private qPos: tf.Tensor2D | null = null;
  /** [Q + K, D] buffer added to the key input: `[q_pos_embed; k_pos_embed]`. */
  private qkPos: tf.Tensor2D | null = null;

  constructor(config: MplugOwlVisualAbstractorConfig) {
    super();
    this.config = config;
    this.numHeads = config.num_attention_heads;
    this.headDim = config.hidden_size / config.num_attention_heads;
    this.query = this.registerModule('query', new Linear(config.hidden_size, config.hidden_size));
    this.key = this.registerModule('key', new Linear(config.encoder_hidden_size, config.hidden_size));
    this.value = this.registerModule('value', new Linear(config.encoder_hidden_size, config.hidden_size));
    // Computed on first use, so a shape-only build of the released model allocates nothing.
    this.tablesPending = config.use_sincos_pos_embed;
  }

  private tablesPending: boolean;

  private ensureTables(): void {
    if (!this.tablesPending) return;
    this.tablesPending = false;
    const t = positionTables(this.config);
    this.setPositionEmbeddings(t.q, t.k);
  }

  /** Number of image tokens the key table covers (null: any, no position embeddings). */
  get numImageTokens(): number | null {
    this.ensureTables();
    return this.qkPos ? this.qkPos.shape[0] - this.config.num_learnable_queries : null;
  }

  /** A copy of the `q_pos_embed` buffer [Q, D] (caller owns it), or null without position embeddings. */
  qPosEmbed(): tf.Tensor2D | null {
    this.assertNotDisposed();
    this.ensureTables();
    return this.qPos ? tf.clone(this.qPos) : null;
  }

  /** A copy of the `k_pos_embed` buffer [K, D] (caller owns it), or null without position embeddings. */
  kPosEmbed(): tf.Tensor2D | null {
    this.assertNotDisposed();
    this.ensureTables();
    if (!this.qkPos) return null;
    const q = this.config.num_learnable_queries;
    return tf.slice(this.qkPos, [q, 0], [this.qkPos.shape[0] - q, this.config.hidden_size]);
  }

  /**
   * Replaces the position buffers, e.g. with `q_pos_embed` / `k_pos_embed` values found in a
   * checkpoint. `qPos` is [Q, D] and `kPos` [K, D] (flat arrays are read in that layout), with K the
   * configured image token count. The tensors given are copied; the caller keeps them.
   */
  setPositionEmbeddings(qPos: tf.Tensor | Float32Array, kPos: tf.Tensor | Float32Array): void {
    this.assertNotDisposed();
    this.tablesPending = false;
    if (!this.config.use_sincos_pos_embed) {
      throw new OwletError(
        ErrorCode.INVALID_ARGUMENT,
        `${this.path || 'abstractor attention'}: this ${this.config.variant} abstractor has no position embeddings`,
      );
    }
    const d = this.config.hidden_size;
    const q = this.config.num_learnable_queries;
    const k = abstractorImageTokens(this.config) ?? 0;
    const check = (t: tf.Tensor | Float32Array, rows: number, name: string): void => {
      const shape = t instanceof Float32Array ? [t.length] : t.shape;
      const ok =
        t instanceof Float32Array ? t.length === rows * d : shape.length === 2 && shape[0] === rows && shape[1] === d;
      if (!ok) {
        throw new OwletError(
          ErrorCode.SHAPE_MISMATCH,
          `${name}: expected [${rows}, ${d}]${t instanceof Float32Array ? ` (${rows * d} values)` : ''}, got ${formatShape(shape)} for ${this.path ? `${this.path}.` : ''}${name}`,
          { details: { expected: [rows, d], actual: shape } },
        );
      }
    };
    check(qPos, q, 'q_pos_embed');
    check(kPos, k, 'k_pos_embed');
    const [newQ, newQK] = tf.tidy(() => {
      const qt =
        qPos instanceof Float32Array ? tf.tensor2d(qPos, [q, d]) : tf.cast(tf.reshape(qPos, [q, d]), 'float32');
      const kt =
        kPos instanceof Float32Array ? tf.tensor2d(kPos, [k, d]) : tf.cast(tf.reshape(kPos, [k, d]), 'float32');
      return [tf.clone(qt) as tf.Tensor2D, tf.concat([qt, kt], 0) as tf.Tensor2D];
    });
    this.qPos?.dispose();
    this.qkPos?.dispose();
    // Owned by this module: keep them out of any enclosing tidy scope (forward may run inside one).
    this.qPos = tf.keep(newQ);
    this.qkPos = tf.keep(newQK);
  }

  /**
   * hiddenStates: normalised queries [N, Q, D]; encoderHiddenStates: `[norm1(queries); normk(image)]`
   * [N, Q + K, D]. Returns the attention context [N, Q, D] (before `out_proj`).
   */
  forward(hiddenStates: tf.Tensor, encoderHiddenStates: tf.Tensor): tf.Tensor {
    this.assertNotDisposed();
    this.ensureTables();
    const d = this.config.hidden_size;
    if (
      hiddenStates.rank !== 3 ||
      encoderHiddenStates.rank !== 3 ||
      hiddenStates.shape[0] !== encoderHiddenStates.shape[0]
    ) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `${this.path || 'abstractor attention'}: expected queries [N, Q, ${d}] and keys/values [N, Q + K, ${this.config.encoder_hidden_size}], got ${formatShape(hiddenStates.shape)} and ${formatShape(encoderHiddenStates.shape)}`,
      );
    }
    const lq = hiddenStates.shape[1] as number;
    const lk = encoderHiddenStates.shape[1] as number;
    if (this.qPos && this.qkPos && (lq !== this.qPos.shape[0] || lk !== this.qkPos.shape[0])) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `${this.path || 'abstractor attention'}: position tables are for ${this.qPos.shape[0]} queries and ${this.qkPos.shape[0]} keys/values, got ${lq} queries and ${lk} keys/values`,
        { details: { expected: [this.qPos.shape[0], this.qkPos.shape[0]], actual: [lq, lk] } },
      );
    }
    const h = this.numHeads;
    return this.scope(() => {
      const qIn = this.qPos ? tf.add(hiddenStates, this.qPos) : hiddenStates;
      const kIn = this.qkPos ? tf.add(encoderHiddenStates, this.qkPos) : encoderHiddenStates;
      const split = (x: tf.Tensor) => splitHeads(x, h)[0] as tf.Tensor; // [N, L, D] -> [N, H, L, Dh]
      const q = split(this.query.forward(qIn));
      const k = split(this.key.forward(kIn));
      const v = split(this.value.forward(encoderHiddenStates)); // no position embedding on values
      const ctx = attention(q, k, v); // [N, H, Q, Dh]
      return mergeHeads(ctx); // [N, H, Q, Dh] -> [N, Q, D]
    });
  }

  protected override disposeOwn(): void {
    this.qPos?.dispose();
    this.qkPos?.dispose();
    this.qPos = null;
    this.qkPos = null;
  }
}
