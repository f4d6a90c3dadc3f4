/**
 * Test-only: the mPLUG-Owl2 training loss in float64 with plain loops (no tfjs), from
 * owl-architecture.md §A.3–A.6 — vision encoder and abstractor through their packages' float64
 * references, the modality-adaptive LLaMA decoder written here. Each sample runs on its own,
 * unpadded; the batch loss is the mean cross-entropy over every labelled token of every sample
 * (what the official right-padded batch computes, since causal attention never lets a real
 * position see the padding after it).
 */
import { resolveMplugOwlModelConfig, type MplugOwlModelConfig } from '@owlet/mplug-owl';

import { visionReference64 } from '../../vision-encoder/src/reference64.testutil.js';
import { abstractorReference64 } from '../../visual-abstractor/src/reference64.testutil.js';

export type Weights = Map<string, Float64Array>;

function get(w: Weights, key: string): Float64Array {
  const v = w.get(key);
  if (!v) throw new Error(`reference64: missing ${key}`);
  return v;
}

/** rows [n, inF] · W[out, inF]ᵀ */
function linear(x: Float64Array, n: number, inF: number, w: Float64Array, out: number): Float64Array {
  const y = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += (x[r * inF + i] as number) * (w[o * inF + i] as number);
      y[r * out + o] = s;
    }
  }
  return y;
}

/** Per-row weight choice: rows with modality m use `ws[m]`. */
function rmsNormRows(
  x: Float64Array,
  n: number,
  d: number,
  ws: Float64Array[],
  mod: number[],
  eps: number,
): Float64Array {
  const y = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += (x[r * d + i] as number) ** 2;
    const inv = 1 / Math.sqrt(ms / d + eps);
    const w = ws[mod[r] as number] as Float64Array;
    for (let i = 0; i < d; i++) y[r * d + i] = (w[i] as number) * (x[r * d + i] as number) * inv;
  }
  return y;
}

function linearRows(
  x: Float64Array,
  n: number,
  inF: number,
  ws: Float64Array[],
  mod: number[],
  out: number,
): Float64Array {
  const y = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    const w = ws[mod[r] as number] as Float64Array;
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += (x[r * inF + i] as number) * (w[o * inF + i] as number);
      y[r * out + o] = s;
    }
  }
  return y;
}

/** HF rotate_half RoPE in place on rows [n, H·Dh], positions 0 … n − 1. */
function rope(x: Float64Array, n: number, h: number, dh: number, theta: number): void {
  const half = dh / 2;
  for (let t = 0; t < n; t++) {
    for (let head = 0; head < h; head++) {
      const base = t * h * dh + head * dh;
      const row = x.slice(base, base + dh);
      for (let i = 0; i < dh; i++) {
        const k = i % half;
        const ang = t * theta ** ((-2 * k) / dh);
        const rot = i < half ? -(row[i + half] as number) : (row[i - half] as number);
        x[base + i] = (row[i] as number) * Math.cos(ang) + rot * Math.sin(ang);
      }
    }
  }
}

/** The decoder's final hidden states [n, D] for spliced embeddings and modality. */
function decoder64(c: MplugOwlModelConfig, w: Weights, x0: Float64Array, mod: number[]): Float64Array {
  const t = c.text_config;
  const n = mod.length;
  const d = t.hidden_size;
  const h = t.num_attention_heads;
  const dh = t.head_dim;
  const f = t.intermediate_size;
  const eps = t.rms_norm_eps;
  const x = Float64Array.from(x0);
  const multi = (key: string) => [get(w, `${key}.multiway.0.weight`), get(w, `${key}.multiway.1.weight`)];
  for (let l = 0; l < t.num_hidden_layers; l++) {
    const P = `model.layers.${l}`;
    const hN = rmsNormRows(x, n, d, multi(`${P}.input_layernorm`), mod, eps);
    const q = linear(hN, n, d, get(w, `${P}.self_attn.q_proj.weight`), h * dh);
    const k = linearRows(hN, n, d, multi(`${P}.self_attn.k_proj`), mod, h * dh);
    const v = linearRows(hN, n, d, multi(`${P}.self_attn.v_proj`), mod, h * dh);
    rope(q, n, h, dh, t.rope_theta);
    rope(k, n, h, dh, t.rope_theta);
    const ctx = new Float64Array(n * h * dh);
    const scores = new Float64Array(n);
    for (let head = 0; head < h; head++) {
      for (let i = 0; i < n; i++) {
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < dh; e++)
            s += (q[i * h * dh + head * dh + e] as number) * (k[j * h * dh + head * dh + e] as number);
          s /= Math.sqrt(dh);
          scores[j] = s;
          if (s > max) max = s;
        }
        let z = 0;
        for (let j = 0; j <= i; j++) {
          scores[j] = Math.exp((scores[j] as number) - max);
          z += scores[j] as number;
        }
        for (let e = 0; e < dh; e++) {
          let s = 0;
          for (let j = 0; j <= i; j++) s += (scores[j] as number) * (v[j * h * dh + head * dh + e] as number);
          ctx[i * h * dh + head * dh + e] = s / z;
        }
      }
    }
    const o = linear(ctx, n, h * dh, get(w, `${P}.self_attn.o_proj.weight`), d);
    for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (o[i] as number);
    const h2 = rmsNormRows(x, n, d, multi(`${P}.post_attention_layernorm`), mod, eps);
    const g = linear(h2, n, d, get(w, `${P}.mlp.gate_proj.weight`), f);
    const u = linear(h2, n, d, get(w, `${P}.mlp.up_proj.weight`), f);
    const a = Float64Array.from(g, (gv, i) => (gv / (1 + Math.exp(-gv))) * (u[i] as number));
    const down = linear(a, n, f, get(w, `${P}.mlp.down_proj.weight`), d);
    for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (down[i] as number);
  }
  return rmsNormRows(x, n, d, [get(w, 'model.norm.weight'), get(w, 'model.norm.weight')], new Array(n).fill(0), eps);
}

/** Visual tokens [T, D_llm] of one image [3, S, S] (flat). */
export function imageTokens64(c: MplugOwlModelConfig, w: Weights, pixels: ArrayLike<number>): Float64Array {
  const sub = (prefix: string) => {
    const m = new Map<string, Float64Array>();
    for (const [k, v] of w) if (k.startsWith(prefix)) m.set(k.slice(prefix.length), v);
    return m;
  };
  const vis = visionReference64(c.vision_config, sub('model.vision_model.'), pixels, 1);
  const abs = sub('model.visual_abstractor.');
  return abstractorReference64(
    c.abstractor_config,
    (key) => {
      const v = abs.get(key);
      if (!v) throw new Error(`reference64: missing model.visual_abstractor.${key}`);
      return v;
    },
    vis.last_hidden_state,
    1,
    get(w, 'model.visual_abstractor.query_embeds'),
  ).output;
}

export interface Sample64 {
  /** ids with one −200 per image (unpadded). */
  input_ids: number[];
  labels: number[];
  /** One [3, S, S] image per −200. */
  images: ArrayLike<number>[];
}

/** Summed cross-entropy and labelled-token count of one sample, float64. */
export function sampleLoss64(c: MplugOwlModelConfig, w: Weights, s: Sample64): { sum: number; tokens: number } {
  const t = c.text_config;
  const d = t.hidden_size;
  const embed = get(w, 'model.embed_tokens.weight');
  const mod: number[] = [];
  const labels: number[] = [];
  const parts: Float64Array[] = [];
  let img = 0;
  s.input_ids.forEach((id, i) => {
    if (id === -200) {
      const tok = imageTokens64(c, w, s.images[img++] as ArrayLike<number>);
      parts.push(tok);
      for (let r = 0; r < tok.length / d; r++) {
        mod.push(1);
        labels.push(-100);
      }
      return;
    }
    parts.push(embed.slice(id * d, (id + 1) * d));
    mod.push(0);
    labels.push(s.labels[i] as number);
  });
  const x0 = new Float64Array(mod.length * d);
  let off = 0;
  for (const p of parts) {
    x0.set(p, off);
    off += p.length;
  }
  const hidden = decoder64(c, w, x0, mod);
  const head = get(w, 'lm_head.weight');
  const v = t.vocab_size;
  let sum = 0;
  let tokens = 0;
  for (let pos = 0; pos + 1 < mod.length; pos++) {
    const y = labels[pos + 1] as number;
    if (y === -100) continue;
    const logits = linear(hidden.subarray(pos * d, (pos + 1) * d), 1, d, head, v);
    let max = -Infinity;
    for (const z of logits) max = Math.max(max, z);
    let zsum = 0;
    for (const z of logits) zsum += Math.exp(z - max);
    sum -= (logits[y] as number) - max - Math.log(zsum);
    tokens++;
  }
  return { sum, tokens };
}

/** Mean token cross-entropy over a batch of samples (the official padded-batch loss). */
export function batchLoss64(c: MplugOwlModelConfig, w: Weights, samples: readonly Sample64[]): number {
  let sum = 0;
  let tokens = 0;
  for (const s of samples) {
    const r = sampleLoss64(c, w, s);
    sum += r.sum;
    tokens += r.tokens;
  }
  return sum / tokens;
}

export { resolveMplugOwlModelConfig };
