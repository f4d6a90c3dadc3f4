/**
 * LLaMA checkpoints (HF names, owlet's `LlamaForCausalLM` keys) as GGUF files llama.cpp loads:
 * the `llama` architecture metadata, a minimal SentencePiece ('llama') vocabulary, HF → GGUF tensor
 * names, and the q/k row permutation llama.cpp's own HF converter applies (llama.cpp rotates
 * adjacent pairs, HF rotates halves).
 */
import { ErrorCode, OwletError, formatShape } from '@owlet/core';
import type { LlamaConfig } from '@owlet/modality-adaptive-decoder';

import {
  GgufValueType,
  gguf,
  writeGgufFile,
  encodeGguf,
  type GgmlTypeName,
  type GgufLayout,
  type GgufMetadata,
  type GgufTensorSource,
} from './gguf.js';

/** `llama_ftype` written as general.file_type. */
export const LLAMA_FILE_TYPE: Record<'F32' | 'F16' | 'Q8_0' | 'Q4_0', number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

/** `llama_token_type` (tokenizer.ggml.token_type). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** The LLaMA fields the GGUF needs (a `LlamaConfig` has them all). */
export type LlamaGgufConfig = Pick<
  LlamaConfig,
  | 'vocab_size'
  | 'hidden_size'
  | 'intermediate_size'
  | 'num_hidden_layers'
  | 'num_attention_heads'
  | 'num_key_value_heads'
  | 'rms_norm_eps'
  | 'rope_theta'
  | 'max_position_embeddings'
  | 'tie_word_embeddings'
  | 'head_dim'
>;

/**
 * Permutes the rows of a q/k projection [nHead·headDim, in] from HF's rotate-half layout to
 * llama.cpp's adjacent-pair layout, as `convert_hf_to_gguf.py` does:
 * `w.reshape(nHead, 2, headDim/2, in).swapaxes(1, 2).reshape(w.shape)`, i.e. new row
 * `h·hd + 2j + i` = old row `h·hd + i·hd/2 + j`.
 */
export function permuteQK(w: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  if (rows % nHead !== 0 || (rows / nHead) % 2 !== 0 || w.length !== rows * cols) {
    throw new OwletError(
      ErrorCode.SHAPE_MISMATCH,
      `permuteQK: expected [${nHead}·even head dim, in] with ${rows}×${cols} values, got ${w.length} values for ${nHead} heads`,
    );
  }
  const hd = rows / nHead;
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < half; j++) {
        const src = (h * hd + i * half + j) * cols;
        const dst = (h * hd + 2 * j + i) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

/** One tensor of the GGUF with the HF key it comes from. */
export interface LlamaGgufTensorPlan {
  gguf: string;
  hf: string;
  shape: number[];
  type: GgmlTypeName;
  /** Rows to permute for llama.cpp's rotary layout (number of heads), if any. */
  permuteHeads?: number;
}

/**
 * The tensors of a LLaMA GGUF in llama.cpp's order. 2-D weights take `weightType`; norms stay F32
 * (as llama.cpp's converter and quantiser keep 1-D tensors). Keys are owlet/HF `LlamaForCausalLM`
 * keys (`model.layers.{i}.self_attn.q_proj.weight`, …).
 */
export function llamaGgufTensorPlan(config: LlamaGgufConfig, weightType: GgmlTypeName = 'F32'): LlamaGgufTensorPlan[] {
  const d = config.hidden_size;
  const kv = config.num_key_value_heads * config.head_dim;
  const ff = config.intermediate_size;
  const plan: LlamaGgufTensorPlan[] = [
    { gguf: 'token_embd.weight', hf: 'model.embed_tokens.weight', shape: [config.vocab_size, d], type: weightType },
  ];
  for (let i = 0; i < config.num_hidden_layers; i++) {
    const p = `model.layers.${i}`;
    const b = `blk.${i}`;
    plan.push(
      { gguf: `${b}.attn_norm.weight`, hf: `${p}.input_layernorm.weight`, shape: [d], type: 'F32' },
      {
        gguf: `${b}.attn_q.weight`,
        hf: `${p}.self_attn.q_proj.weight`,
        shape: [d, d],
        type: weightType,
        permuteHeads: config.num_attention_heads,
      },
      {
        gguf: `${b}.attn_k.weight`,
        hf: `${p}.self_attn.k_proj.weight`,
        shape: [kv, d],
        type: weightType,
        permuteHeads: config.num_key_value_heads,
      },
      { gguf: `${b}.attn_v.weight`, hf: `${p}.self_attn.v_proj.weight`, shape: [kv, d], type: weightType },
      { gguf: `${b}.attn_output.weight`, hf: `${p}.self_attn.o_proj.weight`, shape: [d, d], type: weightType },
      { gguf: `${b}.ffn_norm.weight`, hf: `${p}.post_attention_layernorm.weight`, shape: [d], type: 'F32' },
      { gguf: `${b}.ffn_gate.weight`, hf: `${p}.mlp.gate_proj.weight`, shape: [ff, d], type: weightType },
      { gguf: `${b}.ffn_up.weight`, hf: `${p}.mlp.up_proj.weight`, shape: [ff, d], type: weightType },
      { gguf: `${b}.ffn_down.weight`, hf: `${p}.mlp.down_proj.weight`, shape: [d, ff], type: weightType },
    );
  }
  plan.push({ gguf: 'output_norm.weight', hf: 'model.norm.weight', shape: [d], type: 'F32' });
  if (!config.tie_word_embeddings) {
    plan.push({ gguf: 'output.weight', hf: 'lm_head.weight', shape: [config.vocab_size, d], type: weightType });
  }
  return plan;
}

export interface LlamaVocab {
  tokens: string[];
  scores: Float32Array;
  tokenTypes: Int32Array;
}

/**
 * A minimal SentencePiece vocabulary of `vocabSize` entries for llama.cpp's 'llama' tokenizer:
 * `<unk>` 0, `<s>` 1, `</s>` 2, the 256 byte tokens `<0x00>`…`<0xFF>` (llama.cpp looks up the
 * newline byte token), then distinct normal pieces `▁t{i}`. It only has to load: the benchmarks and
 * tests feed token ids, never text.
 */
export function minimalLlamaVocab(vocabSize: number): LlamaVocab {
  const specials = 3;
  if (!Number.isSafeInteger(vocabSize) || vocabSize < specials + 256) {
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `minimal llama vocab: vocab_size must be at least ${specials + 256} (3 specials + 256 byte tokens), got ${vocabSize}`,
    );
  }
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const tokenTypes = new Int32Array(vocabSize);
  const scores = new Float32Array(vocabSize);
  tokenTypes[0] = TokenType.UNKNOWN;
  tokenTypes[1] = TokenType.CONTROL;
  tokenTypes[2] = TokenType.CONTROL;
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    tokenTypes[specials + b] = TokenType.BYTE;
  }
  for (let i = specials + 256; i < vocabSize; i++) {
    tokens.push(`\u2581t${i}`);
    tokenTypes[i] = TokenType.NORMAL;
    scores[i] = -(i - specials - 256);
  }
  return { tokens, scores, tokenTypes };
}

export interface LlamaGgufOptions {
  /** Type of the 2-D weights (default F32). */
  weightType?: GgmlTypeName;
  name?: string;
  /** fsync the file before renaming it into place (default true). */
  fsync?: boolean;
}

/** The metadata llama.cpp needs for the `llama` architecture, plus the tokenizer. */
export function llamaGgufMetadata(config: LlamaGgufConfig, options: LlamaGgufOptions = {}): GgufMetadata {
  const type = options.weightType ?? 'F32';
  const vocab = minimalLlamaVocab(config.vocab_size);
  return [
    ['general.architecture', gguf.str('llama')],
    ['general.name', gguf.str(options.name ?? 'owlet-llama')],
    ['general.alignment', gguf.u32(32)],
    ['general.file_type', gguf.u32(LLAMA_FILE_TYPE[type])],
    ['llama.vocab_size', gguf.u32(config.vocab_size)],
    ['llama.context_length', gguf.u32(config.max_position_embeddings)],
    ['llama.embedding_length', gguf.u32(config.hidden_size)],
    ['llama.block_count', gguf.u32(config.num_hidden_layers)],
    ['llama.feed_forward_length', gguf.u32(config.intermediate_size)],
    ['llama.rope.dimension_count', gguf.u32(config.head_dim)],
    ['llama.attention.head_count', gguf.u32(config.num_attention_heads)],
    ['llama.attention.head_count_kv', gguf.u32(config.num_key_value_heads)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(config.rms_norm_eps)],
    ['llama.rope.freq_base', gguf.f32(config.rope_theta)],
    ['tokenizer.ggml.model', gguf.str('llama')],
    ['tokenizer.ggml.tokens', gguf.arr(GgufValueType.STRING, vocab.tokens)],
    ['tokenizer.ggml.scores', gguf.arr(GgufValueType.FLOAT32, vocab.scores)],
    ['tokenizer.ggml.token_type', gguf.arr(GgufValueType.INT32, vocab.tokenTypes)],
    ['tokenizer.ggml.bos_token_id', gguf.u32(1)],
    ['tokenizer.ggml.eos_token_id', gguf.u32(2)],
    ['tokenizer.ggml.unknown_token_id', gguf.u32(0)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(false)],
    ['tokenizer.ggml.add_eos_token', gguf.bool(false)],
  ];
}

/** Reads one HF tensor by key (float32, row-major, PyTorch shape). */
export type HfTensorGetter = (key: string, shape: readonly number[]) => Float32Array | Promise<Float32Array>;

function tensorSources(config: LlamaGgufConfig, get: HfTensorGetter, options: LlamaGgufOptions): GgufTensorSource[] {
  return llamaGgufTensorPlan(config, options.weightType ?? 'F32').map((t) => ({
    name: t.gguf,
    shape: t.shape,
    type: t.type,
    data: async () => {
      const v = await get(t.hf, t.shape);
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (v.length !== n) {
        throw new OwletError(
          ErrorCode.SHAPE_MISMATCH,
          `${t.hf}: expected ${formatShape(t.shape)} (${n} values) for ${t.gguf}, got ${v.length} values`,
          { details: { key: t.hf, expected: t.shape } },
        );
      }
      return t.permuteHeads ? permuteQK(v, t.shape[0] as number, t.shape[1] as number, t.permuteHeads) : v;
    },
  }));
}

/** Streams a LLaMA GGUF to `path` from HF-named tensors. */
export function writeLlamaGguf(
  path: string,
  config: LlamaGgufConfig,
  get: HfTensorGetter,
  options: LlamaGgufOptions = {},
): Promise<GgufLayout> {
  return writeGgufFile(path, llamaGgufMetadata(config, options), tensorSources(config, get, options), {
    fsync: options.fsync ?? true,
  });
}

/** The same file in memory. */
export function encodeLlamaGguf(
  config: LlamaGgufConfig,
  get: HfTensorGetter,
  options: LlamaGgufOptions = {},
): Promise<Uint8Array> {
  return encodeGguf(llamaGgufMetadata(config, options), tensorSources(config, get, options));
}
