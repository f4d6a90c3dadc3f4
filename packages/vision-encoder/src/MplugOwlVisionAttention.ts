// Mirrors MplugOwlVisionAttention — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
import type * as tf from '@tensorflow/tfjs-core';
import { Init, Linear, Module, attention, mergeHeads, splitHeads } from '@owlet/core';

import type { MplugOwlVisionConfig } from './config.js';

/**
 * Full (unmasked, non-causal) multi-head self-attention with one fused projection.
 *
 * `query_key_value` [3D, D] uses the Megatron head-interleaved layout: output feature
 * `f = h·3·Dh + t·Dh + d` (h head, t = 0 q / 1 k / 2 v, d < Dh), i.e. `[h][q|k|v][d]`, NOT stacked
 * [Q; K; V] blocks; the bias has the same layout. Scores are scaled by Dh^-½.
 *
 * Keys: `query_key_value.{weight [3D, D], bias [3D]}`, `dense.{weight [D, D], bias [D]}`.
 */
export class MplugOwlVisionAttention extends Module {
  readonly config: MplugOwlVisionConfig;
  readonly numHeads: number;
  readonly headDim: number;
  readonly query_key_value: Linear;
  readonly dense: Linear;

  constructor(config: MplugOwlVisionConfig) {
    super();
    this.config = config;
    const d = config.hidden_size;
    this.numHeads = config.num_attention_heads;
    this.headDim = d / this.numHeads;
    const init = Init.normal(config.initializer_range);
    this.query_key_value = this.registerModule('query_key_value', new Linear(d, 3 * d, { init }));
    this.dense = this.registerModule('dense', new Linear(d, d, { init }));
  }

  /** x [B, L, D] → [B, L, D] */
  forward(x: tf.Tensor): tf.Tensor3D {
    return this.scope(() => {
      const h = this.numHeads;
      const dh = this.headDim;
      const qkv = this.query_key_value.forward(x); // [B, L, 3D]
      // [B, L, H, 3·Dh] -> [B, H, L, 3·Dh] -> q, k, v each [B, H, L, Dh]
      const [q, k, v] = splitHeads(qkv, h, 3) as [tf.Tensor, tf.Tensor, tf.Tensor];
      const ctx = attention(q, k, v, { scale: dh ** -0.5 }); // [B, H, L, Dh]
      const merged = mergeHeads(ctx); // [B, H, L, Dh] -> [B, L, H, Dh] -> [B, L, D]
      return this.dense.forward(merged) as tf.Tensor3D;
    });
  }
}
