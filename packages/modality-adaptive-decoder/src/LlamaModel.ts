// Mirrors LlamaModel — transformers 4.31 models/llama/modeling_llama.py, with the forward of
// X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl2/mplug_owl2/model/modeling_llama2.py (`model_forward`:
// per-token modality indicators routed to every layer)
import * as tf from '@tensorflow/tfjs-core';
import {
  Embedding,
  ErrorCode,
  MASK_VALUE,
  Module,
  ModuleList,
  OwletError,
  RMSNorm,
  formatShape,
  ropeInvFreq,
  ropeTables,
} from '@owlet/core';

import type { LlamaConfig } from './config.js';
import { toIdRows, toPaddingMask, toPositionRows, type IdsInput } from './inputs.js';
import type { KVCache } from './KVCache.js';
import { LlamaDecoderLayer } from './LlamaDecoderLayer.js';
import {
  DEFAULT_MULTIWAY_STRATEGY,
  ModalityRouting,
  type ModalityIndicatorsInput,
  type MultiwayStrategy,
} from './ModalityRouting.js';

export interface LlamaModelInputs {
  /** Token ids [B, L] (rows, one row for batch 1, or an int32 tensor). Exactly one of input_ids / inputs_embeds. */
  input_ids?: IdsInput;
  /** Embeddings [B, L, D] (e.g. text embeddings with image features spliced in). Not disposed. */
  inputs_embeds?: tf.Tensor;
  /** Per-token modality [B, L]: 0 text, 1 image. Default all 0. Needs the modality-adaptive module for 1. */
  modality_indicators?: ModalityIndicatorsInput | null;
  /** Position ids [B, L]; default past … past + L − 1. */
  position_ids?: IdsInput | null;
  /** 0/1 mask over past + current keys [B, past + L]; default all ones. */
  attention_mask?: IdsInput | null;
  /** Cache of earlier positions; this forward's K/V are appended to it. */
  past_key_values?: KVCache | null;
  /** Also return the hidden states (HF convention: embeddings, after each layer but the last, final-normed output). */
  output_hidden_states?: boolean;
}

export interface LlamaModelOutput {
  /** [B, L, D], after the final RMSNorm. */
  last_hidden_state: tf.Tensor;
  /** num_hidden_layers + 1 tensors [B, L, D] when asked for. */
  hidden_states?: tf.Tensor[];
}

export interface LlamaModelOptions {
  /** How mixed text/image sequences are routed through the multiway copies. */
  multiwayStrategy?: MultiwayStrategy;
}

/** Validated, host-side form of a forward's inputs. */
export interface PreparedInputs {
  batch: number;
  length: number;
  past: number;
  idRows: number[][] | null;
  idTensor: tf.Tensor | null;
  embeds: tf.Tensor | null;
  modality: Int32Array;
  positions: number[][];
  mask: { data: Float32Array; shape: [number, number, number, number] } | null;
  cache: KVCache | null;
}

/**
 * The LLaMA decoder stack: `embed_tokens`, `layers.{i}`, `norm`. Takes `input_ids` or `inputs_embeds`,
 * with `modality_indicators` (0 text, 1 image) routing the multiway copies when the config enables them.
 */
export class LlamaModel extends Module {
  readonly config: LlamaConfig;
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;
  multiwayStrategy: MultiwayStrategy;

  constructor(config: LlamaConfig, options: LlamaModelOptions = {}) {
    super();
    this.config = config;
    this.multiwayStrategy = options.multiwayStrategy ?? DEFAULT_MULTIWAY_STRATEGY;
    this.embed_tokens = this.registerModule('embed_tokens', new Embedding(config.vocab_size, config.hidden_size));
    this.layers = this.registerModule('layers', new ModuleList<LlamaDecoderLayer>());
    for (let i = 0; i < config.num_hidden_layers; i++) this.layers.push(new LlamaDecoderLayer(config));
    this.norm = this.registerModule('norm', new RMSNorm(config.hidden_size, config.rms_norm_eps));
  }

  /** Checks every input against the config and the cache; changes nothing. */
  prepare(inputs: LlamaModelInputs): PreparedInputs {
    this.assertNotDisposed();
    const c = this.config;
    const hasIds = inputs.input_ids !== undefined && inputs.input_ids !== null;
    const hasEmbeds = inputs.inputs_embeds !== undefined && inputs.inputs_embeds !== null;
    if (hasIds === hasEmbeds) {
      throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'LlamaModel: pass exactly one of input_ids and inputs_embeds');
    }
    let batch: number;
    let length: number;
    let idRows: number[][] | null = null;
    let idTensor: tf.Tensor | null = null;
    let embeds: tf.Tensor | null = null;
    if (hasEmbeds) {
      embeds = inputs.inputs_embeds as tf.Tensor;
      if (embeds.rank !== 3 || embeds.shape[2] !== c.hidden_size) {
        throw new OwletError(
          ErrorCode.SHAPE_MISMATCH,
          `inputs_embeds: expected [B, L, ${c.hidden_size}], got ${formatShape(embeds.shape)}`,
        );
      }
      if (embeds.dtype !== 'float32') {
        throw new OwletError(ErrorCode.SHAPE_MISMATCH, `inputs_embeds: expected float32, got ${embeds.dtype}`);
      }
      [batch, length] = embeds.shape as [number, number];
    } else if (
      inputs.input_ids instanceof tf.Tensor &&
      inputs.input_ids.dtype === 'int32' &&
      inputs.input_ids.rank === 2
    ) {
      // Device ids are range-checked by the embedding lookup only on the host path; read them once.
      idTensor = inputs.input_ids;
      idRows = toIdRows(idTensor, c.vocab_size);
      [batch, length] = idTensor.shape as [number, number];
    } else {
      idRows = toIdRows(inputs.input_ids as IdsInput, c.vocab_size);
      batch = idRows.length;
      length = idRows[0]?.length ?? 0;
    }
    if (batch < 1 || length < 1) {
      throw new OwletError(ErrorCode.SHAPE_MISMATCH, `LlamaModel: empty input [${batch}, ${length}]`);
    }
    const cache = inputs.past_key_values ?? null;
    let past = 0;
    if (cache) {
      if (cache.isDisposed) throw new OwletError(ErrorCode.DISPOSED, 'past_key_values: the KVCache was disposed');
      if (cache.numLayers !== c.num_hidden_layers) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          `past_key_values: cache has ${cache.numLayers} layers, the model ${c.num_hidden_layers}`,
        );
      }
      if (!cache.isConsistent) {
        throw new OwletError(
          ErrorCode.INVALID_ARGUMENT,
          'past_key_values: layers hold different numbers of positions (an interrupted forward?)',
        );
      }
      past = cache.length;
      const cb = cache.batchSize;
      if (cb !== null && cb !== batch) {
        throw new OwletError(
          ErrorCode.SHAPE_MISMATCH,
          `past_key_values: cache holds batch ${cb}, input has batch ${batch}`,
        );
      }
    }
    const modality = ModalityRouting.toHost(inputs.modality_indicators, batch, length, c.multiway ? c.num_multiway : 1);
    const positions = toPositionRows(inputs.position_ids, batch, length, past);
    const mask = toPaddingMask(inputs.attention_mask, batch, past + length, MASK_VALUE);
    return { batch, length, past, idRows, idTensor, embeds, modality, positions, mask, cache };
  }

  /**
   * The buffers torch's LlamaModel keeps in its state dict besides the parameters: each layer's
   * `self_attn.rotary_emb.inv_freq` (computed, as torch does), keyed by its full checkpoint path.
   * The caller owns the tensors.
   */
  persistentBuffers(): Map<string, tf.Tensor> {
    const inv = ropeInvFreq(this.config.head_dim, this.config.rope_theta);
    const prefix = this.path ? `${this.path}.` : '';
    const out = new Map<string, tf.Tensor>();
    for (let i = 0; i < this.layers.length; i++) {
      out.set(`${prefix}layers.${i}.self_attn.rotary_emb.inv_freq`, tf.tensor1d(inv));
    }
    return out;
  }

  forward(inputs: LlamaModelInputs): LlamaModelOutput {
    return this.forwardPrepared(this.prepare(inputs), inputs.output_hidden_states ?? false);
  }

  /** Runs prepared inputs. On an error the cache is rolled back to where it was. */
  forwardPrepared(p: PreparedInputs, outputHiddenStates = false): LlamaModelOutput {
    try {
      return this.scope(() => {
        const c = this.config;
        const ids = p.idTensor ?? (p.idRows ? Int32Array.from(p.idRows.flat()) : null);
        let h: tf.Tensor;
        if (p.embeds) h = p.embeds;
        else if (ids) h = this.embed_tokens.forward(ids);
        else
          throw new OwletError(
            ErrorCode.INVALID_ARGUMENT,
            'LlamaModel: prepared inputs hold neither ids nor embeddings',
          );
        if (h.rank === 2) h = tf.reshape(h, [p.batch, p.length, c.hidden_size]); // [B·L, D] -> [B, L, D]
        const routing = ModalityRouting.create(
          p.modality,
          p.batch,
          p.length,
          c.multiway ? c.num_multiway : 1,
          this.multiwayStrategy,
        );
        const rope = ropeTables(p.positions, c.head_dim, c.rope_theta);
        const mask = p.mask ? tf.tensor4d(p.mask.data, p.mask.shape) : null;
        const hidden: tf.Tensor[] = [];
        for (let i = 0; i < this.layers.length; i++) {
          if (outputHiddenStates) hidden.push(i === 0 && p.embeds ? tf.clone(h) : h);
          h = this.layers.at(i).forward(h, { routing, rope, mask, cache: p.cache, layerIdx: i });
        }
        const last = this.norm.forward(h);
        if (outputHiddenStates) return { last_hidden_state: last, hidden_states: [...hidden, tf.clone(last)] };
        return { last_hidden_state: last };
      });
    } catch (e) {
      if (p.cache && !p.cache.isDisposed) p.cache.truncate(p.past);
      throw e;
    }
  }
}
