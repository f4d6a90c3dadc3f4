/**
 * Test-only: an independent float64 implementation of the abstractor, written from
 * `shared/reference/owl-architecture.md` §A.4 / §B.1 with plain loops (no tfjs). Flags reproduce the
 * known bug classes so tests can show the fixture tolerance catches each of them.
 */
import type { MplugOwlVisualAbstractorConfig } from './config.js';

export type PosEmbedMode = 'correct' | 'none' | 'halves_swapped' | 'sincos_swapped';

export interface Reference64Options {
  /** How the v2 position tables are built (ignored for v1, which has none). */
  posEmbed?: PosEmbedMode;
  /** `normed` (the reference): residual on norm1(X); `raw`: the bug, residual on X. */
  residual?: 'normed' | 'raw';
  /** eps of norm1/normk/norm2 (1e-5) and of ffn_ln (config). */
  normEps?: number;
  ffnEps?: number;
}

export type Weights64 = (key: string) => Float64Array;

/** E1(dim, p) in float64, sines first (or cosines first when `swapped`). */
function e1(dim: number, p: number, swapped: boolean): number[] {
  const half = dim / 2;
  const out = new Array<number>(dim);
  for (let k = 0; k < half; k++) {
    const a = p / 10000 ** (k / half);
    out[k] = swapped ? Math.cos(a) : Math.sin(a);
    out[half + k] = swapped ? Math.sin(a) : Math.cos(a);
  }
  return out;
}

/** The q and k tables in float64, [Q·D] and [K·D]. */
export function positionTables64(
  d: number,
  q: number,
  grid: number,
  cls: boolean,
  mode: PosEmbedMode,
): { qPos: Float64Array; kPos: Float64Array } {
  const swapped = mode === 'sincos_swapped';
  const qPos = new Float64Array(q * d);
  for (let i = 0; i < q; i++) qPos.set(e1(d, i, swapped), i * d);
  const first = cls ? 1 : 0;
  const kPos = new Float64Array((first + grid * grid) * d);
  for (let row = 0; row < grid; row++) {
    for (let col = 0; col < grid; col++) {
      const base = (first + row * grid + col) * d;
      const [a, b] = mode === 'halves_swapped' ? [row, col] : [col, row];
      kPos.set(e1(d / 2, a, swapped), base);
      kPos.set(e1(d / 2, b, swapped), base + d / 2);
    }
  }
  if (mode === 'none') {
    qPos.fill(0);
    kPos.fill(0);
  }
  return { qPos, kPos };
}

/** x [rows, in] · Wᵀ + b with W [out, in]. */
function lin(x: Float64Array, rows: number, w: Float64Array, b: Float64Array, inF: number, outF: number): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b[o] as number;
      for (let i = 0; i < inF; i++) s += (x[r * inF + i] as number) * (w[o * inF + i] as number);
      y[r * outF + o] = s;
    }
  }
  return y;
}

function ln(x: Float64Array, rows: number, dim: number, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i] as number;
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += ((x[r * dim + i] as number) - mean) ** 2;
    v /= dim;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < dim; i++)
      y[r * dim + i] = ((x[r * dim + i] as number) - mean) * inv * (w[i] as number) + (b[i] as number);
  }
  return y;
}

/**
 * image [N·K·D] (N images of K tokens), queries [Q·D] shared by every image.
 * Returns the queries before visual_fc [N·Q·D] and the output [N·(Q+1)·D_llm].
 */
export function abstractorReference64(
  cfg: MplugOwlVisualAbstractorConfig,
  w: Weights64,
  image: ArrayLike<number>,
  n: number,
  queries: ArrayLike<number>,
  options: Reference64Options = {},
): { queries: Float64Array; output: Float64Array } {
  const d = cfg.hidden_size;
  const q = cfg.num_learnable_queries;
  const k = image.length / n / d;
  const h = cfg.num_attention_heads;
  const dh = d / h;
  const inner = cfg.intermediate_size;
  const dl = cfg.language_hidden_size;
  const normEps = options.normEps ?? 1e-5;
  const ffnEps = options.ffnEps ?? cfg.layer_norm_eps;
  const pos = cfg.use_sincos_pos_embed
    ? positionTables64(d, q, cfg.grid_size ?? 0, cfg.use_cls_token, options.posEmbed ?? 'correct')
    : null;
  const outQ = new Float64Array(n * q * d);
  const out = new Float64Array(n * (q + 1) * dl);
  for (let img = 0; img < n; img++) {
    const I = Float64Array.from({ length: k * d }, (_, i) => image[img * k * d + i] as number);
    let X = Float64Array.from(queries);
    for (let l = 0; l < cfg.num_hidden_layers; l++) {
      const P = `encoder.layers.${l}.crossattention.`;
      const Xn = ln(X, q, d, w(`${P}norm1.weight`), w(`${P}norm1.bias`), normEps);
      const In = ln(I, k, d, w(`${P}normk.weight`), w(`${P}normk.bias`), normEps);
      const L = q + k;
      const KV = new Float64Array(L * d);
      KV.set(Xn, 0);
      KV.set(In, q * d);
      const qIn = Float64Array.from(Xn);
      const kIn = Float64Array.from(KV);
      if (pos) {
        for (let i = 0; i < q * d; i++) {
          qIn[i] = (qIn[i] as number) + (pos.qPos[i] as number);
          kIn[i] = (kIn[i] as number) + (pos.qPos[i] as number);
        }
        for (let i = 0; i < k * d; i++) kIn[q * d + i] = (kIn[q * d + i] as number) + (pos.kPos[i] as number);
      }
      const A = `${P}attention.`;
      const Qh = lin(qIn, q, w(`${A}query.weight`), w(`${A}query.bias`), d, d);
      const Kh = lin(kIn, L, w(`${A}key.weight`), w(`${A}key.bias`), d, d);
      const Vh = lin(KV, L, w(`${A}value.weight`), w(`${A}value.bias`), d, d);
      const ctx = new Float64Array(q * d);
      const scores = new Float64Array(L);
      for (let hh = 0; hh < h; hh++) {
        for (let i = 0; i < q; i++) {
          let max = -Infinity;
          for (let j = 0; j < L; j++) {
            let s = 0;
            for (let e = 0; e < dh; e++) s += (Qh[i * d + hh * dh + e] as number) * (Kh[j * d + hh * dh + e] as number);
            s /= Math.sqrt(dh);
            scores[j] = s;
            if (s > max) max = s;
          }
          let z = 0;
          for (let j = 0; j < L; j++) {
            scores[j] = Math.exp((scores[j] as number) - max);
            z += scores[j] as number;
          }
          for (let e = 0; e < dh; e++) {
            let s = 0;
            for (let j = 0; j < L; j++) s += (scores[j] as number) * (Vh[j * d + hh * dh + e] as number);
            ctx[i * d + hh * dh + e] = s / z;
          }
        }
      }
      const O = `${P}output.`;
      const proj = lin(ctx, q, w(`${O}out_proj.weight`), w(`${O}out_proj.bias`), d, d);
      const base = options.residual === 'raw' ? X : Xn;
      const Y = Float64Array.from(base, (v, i) => v + (proj[i] as number));
      const Yn = ln(Y, q, d, w(`${O}norm2.weight`), w(`${O}norm2.bias`), normEps);
      const M = `${O}mlp.`;
      const g = lin(Yn, q, w(`${M}w1.weight`), w(`${M}w1.bias`), d, inner);
      const u = lin(Yn, q, w(`${M}w3.weight`), w(`${M}w3.bias`), d, inner);
      const gated = Float64Array.from(g, (v, i) => (v / (1 + Math.exp(-v))) * (u[i] as number));
      const m = lin(
        ln(gated, q, inner, w(`${M}ffn_ln.weight`), w(`${M}ffn_ln.bias`), ffnEps),
        q,
        w(`${M}w2.weight`),
        w(`${M}w2.bias`),
        inner,
        d,
      );
      X = Float64Array.from(Y, (v, i) => v + (m[i] as number));
    }
    outQ.set(X, img * q * d);
    const fc = lin(X, q, w('visual_fc.weight'), w('visual_fc.bias'), d, dl);
    out.set(fc, img * (q + 1) * dl);
    out.set(w('vit_eos'), img * (q + 1) * dl + q * dl);
  }
  return { queries: outQ, output: out };
}
