/**
 * Pillow's `Image.resize` for 8-bit images, reproduced bit for bit (Pillow 9.4
 * `libImaging/Resample.c` and, for NEAREST, `Geometry.c` `ImagingScaleAffine`), as streaming
 * {@link RowSource} stages.
 *
 * Convolution filters (BICUBIC with a = −0.5, BILINEAR, BOX, HAMMING, LANCZOS) are separable: a
 * horizontal pass, a uint8 intermediate, then a vertical pass. For each output pixel the filter is
 * centred at `in0 + (xx + 0.5)·scale`, its support widened by `max(1, scale)` (antialiasing), the
 * window bounds rounded as Pillow rounds them, the weights normalised to sum 1 in float64 and then
 * converted to fixed point with 22 fractional bits (round half away from zero). Each output is
 * `clip8((2^21 + Σ k·p) >> 22)`. A pass is skipped when its size is unchanged, exactly as Pillow
 * does. Outputs can be restricted to a region (a center crop) without changing any value, because
 * every output pixel's coefficients depend only on its own position.
 */
import { Row, type RowSource } from './rows.js';

/** Pillow's resampling filter ids (`PIL.Image.Resampling`). */
export const Resampling = {
  NEAREST: 0,
  LANCZOS: 1,
  BILINEAR: 2,
  BICUBIC: 3,
  BOX: 4,
  HAMMING: 5,
} as const;
export type Resampling = (typeof Resampling)[keyof typeof Resampling];

/** A convolution filter: `fn` is evaluated on input-pixel distance divided by the scale. */
export interface ConvolutionFilter {
  readonly name: string;
  readonly support: number;
  fn(x: number): number;
}

const F32_054 = Math.fround(0.54);
const F32_046 = Math.fround(0.46);

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

/** Pillow's filters (`BICUBIC` is the one the models use; the others are provided for completeness). */
export const FILTERS: Readonly<Record<Exclude<Resampling, 0>, ConvolutionFilter>> = {
  [Resampling.BOX]: { name: 'BOX', support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  [Resampling.BILINEAR]: {
    name: 'BILINEAR',
    support: 1,
    fn: (x) => {
      const ax = Math.abs(x);
      return ax < 1 ? 1 - ax : 0;
    },
  },
  [Resampling.HAMMING]: {
    name: 'HAMMING',
    support: 1,
    fn: (x) => {
      let ax = Math.abs(x);
      if (ax === 0) return 1;
      if (ax >= 1) return 0;
      ax *= Math.PI;
      return (Math.sin(ax) / ax) * (F32_054 + F32_046 * Math.cos(ax));
    },
  },
  [Resampling.BICUBIC]: {
    name: 'BICUBIC',
    support: 2,
    fn: (x) => {
      const a = -0.5;
      const ax = x < 0 ? -x : x;
      if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
      if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
      return 0;
    },
  },
  [Resampling.LANCZOS]: {
    name: 'LANCZOS',
    support: 3,
    fn: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0),
  },
};

/** Fractional bits of Pillow's fixed-point coefficients (`PRECISION_BITS = 32 − 8 − 2`). */
export const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);
const INV_ONE = 1 / ONE;

/** `clip8` of Resample.c: `in >> 22` (arithmetic) clamped to [0, 255]. */
function clip8(acc: number): number {
  const v = Math.floor(acc * INV_ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Fixed-point coefficients of one resampling axis for outputs `[o0, o1)` (Pillow's
 * `precompute_coeffs` + `normalize_coeffs_8bpc`).
 */
export interface AxisCoefficients {
  readonly o0: number;
  readonly count: number;
  /** Row stride of `k`: Pillow's `ksize = ceil(support)·2 + 1`. */
  readonly ksize: number;
  /** First input index of output `o0 + i`. */
  readonly start: Int32Array;
  /** Number of inputs of output `o0 + i`. */
  readonly length: Int32Array;
  /** Integer coefficients, `ksize` per output. */
  readonly k: Int32Array;
  /** Prefix sums of `k` per output (`ksize + 1` each), for constant runs. */
  readonly prefix: Float64Array;
  /** Σk per output. */
  readonly sum: Float64Array;
  readonly sumMin: number;
  readonly sumMax: number;
}

/**
 * Pillow's coefficients for resizing an axis of `inSize` pixels (box `[in0, in1)`) to `outSize`,
 * for outputs `o0 … o1−1` only.
 */
export function axisCoefficients(
  inSize: number,
  outSize: number,
  filter: ConvolutionFilter,
  o0 = 0,
  o1 = outSize,
  in0 = 0,
  in1 = inSize,
): AxisCoefficients {
  // box coordinates are C floats in Pillow
  const f0 = Math.fround(in0);
  const f1 = Math.fround(in1);
  const scale = Math.fround(f1 - f0) / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const count = o1 - o0;
  const start = new Int32Array(count);
  const length = new Int32Array(count);
  const k = new Int32Array(count * ksize);
  const prefix = new Float64Array(count * (ksize + 1));
  const sum = new Float64Array(count);
  const w = new Float64Array(ksize);
  const ss = 1 / filterscale;
  let sumMin = Infinity;
  let sumMax = -Infinity;
  for (let i = 0; i < count; i++) {
    const xx = o0 + i;
    const center = f0 + (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    const n = Math.max(0, Math.min(xmax - xmin, ksize));
    let ww = 0;
    for (let x = 0; x < n; x++) {
      const v = filter.fn((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    let s = 0;
    const kb = i * ksize;
    const pb = i * (ksize + 1);
    for (let x = 0; x < n; x++) {
      const kv = ww !== 0 ? w[x]! / ww : w[x]!;
      const q = kv < 0 ? Math.trunc(-0.5 + kv * ONE) : Math.trunc(0.5 + kv * ONE);
      k[kb + x] = q;
      s += q;
      prefix[pb + x + 1] = s;
    }
    for (let x = n; x < ksize; x++) prefix[pb + x + 1] = s;
    start[i] = xmin;
    length[i] = n;
    sum[i] = s;
    if (s < sumMin) sumMin = s;
    if (s > sumMax) sumMax = s;
  }
  return { o0, count, ksize, start, length, k, prefix, sum, sumMin, sumMax };
}

/** A crop of the output, `[x0, x1) × [y0, y1)`. */
export interface Region {
  readonly x0: number;
  readonly y0: number;
  readonly x1: number;
  readonly y1: number;
}

/** Horizontal pass of one row over outputs `[cx.o0, cx.o0 + cx.count)`. */
export function resampleRowHorizontal(row: Row, cx: AxisCoefficients, constCache?: ConstSegmentCache): Row {
  const C = row.channels;
  const n = cx.count;
  const color = row.constColor();
  if (color) {
    // A constant row: output xx depends only on Σk[xx]; monotone in Σk, so one check suffices.
    const out = new Uint8Array(C);
    let uniform = true;
    for (let c = 0; c < C; c++) {
      const lo = clip8(HALF + color[c]! * cx.sumMin);
      const hi = clip8(HALF + color[c]! * cx.sumMax);
      if (lo !== hi) uniform = false;
      out[c] = lo;
    }
    if (uniform) return Row.constant(out, n);
    const data = new Uint8Array(n * C);
    for (let i = 0; i < n; i++) {
      const s = cx.sum[i]!;
      for (let c = 0; c < C; c++) data[i * C + c] = clip8(HALF + color[c]! * s);
    }
    return Row.dense(data, 0, n, C);
  }
  const out = new Uint8Array(n * C);
  const { start, length, k, prefix, ksize } = cx;
  const dv = row.denseView();
  if (dv) {
    const src = dv.data;
    const base = dv.offset;
    if (C === 3) {
      for (let i = 0; i < n; i++) {
        const xmin = start[i]!;
        const len = length[i]!;
        const kb = i * ksize;
        let s0 = HALF;
        let s1 = HALF;
        let s2 = HALF;
        let p = base + xmin * 3;
        for (let x = 0; x < len; x++, p += 3) {
          const kv = k[kb + x]!;
          s0 += src[p]! * kv;
          s1 += src[p + 1]! * kv;
          s2 += src[p + 2]! * kv;
        }
        const o = i * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    } else {
      const acc = new Float64Array(C);
      for (let i = 0; i < n; i++) {
        const xmin = start[i]!;
        const len = length[i]!;
        const kb = i * ksize;
        acc.fill(HALF);
        let p = base + xmin * C;
        for (let x = 0; x < len; x++, p += C) {
          const kv = k[kb + x]!;
          for (let c = 0; c < C; c++) acc[c] = acc[c]! + src[p + c]! * kv;
        }
        for (let c = 0; c < C; c++) out[i * C + c] = clip8(acc[c]!);
      }
    }
    return Row.dense(out, 0, n, C);
  }
  // Segmented row (padding): constant runs use prefix sums of the coefficients; their
  // contribution depends only on the layout, so it is shared by consecutive rows of that layout.
  const segs = row.segments;
  const nC = n * C;
  let key = '';
  for (let s = 0; s < segs.length; s++) {
    const seg = segs[s]!;
    if (seg.color) key += `${seg.x0},${seg.x1},${seg.color[0]},${seg.color[1]},${seg.color[2]},${seg.color[3]};`;
  }
  let base: Float64Array;
  if (constCache && constCache.key === key && constCache.acc) {
    base = constCache.acc;
  } else {
    base = new Float64Array(nC).fill(HALF);
    for (let s = 0; s < segs.length; s++) {
      const seg = segs[s]!;
      const color = seg.color;
      if (!color) continue;
      for (let i = 0; i < n; i++) {
        const xmin = start[i]!;
        const xend = xmin + length[i]!;
        const a = seg.x0 > xmin ? seg.x0 : xmin;
        const b = seg.x1 < xend ? seg.x1 : xend;
        if (b <= a) continue;
        const pb = i * (ksize + 1);
        const ks = prefix[pb + b - xmin]! - prefix[pb + a - xmin]!;
        for (let c = 0; c < C; c++) base[i * C + c] = base[i * C + c]! + color[c]! * ks;
      }
    }
    if (constCache) {
      constCache.key = key;
      constCache.acc = base;
      constCache.clipped = null;
    }
  }
  // outputs whose window touches a data segment: a contiguous range [iLo, iHi) (windows are monotone)
  let iLo = n;
  let iHi = 0;
  for (let s = 0; s < segs.length; s++) {
    const seg = segs[s]!;
    if (!seg.data) continue;
    // first output whose window ends after seg.x0; last output whose window starts before seg.x1
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (start[mid]! + length[mid]! > seg.x0) hi = mid;
      else lo = mid + 1;
    }
    const first = lo;
    lo = 0;
    hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (start[mid]! < seg.x1) lo = mid + 1;
      else hi = mid;
    }
    if (first < lo) {
      if (first < iLo) iLo = first;
      if (lo > iHi) iHi = lo;
    }
  }
  if (iHi <= iLo) iLo = iHi = 0;
  const acc = base.slice(iLo * C, iHi * C);
  for (let s = 0; s < segs.length; s++) {
    const seg = segs[s]!;
    const d = seg.data;
    if (!d) continue;
    for (let i = iLo; i < iHi; i++) {
      const xmin = start[i]!;
      const xend = xmin + length[i]!;
      const a = seg.x0 > xmin ? seg.x0 : xmin;
      const b = seg.x1 < xend ? seg.x1 : xend;
      if (b <= a) continue;
      const kb = i * ksize - xmin;
      const q = (i - iLo) * C;
      let p = seg.offset + (a - seg.x0) * C;
      for (let x = a; x < b; x++, p += C) {
        const kv = k[kb + x]!;
        for (let c = 0; c < C; c++) acc[q + c] = acc[q + c]! + d[p + c]! * kv;
      }
    }
  }
  // the constant-only outputs are the same for every row of this layout: one shared buffer
  let shared: Uint8Array;
  if (constCache && constCache.key === key && constCache.clipped) {
    shared = constCache.clipped;
  } else {
    shared = new Uint8Array(nC);
    for (let q = 0; q < nC; q++) shared[q] = clip8(base[q]!);
    if (constCache) constCache.clipped = shared;
  }
  const mid = new Uint8Array((iHi - iLo) * C);
  for (let q = 0; q < mid.length; q++) mid[q] = clip8(acc[q]!);
  return Row.fromSegments(n, C, [
    { x0: 0, x1: iLo, color: null, data: shared, offset: 0 },
    { x0: iLo, x1: iHi, color: null, data: mid, offset: 0 },
    { x0: iHi, x1: n, color: null, data: shared, offset: iHi * C },
  ]);
}

/** Shared contribution of constant segments, reused while consecutive rows keep one layout. */
export interface ConstSegmentCache {
  key: string;
  acc: Float64Array | null;
  clipped?: Uint8Array | null;
}

/**
 * One Pillow convolution resize (`Image.resize((outW, outH), filter)` on an 8-bit image) as a
 * streaming stage producing only `region` of the output. Memory: one window of horizontally
 * resampled rows (`ksize_vert × region width`), never the input or output canvas.
 */
export class ConvolutionResize implements RowSource {
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  private readonly cx: AxisCoefficients | null;
  private readonly cy: AxisCoefficients | null;
  private readonly region: Region;
  private readonly cache = new Map<number, Row>();
  private cacheLow = 0;
  private lastIn: Row | null = null;
  private lastOut: Row | null = null;
  private readonly constCache: ConstSegmentCache = { key: '', acc: null };

  constructor(
    readonly src: RowSource,
    readonly outWidth: number,
    readonly outHeight: number,
    readonly filter: ConvolutionFilter,
    region?: Region,
  ) {
    const r = region ?? { x0: 0, y0: 0, x1: outWidth, y1: outHeight };
    if (!(r.x0 >= 0 && r.y0 >= 0 && r.x1 <= outWidth && r.y1 <= outHeight && r.x1 > r.x0 && r.y1 > r.y0)) {
      throw new RangeError(
        `region [${r.x0}, ${r.x1}) × [${r.y0}, ${r.y1}) is not inside the ${outWidth}×${outHeight} output`,
      );
    }
    this.region = r;
    this.width = r.x1 - r.x0;
    this.height = r.y1 - r.y0;
    this.channels = src.channels;
    // Pillow: need_horizontal = xsize != imIn->xsize (box is the full image here)
    this.cx = outWidth !== src.width ? axisCoefficients(src.width, outWidth, filter, r.x0, r.x1) : null;
    this.cy = outHeight !== src.height ? axisCoefficients(src.height, outHeight, filter, r.y0, r.y1) : null;
  }

  /** Input row `y` after the horizontal pass (cached within the vertical window). */
  private temp(y: number): Row {
    const hit = this.cache.get(y);
    if (hit) return hit;
    const r = this.src.row(y);
    let out: Row;
    if (r === this.lastIn && this.lastOut) {
      out = this.lastOut;
    } else {
      out = this.cx ? resampleRowHorizontal(r, this.cx, this.constCache) : r.slice(this.region.x0, this.region.x1);
      this.lastIn = r;
      this.lastOut = out;
    }
    this.cache.set(y, out);
    return out;
  }

  private evictBelow(y: number): void {
    if (y < this.cacheLow) {
      // a request went backwards: rows are recomputed on demand, start over
      this.cache.clear();
      this.cacheLow = y;
      return;
    }
    for (let i = this.cacheLow; i < y; i++) this.cache.delete(i);
    this.cacheLow = y;
  }

  row(j: number): Row {
    const cy = this.cy;
    if (!cy) {
      const r = this.temp(this.region.y0 + j);
      this.evictBelow(this.region.y0 + j);
      return r;
    }
    const ymin = cy.start[j]!;
    const len = cy.length[j]!;
    const kb = j * cy.ksize;
    this.evictBelow(ymin);
    // group runs of identical row objects (padding, stretched rows): Σk·row is exact integer math
    const rows: Row[] = [];
    const ks: number[] = [];
    let allConst = true;
    for (let t = 0; t < len; t++) {
      const r = this.temp(ymin + t);
      const kv = cy.k[kb + t]!;
      if (rows.length > 0 && rows[rows.length - 1] === r) {
        ks[ks.length - 1]! += kv;
      } else {
        rows.push(r);
        ks.push(kv);
        if (!r.constColor()) allConst = false;
      }
    }
    const C = this.channels;
    const W = this.width;
    if (rows.length === 1 && ks[0] === ONE) return rows[0]!; // (2^21 + v·2^22) >> 22 = v
    if (!allConst) {
      const aligned = alignedVertical(rows, ks, W, C);
      if (aligned) return aligned;
    }
    const base = new Float64Array(C).fill(HALF);
    const dense: { data: Uint8Array; offset: number }[] = [];
    const denseK: number[] = [];
    for (let g = 0; g < rows.length; g++) {
      const color = rows[g]!.constColor();
      if (color) {
        for (let c = 0; c < C; c++) base[c]! += color[c]! * ks[g]!;
      } else {
        dense.push(rows[g]!.toDense());
        denseK.push(ks[g]!);
      }
    }
    if (allConst) {
      const color = new Uint8Array(C);
      for (let c = 0; c < C; c++) color[c] = clip8(base[c]!);
      return Row.constant(color, W);
    }
    const n = W * C;
    // int32 accumulation as in Resample.c: every partial sum is bounded by 255·Σ|k| + 2^21 < 2^31
    const acc = new Int32Array(n);
    for (let c = 0; c < C; c++) {
      const b = base[c]!;
      for (let p = c; p < n; p += C) acc[p] = b;
    }
    for (let g = 0; g < dense.length; g++) {
      const { data, offset } = dense[g]!;
      const kv = denseK[g]!;
      for (let p = 0; p < n; p++) acc[p] = (acc[p]! + data[offset + p]! * kv) | 0;
    }
    const out = new Uint8Array(n);
    for (let p = 0; p < n; p++) {
      const v = acc[p]! >> PRECISION_BITS;
      out[p] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    return Row.dense(out, 0, W, C);
  }
}

/**
 * Vertical pass over rows that share one segment layout (same bounds per segment index), e.g. the
 * horizontally resampled rows of a padded canvas: a column range whose bytes are the same buffer in
 * every row is computed once from Σk; the others are accumulated over their columns only.
 * Returns null when the layouts differ.
 */
function alignedVertical(rows: Row[], ks: number[], W: number, C: number): Row | null {
  const first = rows[0]!.segments;
  const L = first.length;
  if (L < 2) return null;
  for (let g = 1; g < rows.length; g++) {
    const segs = rows[g]!.segments;
    if (segs.length !== L) return null;
    for (let s = 0; s < L; s++) if (segs[s]!.x0 !== first[s]!.x0 || segs[s]!.x1 !== first[s]!.x1) return null;
  }
  let total = 0;
  for (const kv of ks) total += kv;
  const out = new Uint8Array(W * C);
  for (let s = 0; s < L; s++) {
    const ref = first[s]!;
    const width = (ref.x1 - ref.x0) * C;
    let same = true;
    for (let g = 1; g < rows.length && same; g++) {
      const seg = rows[g]!.segments[s]!;
      same = seg.data === ref.data && seg.offset === ref.offset && seg.color === ref.color;
    }
    const o = ref.x0 * C;
    if (same) {
      for (let q = 0; q < width; q++) {
        const v = ref.color ? ref.color[q % C]! : ref.data![ref.offset + q]!;
        out[o + q] = clip8(HALF + v * total);
      }
      continue;
    }
    const acc = new Int32Array(width).fill(HALF);
    for (let g = 0; g < rows.length; g++) {
      const seg = rows[g]!.segments[s]!;
      const kv = ks[g]!;
      if (seg.color) {
        for (let q = 0; q < width; q++) acc[q] = (acc[q]! + seg.color[q % C]! * kv) | 0;
      } else {
        const d = seg.data!;
        const off = seg.offset;
        for (let q = 0; q < width; q++) acc[q] = (acc[q]! + d[off + q]! * kv) | 0;
      }
    }
    for (let q = 0; q < width; q++) {
      const v = acc[q]! >> PRECISION_BITS;
      out[o + q] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return Row.dense(out, 0, W, C);
}

/**
 * Pillow's NEAREST resize (`ImagingScaleAffine`): source column of output x is
 * `int(xo)` with `xo` accumulated in float64 from `a0·0.5` in steps of `a0 = inW / outW` (the
 * accumulation, not `(x + 0.5)·a0`, is what Pillow computes). The same for rows.
 */
export class NearestResize implements RowSource {
  readonly channels: number;
  private readonly xin: Int32Array;
  private readonly yin: Int32Array;
  private lastY = -1;
  private lastRow: Row | null = null;

  constructor(
    readonly src: RowSource,
    readonly width: number,
    readonly height: number,
  ) {
    this.channels = src.channels;
    this.xin = NearestResize.table(src.width, width);
    this.yin = NearestResize.table(src.height, height);
  }

  private static table(inSize: number, outSize: number): Int32Array {
    const a = Math.fround(inSize) / outSize;
    const t = new Int32Array(outSize);
    let o = a * 0.5;
    for (let i = 0; i < outSize; i++) {
      const v = o < 0 ? -1 : Math.trunc(o);
      t[i] = v < 0 ? 0 : v >= inSize ? inSize - 1 : v;
      o += a;
    }
    return t;
  }

  row(y: number): Row {
    const sy = this.yin[y]!;
    if (sy === this.lastY && this.lastRow) return this.lastRow;
    const r = this.src.row(sy);
    const C = this.channels;
    let out: Row;
    const color = r.constColor();
    if (color && r.width > 1) {
      out = Row.constant(color, this.width);
    } else {
      const { data, offset } = r.toDense();
      const buf = new Uint8Array(this.width * C);
      for (let x = 0; x < this.width; x++) {
        const p = offset + this.xin[x]! * C;
        for (let c = 0; c < C; c++) buf[x * C + c] = data[p + c]!;
      }
      out = Row.dense(buf, 0, this.width, C);
    }
    this.lastY = sy;
    this.lastRow = out;
    return out;
  }
}

/**
 * `Image.resize((width, height), resample)` for an 8-bit image of a mode Pillow resamples directly
 * (L, RGB, CMYK, RGBa, La): a copy when the size is unchanged, NEAREST through
 * {@link NearestResize}, otherwise {@link ConvolutionResize}.
 */
export function pillowResize(
  src: RowSource,
  width: number,
  height: number,
  resample: Resampling,
  region?: Region,
): RowSource {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resize target must be positive integers, got ${width}×${height}`);
  }
  if (width === src.width && height === src.height && !region) return src;
  if (resample === Resampling.NEAREST) {
    const full = new NearestResize(src, width, height);
    return region ? new CropRows(full, region) : full;
  }
  return new ConvolutionResize(src, width, height, FILTERS[resample], region);
}

/** Rows `[y0, y1)` and columns `[x0, x1)` of a source. */
export class CropRows implements RowSource {
  readonly width: number;
  readonly height: number;
  readonly channels: number;

  constructor(
    readonly src: RowSource,
    readonly region: Region,
  ) {
    this.width = region.x1 - region.x0;
    this.height = region.y1 - region.y0;
    this.channels = src.channels;
  }

  row(y: number): Row {
    return this.src.row(this.region.y0 + y).slice(this.region.x0, this.region.x1);
  }
}

/**
 * Reads every row of `src` into a planar (CHW) uint8 buffer of `channels × height × width`,
 * placing the image at `(top, left)` inside an `outH × outW` zero canvas (transformers'
 * center-crop padding); `channels` must equal `src.channels`.
 */
export function readPlanar(src: RowSource, outH = src.height, outW = src.width, top = 0, left = 0): Uint8Array {
  const C = src.channels;
  const plane = outH * outW;
  const out = new Uint8Array(C * plane);
  for (let y = 0; y < src.height; y++) {
    const oy = y + top;
    if (oy < 0 || oy >= outH) continue;
    const r = src.row(y);
    const color = r.constColor();
    if (color && r.width > 1) {
      for (let c = 0; c < C; c++) {
        const b = c * plane + oy * outW;
        out.fill(color[c]!, b + Math.max(0, left), b + Math.min(outW, left + src.width));
      }
      continue;
    }
    const { data, offset } = r.toDense();
    for (let x = 0; x < src.width; x++) {
      const ox = x + left;
      if (ox < 0 || ox >= outW) continue;
      const p = offset + x * C;
      for (let c = 0; c < C; c++) out[c * plane + oy * outW + ox] = data[p + c]!;
    }
  }
  return out;
}
