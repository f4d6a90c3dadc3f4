// Mirrors MplugOwlVisualAbstractorModel — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
// (v1: mPLUG-Owl/mplug_owl/modeling_mplug_owl.py, where the queries are the top-level `query_tokens`).
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, Init, Linear, Module, OwletError, formatShape, type Parameter } from '@owlet/core';

import { abstractorImageTokens, type MplugOwlVisualAbstractorConfig } from './config.js';
import { MplugOwlVisualAbstractorEncoder } from './MplugOwlVisualAbstractorEncoder.js';

export interface MplugOwlVisualAbstractorForwardOptions {
  /**
   * The learnable queries [1 or N, Q, D]. Required when the abstractor does not own them (mPLUG-Owl
   * v1: pass the model's top-level `query_tokens`); not allowed when it does (mPLUG-Owl2 uses its
   * own `query_embeds`).
   */
  query_embeds?: tf.Tensor;
}

export interface MplugOwlVisualAbstractorOutput {
  /** `[visual_fc(queries); vit_eos]` [N, Q + 1, D_llm]: the visual tokens spliced into the LLM input. */
  last_hidden_state: tf.Tensor3D;
  /** The encoder output, the input of `visual_fc` [N, Q, D]. */
  queries_before_visual_fc: tf.Tensor3D;
}

/**
 * Matches the `q_pos_embed` / `k_pos_embed` buffer keys a checkpoint might carry (the released ones
 * do not): pass it to `loadStateDict(…, { ignore })`; the tables are computed instead.
 */
export const ABSTRACTOR_POSITION_BUFFER_KEYS = /(^|\.)crossattention\.attention\.[qk]_pos_embed$/;

/**
 * The visual abstractor: Q learnable queries attend to the vision tokens through
 * `num_hidden_layers` cross-attention layers, then `visual_fc` maps them to the LLM width and the
 * learned `vit_eos` token is appended: image tokens [N, K, D] → visual tokens [N, Q + 1, D_llm].
 *
 * Keys (relative to the abstractor root, `model.visual_abstractor.` in mPLUG-Owl2, `abstractor.` in
 * v1): `encoder.layers.{l}.crossattention.…`, `visual_fc.{weight,bias}`, `vit_eos` [1, 1, D_llm],
 * and for mPLUG-Owl2 `query_embeds` [1, Q, D].
 */
export class MplugOwlVisualAbstractorModel extends Module {
  readonly config: MplugOwlVisualAbstractorConfig;
  readonly encoder: MplugOwlVisualAbstractorEncoder;
  readonly visual_fc: Linear;
  /** The learnable queries [1, Q, D] (mPLUG-Owl2); null when the caller supplies them (v1). */
  readonly query_embeds: Parameter | null;
  readonly vit_eos: Parameter;

  constructor(config: MplugOwlVisualAbstractorConfig) {
    super();
    this.config = config;
    this.encoder = this.registerModule('encoder', new MplugOwlVisualAbstractorEncoder(config));
    this.visual_fc = this.registerModule('visual_fc', new Linear(config.hidden_size, config.language_hidden_size));
    this.query_embeds = config.owns_query_embeds
      ? this.registerParameter('query_embeds', [1, config.num_learnable_queries, config.hidden_size], {
          init: Init.normal(0.02),
        })
      : null;
    this.vit_eos = this.registerParameter('vit_eos', [1, 1, config.language_hidden_size], { init: Init.normal(0.02) });
  }

  /** Image tokens [N, K, D] (the vision model's `last_hidden_state`) → visual tokens [N, Q + 1, D_llm]. */
  forward(encoderHiddenStates: tf.Tensor, options: MplugOwlVisualAbstractorForwardOptions = {}): tf.Tensor3D {
    const queries = this.checkInputs(encoderHiddenStates, options);
    return this.scope(() =>
      this.visualTokens(
        this.encoder.forward(this.expandQueries(queries, encoderHiddenStates.shape[0] as number), encoderHiddenStates),
      ),
    );
  }

  /** Like `forward`, also returning the queries before `visual_fc`. The caller owns both tensors. */
  forwardWithQueries(
    encoderHiddenStates: tf.Tensor,
    options: MplugOwlVisualAbstractorForwardOptions = {},
  ): MplugOwlVisualAbstractorOutput {
    const queries = this.checkInputs(encoderHiddenStates, options);
    return this.scope(() => {
      const x = this.encoder.forward(
        this.expandQueries(queries, encoderHiddenStates.shape[0] as number),
        encoderHiddenStates,
      ) as tf.Tensor3D;
      return { last_hidden_state: this.visualTokens(x), queries_before_visual_fc: x };
    });
  }

  /** [N, Q, D] → `[visual_fc(x); vit_eos]` [N, Q + 1, D_llm] */
  private visualTokens(x: tf.Tensor): tf.Tensor3D {
    const n = x.shape[0] as number;
    const out = this.visual_fc.forward(x);
    const eos = tf.tile(this.vit_eos.value, [n, 1, 1]); // [1, 1, D_llm] -> [N, 1, D_llm]
    return tf.concat([out, eos], 1) as tf.Tensor3D; // [N, Q, D_llm] ++ [N, 1, D_llm] -> [N, Q + 1, D_llm]
  }

  /** [1 or N, Q, D] → [N, Q, D] */
  private expandQueries(queries: tf.Tensor, n: number): tf.Tensor {
    return queries.shape[0] === n ? queries : tf.tile(queries, [n, 1, 1]);
  }

  private checkInputs(image: tf.Tensor, options: MplugOwlVisualAbstractorForwardOptions): tf.Tensor {
    this.assertNotDisposed();
    const c = this.config;
    const name = this.path || 'visual abstractor';
    const k = abstractorImageTokens(c);
    if (
      image.rank !== 3 ||
      image.shape[2] !== c.encoder_hidden_size ||
      (k !== null && image.shape[1] !== k) ||
      image.shape[0] === 0
    ) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `${name}: expected image tokens [N, ${k ?? 'K'}, ${c.encoder_hidden_size}], got ${formatShape(image.shape)}`,
        { details: { expected: [null, k, c.encoder_hidden_size], actual: image.shape } },
      );
    }
    if (image.dtype !== 'float32') {
      throw new OwletError(ErrorCode.SHAPE_MISMATCH, `${name}: expected float32 image tokens, got ${image.dtype}`);
    }
    let queries: tf.Tensor;
    if (this.query_embeds) {
      if (options.query_embeds) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `${name}: this ${c.variant} abstractor owns its query_embeds; do not pass query_embeds to forward`,
        );
      }
      queries = this.query_embeds.value;
    } else {
      if (!options.query_embeds) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `${name}: this ${c.variant} abstractor has no query_embeds of its own; pass the model's query_tokens [1, ${c.num_learnable_queries}, ${c.hidden_size}] as options.query_embeds`,
        );
      }
      queries = options.query_embeds;
    }
    const n = image.shape[0] as number;
    const qs = queries.shape;
    if (
      queries.rank !== 3 ||
      (qs[0] !== 1 && qs[0] !== n) ||
      qs[1] !== c.num_learnable_queries ||
      qs[2] !== c.hidden_size ||
      queries.dtype !== 'float32'
    ) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `${name}: expected float32 query_embeds [1 or ${n}, ${c.num_learnable_queries}, ${c.hidden_size}], got ${queries.dtype} ${formatShape(qs)}`,
        { details: { expected: [n, c.num_learnable_queries, c.hidden_size], actual: qs } },
      );
    }
    return queries;
  }
}
