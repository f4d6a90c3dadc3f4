// Mirrors MplugOwlVisionModel — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/visual_encoder.py
// (v1: mPLUG-Owl/mplug_owl/modeling_mplug_owl.py, same structure and keys).
import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, LayerNorm, Module, OwletError, formatShape } from '@owlet/core';

import { mplugOwlVisionDims, type MplugOwlVisionConfig, type MplugOwlVisionDims } from './config.js';
import { MplugOwlVisionEmbeddings, PATCH_EMBED_IN_CHANNELS } from './MplugOwlVisionEmbeddings.js';
import { MplugOwlVisionEncoder } from './MplugOwlVisionEncoder.js';

export interface MplugOwlVisionModelOptions {
  /** Also return the embeddings output (`pre_layernorm` output, the encoder input). */
  output_embeddings?: boolean;
  /** Also return the encoder's hidden states (HF `output_hidden_states`). */
  output_hidden_states?: boolean;
}

export interface MplugOwlVisionModelOutput {
  /** `post_layernorm` applied to every token [N, 1 + P, D] (v2: [N, 1025, 1024]). */
  last_hidden_state: tf.Tensor3D;
  /** With `output_embeddings`: `embeddings(pixel_values)` [N, 1 + P, D]. */
  embeddings?: tf.Tensor3D;
  /**
   * With `output_hidden_states`: num_hidden_layers + 1 tensors [N, 1 + P, D] — the embeddings
   * output, then each layer's output (the last one before `post_layernorm`), as in HF.
   */
  hidden_states?: tf.Tensor3D[];
}

/**
 * The mPLUG-Owl ViT-L/14: pixels [N, 3, S, S] → `last_hidden_state` [N, 1 + P, D]. All 1 + P
 * tokens (CLS included) go to the visual abstractor; the reference's pooled output is not computed.
 *
 * Keys, relative to this module (registered as `model.vision_model` in mPLUG-Owl2 and `vision_model`
 * in v1): `embeddings.{cls_token, patch_embed.weight, position_embedding, pre_layernorm.*}`,
 * `encoder.layers.{j}.{input_layernorm, self_attn.query_key_value, self_attn.dense,
 * post_attention_layernorm, mlp.fc1, mlp.fc2}.{weight,bias}`, `post_layernorm.{weight,bias}`.
 */
export class MplugOwlVisionModel extends Module {
  readonly config: MplugOwlVisionConfig;
  readonly dims: MplugOwlVisionDims;
  readonly embeddings: MplugOwlVisionEmbeddings;
  readonly encoder: MplugOwlVisionEncoder;
  readonly post_layernorm: LayerNorm | null;

  constructor(config: MplugOwlVisionConfig) {
    super();
    this.config = config;
    this.dims = mplugOwlVisionDims(config);
    this.embeddings = this.registerModule('embeddings', new MplugOwlVisionEmbeddings(config));
    this.encoder = this.registerModule('encoder', new MplugOwlVisionEncoder(config));
    this.post_layernorm = config.use_post_layernorm
      ? this.registerModule('post_layernorm', new LayerNorm(config.hidden_size, config.layer_norm_eps))
      : null;
  }

  /** pixel_values [N, 3, S, S] float32 → { last_hidden_state [N, 1 + P, D], embeddings?, hidden_states? } */
  forward(pixelValues: tf.Tensor, options: MplugOwlVisionModelOptions = {}): MplugOwlVisionModelOutput {
    this.checkPixels(pixelValues);
    return this.scope(() => {
      const emb = this.embeddings.forward(pixelValues); // [N, 1 + P, D]
      const enc = this.encoder.forward(emb, { output_hidden_states: options.output_hidden_states === true });
      // post_layernorm runs on ALL tokens (HF CLIP would normalise the pooled CLS token only).
      const last = this.post_layernorm
        ? (this.post_layernorm.forward(enc.last_hidden_state) as tf.Tensor3D)
        : enc.last_hidden_state;
      const out: MplugOwlVisionModelOutput = { last_hidden_state: last };
      if (options.output_embeddings) out.embeddings = emb;
      if (enc.hidden_states) out.hidden_states = enc.hidden_states;
      return out as { last_hidden_state: tf.Tensor3D; embeddings?: tf.Tensor3D; hidden_states?: tf.Tensor3D[] };
    });
  }

  private checkPixels(x: tf.Tensor): void {
    this.assertNotDisposed();
    const s = this.config.image_size;
    const expected = `[N, ${PATCH_EMBED_IN_CHANNELS}, ${s}, ${s}]`;
    if (!(x instanceof tf.Tensor)) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, `vision model: pixel_values must be a tf.Tensor ${expected}`);
    }
    if (x.dtype !== 'float32') {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `vision model: pixel_values must be float32 (normalised pixels), got ${x.dtype}`,
        { details: { expected: 'float32', actual: x.dtype } },
      );
    }
    const ok =
      x.rank === 4 &&
      (x.shape[0] as number) >= 1 &&
      x.shape[1] === PATCH_EMBED_IN_CHANNELS &&
      x.shape[2] === s &&
      x.shape[3] === s;
    if (!ok) {
      throw new OwletError(
        ErrorCode.SHAPE_MISMATCH,
        `vision model: expected pixel_values ${expected}, got ${formatShape(x.shape)}`,
        { details: { expected: [null, PATCH_EMBED_IN_CHANNELS, s, s], actual: x.shape } },
      );
    }
  }
}
