/**
 * A float64 reference of the mPLUG-Owl ViT written directly from owl-architecture.md §A.3 (plain
 * loops, no tfjs), for tests of configurations the golden fixtures do not cover.
 */
import { mplugOwlVisionDims, type MplugOwlVisionConfig } from './config.js';

export type Params = Map<string, ArrayLike<number>>;

function get(p: Params, key: string): ArrayLike<number> {
  const v = p.get(key);
  if (!v) throw new Error(`reference64: missing parameter ${key}`);
  return v;
}

/** rows [n, in] · W[out, in]ᵀ + b → [n, out] */
export function linear64(
  x: Float64Array,
  n: number,
  inF: number,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  out: number,
): Float64Array {
  const y = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < out; o++) {
      let s = b ? Number(b[o]) : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i]! * Number(w[o * inF + i]);
      y[r * out + o] = s;
    }
  }
  return y;
}

export function layerNorm64(
  x: Float64Array,
  n: number,
  d: number,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  eps: number,
): Float64Array {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - mean) ** 2;
    v /= d;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - mean) * inv * Number(w[i]) + Number(b[i]);
  }
  return y;
}

function erf(x: number): number {
  // Abramowitz–Stegun 7.1.26 is too coarse; use a series/continued-fraction split accurate to ~1e-15.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = 0;
    let term = ax;
    for (let k = 0; k < 100; k++) {
      const add = term / (2 * k + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
      term *= (-ax * ax) / (k + 1);
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for large |x|.
  let f = 0;
  for (let k = 60; k >= 1; k--) f = k / 2 / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

export function act64(x: number, kind: MplugOwlVisionConfig['hidden_act']): number {
  if (kind === 'quick_gelu') return x / (1 + Math.exp(-1.702 * x));
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export interface Reference64Output {
  embeddings: Float64Array;
  last_hidden_state: Float64Array;
  /** [N, L, D] */
  shape: [number, number, number];
}

/**
 * pixels [N, 3, S, S] (flat, CHW) → embeddings and last_hidden_state, float64. `p` holds the
 * parameters under the model's own keys (`embeddings.cls_token`, …).
 */
export function visionReference64(
  config: MplugOwlVisionConfig,
  p: Params,
  pixels: ArrayLike<number>,
  n: number,
): Reference64Output {
  const dims = mplugOwlVisionDims(config);
  const d = config.hidden_size;
  const ps = config.patch_size;
  const s = config.image_size;
  const g = dims.grid_size;
  const L = dims.seq_length;
  const H = config.num_attention_heads;
  const dh = dims.head_dim;
  const I = config.intermediate_size;
  const eps = config.layer_norm_eps;
  const embAll = new Float64Array(n * L * d);
  const outAll = new Float64Array(n * L * d);
  const convW = get(p, 'embeddings.patch_embed.weight');
  const pos = get(p, 'embeddings.position_embedding');
  for (let img = 0; img < n; img++) {
    // Patch convolution, straight from the definition: out[o, r, c] = Σ_ch,kh,kw W[o,ch,kh,kw]·x[ch, r·p+kh, c·p+kw].
    let x: Float64Array = new Float64Array(L * d);
    const off = config.use_cls_token ? 1 : 0;
    if (config.use_cls_token) {
      const cls = get(p, 'embeddings.cls_token');
      for (let i = 0; i < d; i++) x[i] = Number(cls[i]);
    }
    for (let r = 0; r < g; r++) {
      for (let c = 0; c < g; c++) {
        const tok = off + r * g + c; // row-major
        for (let o = 0; o < d; o++) {
          let sum = 0;
          for (let ch = 0; ch < 3; ch++) {
            for (let kh = 0; kh < ps; kh++) {
              for (let kw = 0; kw < ps; kw++) {
                const px = Number(pixels[((img * 3 + ch) * s + r * ps + kh) * s + c * ps + kw]);
                sum += Number(convW[((o * 3 + ch) * ps + kh) * ps + kw]) * px;
              }
            }
          }
          x[tok * d + o] = sum;
        }
      }
    }
    for (let i = 0; i < L * d; i++) x[i] = x[i]! + Number(pos[i]);
    x = layerNorm64(x, L, d, get(p, 'embeddings.pre_layernorm.weight'), get(p, 'embeddings.pre_layernorm.bias'), eps);
    embAll.set(x, img * L * d);
    for (let j = 0; j < config.num_hidden_layers; j++) {
      const k = (name: string) => get(p, `encoder.layers.${j}.${name}`);
      const h1 = layerNorm64(x, L, d, k('input_layernorm.weight'), k('input_layernorm.bias'), eps);
      const qkv = linear64(h1, L, d, k('self_attn.query_key_value.weight'), k('self_attn.query_key_value.bias'), 3 * d);
      const ctx = new Float64Array(L * d);
      // Head-interleaved: feature h·3·Dh + t·Dh + e.
      const at = (tok: number, head: number, t: number, e: number) => qkv[tok * 3 * d + head * 3 * dh + t * dh + e]!;
      for (let head = 0; head < H; head++) {
        for (let qi = 0; qi < L; qi++) {
          const scores = new Float64Array(L);
          let max = -Infinity;
          for (let ki = 0; ki < L; ki++) {
            let sdot = 0;
            for (let e = 0; e < dh; e++) sdot += at(qi, head, 0, e) * at(ki, head, 1, e);
            scores[ki] = sdot / Math.sqrt(dh);
            if (scores[ki]! > max) max = scores[ki]!;
          }
          let z = 0;
          for (let ki = 0; ki < L; ki++) {
            scores[ki] = Math.exp(scores[ki]! - max);
            z += scores[ki]!;
          }
          for (let e = 0; e < dh; e++) {
            let acc = 0;
            for (let ki = 0; ki < L; ki++) acc += (scores[ki]! / z) * at(ki, head, 2, e);
            ctx[qi * d + head * dh + e] = acc;
          }
        }
      }
      const attnOut = linear64(ctx, L, d, k('self_attn.dense.weight'), k('self_attn.dense.bias'), d);
      for (let i = 0; i < L * d; i++) x[i] = x[i]! + attnOut[i]!;
      const h2 = layerNorm64(x, L, d, k('post_attention_layernorm.weight'), k('post_attention_layernorm.bias'), eps);
      const f1 = linear64(h2, L, d, k('mlp.fc1.weight'), k('mlp.fc1.bias'), I);
      for (let i = 0; i < f1.length; i++) f1[i] = act64(f1[i]!, config.hidden_act);
      const f2 = linear64(f1, L, I, k('mlp.fc2.weight'), k('mlp.fc2.bias'), d);
      for (let i = 0; i < L * d; i++) x[i] = x[i]! + f2[i]!;
    }
    if (config.use_post_layernorm)
      x = layerNorm64(x, L, d, get(p, 'post_layernorm.weight'), get(p, 'post_layernorm.bias'), eps);
    outAll.set(x, img * L * d);
  }
  return { embeddings: embAll, last_hidden_state: outAll, shape: [n, L, d] };
}
