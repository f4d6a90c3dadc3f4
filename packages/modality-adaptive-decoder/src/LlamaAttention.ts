// Mirrors LlamaAttention — transformers 4.31 models/llama/modeling_llama.py, as patched by
// X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/modeling_llama2.py (modality-adaptive k_proj/v_proj)
import type * as tf from '@tensorflow/tfjs-core';
import { Linear, Module, applyRope, attentionOverSegments, mergeHeads, splitHeads, type RopeTables } from '@owlet/core';

import type { LlamaConfig } from './config.js';
import type { KVCache } from './KVCache.js';
import type { ModalityRouting } from './ModalityRouting.js';
import { MultiwayNetwork } from './MultiwayNetwork.js';

export interface LlamaLayerContext {
  /** Per-token modality of the current tokens. */
  routing: ModalityRouting;
  /** cos/sin tables [B, 1, L, head_dim] for the current tokens' position ids. */
  rope: RopeTables;
  /** Additive padding mask broadcastable to [B, H, L, past + L], or null. */
  mask: tf.Tensor | null;
  /** Cache to read past K/V from and append this step's K/V to. */
  cache?: KVCache | null;
  /** Index of this layer in the cache. */
  layerIdx: number;
}

/**
 * Shared q_proj / o_proj; k_proj / v_proj are per-modality `MultiwayNetwork`s when the
 * modality-adaptive module is on (mPLUG-Owl2), plain Linears otherwise (LLaMA, mPLUG-Owl v1).
 * RoPE is the HF rotate_half variant at arbitrary position ids; the cache stores post-RoPE K/V.
 */
export class LlamaAttention extends Module {
  readonly numHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  readonly q_proj: Linear;
  readonly k_proj: Linear | MultiwayNetwork<Linear>;
  readonly v_proj: Linear | MultiwayNetwork<Linear>;
  readonly o_proj: Linear;

  constructor(config: LlamaConfig) {
    super();
    const d = config.hidden_size;
    this.numHeads = config.num_attention_heads;
    this.numKeyValueHeads = config.num_key_value_heads;
    this.headDim = config.head_dim;
    const kvOut = this.numKeyValueHeads * this.headDim;
    const proj = () => new Linear(d, kvOut, { bias: false });
    this.q_proj = this.registerModule('q_proj', new Linear(d, this.numHeads * this.headDim, { bias: false }));
    this.k_proj = this.registerModule(
      'k_proj',
      config.multiway ? new MultiwayNetwork(proj, config.num_multiway) : proj(),
    );
    this.v_proj = this.registerModule(
      'v_proj',
      config.multiway ? new MultiwayNetwork(proj, config.num_multiway) : proj(),
    );
    this.o_proj = this.registerModule('o_proj', new Linear(this.numHeads * this.headDim, d, { bias: false }));
  }

  /** hidden [B, L, D] → [B, L, D] */
  forward(hidden: tf.Tensor, ctx: LlamaLayerContext): tf.Tensor {
    return this.scope(() => {
      const run = (m: Linear | MultiwayNetwork<Linear>) =>
        m instanceof MultiwayNetwork ? m.forward(hidden, ctx.routing) : m.forward(hidden);
      const heads = (x: tf.Tensor, n: number) => splitHeads(x, n)[0] as tf.Tensor; // [B, L, n·Dh] -> [B, n, L, Dh]
      const q = applyRope(heads(this.q_proj.forward(hidden), this.numHeads), ctx.rope);
      const k = applyRope(heads(run(this.k_proj), this.numKeyValueHeads), ctx.rope);
      const v = heads(run(this.v_proj), this.numKeyValueHeads);
      // Without a cache (or MHA with a single segment) this is the core `attention` op.
      if (ctx.cache) ctx.cache.append(ctx.layerIdx, k, v);
      const a = attentionOverSegments(q, ctx.cache ? ctx.cache.segments(ctx.layerIdx) : [{ k, v }], {
        causal: true,
        mask: ctx.mask,
      });
      const merged = mergeHeads(a); // [B, H, L, Dh] -> [B, L, H·Dh]
      return this.o_proj.forward(merged);
    });
  }
}
