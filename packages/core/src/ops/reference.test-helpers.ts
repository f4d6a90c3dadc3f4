/**
 * Float64 reference implementations of the ops, written independently of tfjs, for the op tests.
 * Arrays are row-major; shapes are given explicitly.
 */

export function refLinear(
  x: Float64Array,
  n: number,
  inF: number,
  w: Float64Array,
  out: number,
  b?: Float64Array,
): Float64Array {
  const y = new Float64Array(n * out);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < out; o++) {
      let s = b ? (b[o] as number) : 0;
      for (let i = 0; i < inF; i++) s += (x[r * inF + i] as number) * (w[o * inF + i] as number);
      y[r * out + o] = s;
    }
  }
  return y;
}

export function refLayerNorm(x: Float64Array, d: number, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const n = x.length / d;
  const y = new Float64Array(x.length);
  for (let r = 0; r < n; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i] as number;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += ((x[r * d + i] as number) - mean) ** 2;
    v /= d;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < d; i++)
      y[r * d + i] = ((x[r * d + i] as number) - mean) * inv * (w[i] as number) + (b[i] as number);
  }
  return y;
}

export function refRmsNorm(x: Float64Array, d: number, w: Float64Array, eps: number): Float64Array {
  const n = x.length / d;
  const y = new Float64Array(x.length);
  for (let r = 0; r < n; r++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += (x[r * d + i] as number) ** 2;
    ms /= d;
    const inv = 1 / Math.sqrt(ms + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (w[i] as number) * (x[r * d + i] as number) * inv;
  }
  return y;
}

export const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/** erf by its Taylor series (accurate to ~1e-12 for |x| ≤ 4) and 1 beyond. */
export function erf(x: number): number {
  if (Math.abs(x) > 5) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

export function refSoftmaxRows(x: Float64Array, d: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let m = -Infinity;
    for (let i = 0; i < d; i++) m = Math.max(m, x[r * d + i] as number);
    let s = 0;
    for (let i = 0; i < d; i++) s += Math.exp((x[r * d + i] as number) - m);
    for (let i = 0; i < d; i++) y[r * d + i] = Math.exp((x[r * d + i] as number) - m) / s;
  }
  return y;
}

/** HF rotate_half RoPE on x [B, H, L, D] with positions [B][L]. */
export function refRope(
  x: Float64Array,
  shape: [number, number, number, number],
  pos: number[][],
  theta: number,
): Float64Array {
  const [B, H, L, D] = shape;
  const half = D / 2;
  const y = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let l = 0; l < L; l++) {
        const p = (pos[b] ?? pos[0])![l] as number;
        const base = ((b * H + h) * L + l) * D;
        for (let i = 0; i < D; i++) {
          const k = i % half;
          const ang = p * Math.pow(theta, (-2 * k) / D);
          const rot = i < half ? -(x[base + i + half] as number) : (x[base + i - half] as number);
          y[base + i] = (x[base + i] as number) * Math.cos(ang) + rot * Math.sin(ang);
        }
      }
    }
  }
  return y;
}

/**
 * Attention on q [B, H, Lq, D], k/v [B, Hkv, Lk, D]; causal with the queries at the end of the
 * keys; optional additive mask [Lq, Lk] (shared by batch and heads).
 */
export function refAttention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  dims: { B: number; H: number; Hkv: number; Lq: number; Lk: number; D: number },
  causal: boolean,
  mask?: Float64Array,
): Float64Array {
  const { B, H, Hkv, Lq, Lk, D } = dims;
  const rep = H / Hkv;
  const out = new Float64Array(B * H * Lq * D);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / rep);
      for (let i = 0; i < Lq; i++) {
        const scores = new Float64Array(Lk);
        let m = -Infinity;
        for (let j = 0; j < Lk; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) {
            s += (q[((b * H + h) * Lq + i) * D + d] as number) * (k[((b * Hkv + hk) * Lk + j) * D + d] as number);
          }
          s *= scale;
          if (mask) s += mask[i * Lk + j] as number;
          if (causal && j > Lk - Lq + i) s = -Infinity;
          scores[j] = s;
          m = Math.max(m, s);
        }
        let z = 0;
        for (let j = 0; j < Lk; j++) {
          scores[j] = Math.exp((scores[j] as number) - m);
          z += scores[j] as number;
        }
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < Lk; j++)
            acc += ((scores[j] as number) / z) * (v[((b * Hkv + hk) * Lk + j) * D + d] as number);
          out[((b * H + h) * Lq + i) * D + d] = acc;
        }
      }
    }
  }
  return out;
}

/** Central finite differences of a scalar function of one float64 array, element by element. */
export function finiteDiff(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  const xx = Float64Array.from(x);
  for (let i = 0; i < x.length; i++) {
    const orig = xx[i] as number;
    xx[i] = orig + h;
    const fp = f(xx);
    xx[i] = orig - h;
    const fm = f(xx);
    xx[i] = orig;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

export function dot(a: Float64Array, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}
