/**
 * The streaming pipeline (segments, constant rows, shared rows, cropped regions) against a plain
 * full-canvas reference written here from Pillow 9.4's algorithm (Resample.c two-pass resize with
 * its pass skipping, Geometry.c NEAREST, Convert.c premultiply/CMYK, mm_utils.expand2square,
 * transformers center_crop with its padding branch), on random images of awkward sizes.
 */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '@owlet/test-utils';

import { resolvePreprocessorConfig, type PreprocessorConfig } from './config.js';
import { firstDiff } from './fixtures.test-helpers.js';
import { MODE_CHANNELS, type DecodedImage, type PillowMode } from './image.js';
import { preprocessToUint8, shortestEdgeSize, type EntryPoint } from './pipeline.js';
import { axisCoefficients, FILTERS, Resampling } from './resample.js';
import { resizeImage } from './resize-image.js';

interface Img {
  w: number;
  h: number;
  c: number;
  d: Uint8Array;
}

const bicubic = (x: number): number => {
  x = Math.abs(x);
  if (x < 1) return (1.5 * x - 2.5) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
};

/** precompute_coeffs + normalize_coeffs_8bpc for all outputs. */
function refCoeffs(inSize: number, outSize: number): { lo: number[]; k: number[][] } {
  const scale = inSize / outSize;
  const fscale = Math.max(1, scale);
  const support = 2 * fscale;
  const lo: number[] = [];
  const k: number[][] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
    const w: number[] = [];
    for (let x = xmin; x < xmax; x++) w.push(bicubic((x - center + 0.5) * (1 / fscale)));
    const ww = w.reduce((a, b) => a + b, 0);
    lo.push(xmin);
    k.push(
      w
        .map((v) => (ww !== 0 ? v / ww : v))
        .map((v) => (v < 0 ? Math.trunc(-0.5 + v * 4194304) + 0 : Math.trunc(0.5 + v * 4194304))),
    );
  }
  return { lo, k };
}

const clip8 = (acc: number) => Math.min(255, Math.max(0, Math.floor(acc / 4194304)));

/** Full-canvas Pillow BICUBIC resize: horizontal pass on the used rows, then vertical. */
function refResize(im: Img, ow: number, oh: number): Img {
  if (ow === im.w && oh === im.h) return { ...im, d: im.d.slice() };
  let cur = im;
  const cy = refCoeffs(im.h, oh);
  if (ow !== im.w) {
    const cx = refCoeffs(im.w, ow);
    const out = new Uint8Array(ow * im.h * im.c);
    for (let y = 0; y < im.h; y++)
      for (let o = 0; o < ow; o++)
        for (let c = 0; c < im.c; c++) {
          let acc = 2097152;
          cx.k[o]!.forEach((kv, t) => {
            acc += kv * im.d[(y * im.w + cx.lo[o]! + t) * im.c + c]!;
          });
          out[(y * ow + o) * im.c + c] = clip8(acc);
        }
    cur = { w: ow, h: im.h, c: im.c, d: out };
  }
  if (oh !== im.h) {
    const out = new Uint8Array(cur.w * oh * cur.c);
    for (let o = 0; o < oh; o++)
      for (let x = 0; x < cur.w; x++)
        for (let c = 0; c < cur.c; c++) {
          let acc = 2097152;
          cy.k[o]!.forEach((kv, t) => {
            acc += kv * cur.d[((cy.lo[o]! + t) * cur.w + x) * cur.c + c]!;
          });
          out[(o * cur.w + x) * cur.c + c] = clip8(acc);
        }
    cur = { w: cur.w, h: oh, c: cur.c, d: out };
  }
  return cur;
}

function refNearest(im: Img, ow: number, oh: number): Img {
  const table = (n: number, m: number) => {
    const a = n / m;
    const t: number[] = [];
    let o = a * 0.5;
    for (let i = 0; i < m; i++, o += a) t.push(Math.trunc(o));
    return t;
  };
  const tx = table(im.w, ow);
  const ty = table(im.h, oh);
  const out = new Uint8Array(ow * oh * im.c);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++)
      for (let c = 0; c < im.c; c++) out[(y * ow + x) * im.c + c] = im.d[(ty[y]! * im.w + tx[x]!) * im.c + c]!;
  return { w: ow, h: oh, c: im.c, d: out };
}

const muldiv255 = (a: number, b: number) => {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
};

function refToRGB(im: Img, mode: PillowMode): Img {
  const out = new Uint8Array(im.w * im.h * 3);
  for (let i = 0; i < im.w * im.h; i++) {
    const p = im.d.subarray(i * im.c, i * im.c + im.c);
    let rgb: number[];
    if (mode === 'L' || mode === 'LA') rgb = [p[0]!, p[0]!, p[0]!];
    else if (mode === '1') rgb = [p[0] ? 255 : 0, p[0] ? 255 : 0, p[0] ? 255 : 0];
    else if (mode === 'CMYK') {
      const nk = 255 - p[3]!;
      rgb = [0, 1, 2].map((c) => Math.min(255, Math.max(0, nk - muldiv255(p[c]!, nk))));
    } else rgb = [p[0]!, p[1]!, p[2]!];
    out.set(rgb, i * 3);
  }
  return { w: im.w, h: im.h, c: 3, d: out };
}

function refPremultiplied(im: Img, r: number): Img {
  const pre = im.d.slice();
  for (let i = 0; i < im.w * im.h; i++) {
    const a = pre[i * im.c + im.c - 1]!;
    for (let c = 0; c < im.c - 1; c++) pre[i * im.c + c] = muldiv255(pre[i * im.c + c]!, a);
  }
  const res = refResize({ ...im, d: pre }, r, r);
  for (let i = 0; i < r * r; i++) {
    const a = res.d[i * im.c + im.c - 1]!;
    if (a === 0 || a === 255) continue;
    for (let c = 0; c < im.c - 1; c++)
      res.d[i * im.c + c] = Math.min(255, Math.floor((255 * res.d[i * im.c + c]!) / a));
  }
  return res;
}

function refExpand2square(im: Img, bg: number[]): Img {
  if (im.w === im.h) return im;
  const s = Math.max(im.w, im.h);
  const out = new Uint8Array(s * s * 3);
  for (let i = 0; i < s * s; i++) out.set(bg, i * 3);
  const ox = im.w > im.h ? 0 : Math.floor((im.h - im.w) / 2);
  const oy = im.w > im.h ? Math.floor((im.w - im.h) / 2) : 0;
  for (let y = 0; y < im.h; y++) out.set(im.d.subarray(y * im.w * 3, (y + 1) * im.w * 3), ((y + oy) * s + ox) * 3);
  return { w: s, h: s, c: 3, d: out };
}

/** transformers center_crop (channels-first logic, including the zero-padding branch), to CHW. */
function refClip(im: Img, cfg: PreprocessorConfig): { data: Uint8Array; h: number; w: number } {
  const [nh, nw] = shortestEdgeSize(im.h, im.w, cfg.shortest_edge);
  const r = refResize(im, nw, nh);
  const ch = cfg.crop_height;
  const cw = cfg.crop_width;
  let top = Math.floor((r.h - ch) / 2);
  let left = Math.floor((r.w - cw) / 2);
  let bottom = top + ch;
  let right = left + cw;
  let canvas = r;
  let H = r.h;
  let W = r.w;
  if (!(top >= 0 && bottom <= r.h && left >= 0 && right <= r.w)) {
    H = Math.max(ch, r.h);
    W = Math.max(cw, r.w);
    const tp = Math.floor((H - r.h) / 2);
    const lp = Math.floor((W - r.w) / 2);
    const d = new Uint8Array(H * W * 3);
    for (let y = 0; y < r.h; y++) d.set(r.d.subarray(y * r.w * 3, (y + 1) * r.w * 3), ((y + tp) * W + lp) * 3);
    canvas = { w: W, h: H, c: 3, d };
    top += tp;
    bottom += tp;
    left += lp;
    right += lp;
    top = Math.max(0, top);
    bottom = Math.min(H, bottom);
    left = Math.max(0, left);
    right = Math.min(W, right);
  }
  const h = bottom - top;
  const w = right - left;
  const out = new Uint8Array(3 * h * w);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) out[c * h * w + y * w + x] = canvas.d[((y + top) * canvas.w + x + left) * 3 + c]!;
  return { data: out, h, w };
}

function refPipeline(img: DecodedImage, entry: EntryPoint, cfg: PreprocessorConfig) {
  const im: Img = { w: img.width, h: img.height, c: MODE_CHANNELS[img.mode], d: img.data };
  if (entry === 'v1') {
    const r = cfg.resolution;
    let res: Img;
    if (img.width === r && img.height === r) res = im;
    else if (img.mode === 'P' || img.mode === '1') res = refNearest(im, r, r);
    else if (img.mode === 'RGBA' || img.mode === 'LA') res = refPremultiplied(im, r);
    else res = refResize(im, r, r);
    return refClip(refToRGB(res, img.mode), cfg);
  }
  const rgb = refToRGB(im, img.mode);
  if (entry === 'pad') return refClip(refExpand2square(rgb, [122, 116, 104]), cfg);
  if (entry === 'resize') {
    const m = Math.max(img.width, img.height);
    return refClip(refResize(rgb, m, m), cfg);
  }
  return refClip(rgb, cfg);
}

function randomImage(w: number, h: number, mode: PillowMode, seed: number): DecodedImage {
  const rnd = mulberry32(seed);
  const c = MODE_CHANNELS[mode];
  const data = new Uint8Array(w * h * c);
  for (let i = 0; i < data.length; i++) {
    // smooth field + noise + saturated patches, so clipping and rounding both occur
    const p = Math.floor(i / c);
    const x = p % w;
    const y = Math.floor(p / w);
    const base = 128 + 100 * Math.sin(x * 0.7 + y * 0.3 + (i % c));
    data[i] = Math.max(0, Math.min(255, Math.round(base + 60 * (rnd() - 0.5)) + (rnd() < 0.05 ? 200 : 0)));
  }
  if (mode === '1') for (let i = 0; i < data.length; i++) data[i] = data[i]! > 127 ? 255 : 0;
  if (mode === 'RGBA' || mode === 'LA')
    for (let i = c - 1; i < data.length; i += c) data[i] = rnd() < 0.2 ? 0 : rnd() < 0.2 ? 255 : data[i]!;
  return { width: w, height: h, mode, data };
}

const small = resolvePreprocessorConfig({ size: 12, crop_size: 12, resolution: 10 });
const wideCrop = resolvePreprocessorConfig({ size: 9, crop_size: { height: 14, width: 11 }, resolution: 9 });
const SIZES: [number, number][] = [
  [1, 1],
  [1, 2],
  [2, 1],
  [1, 37],
  [37, 1],
  [2, 45],
  [45, 2],
  [3, 40],
  [40, 3],
  [17, 5],
  [5, 17],
  [9, 9],
  [12, 12],
  [30, 20],
  [13, 64],
];

describe('streaming pipeline = full-canvas Pillow reference', () => {
  for (const entry of ['pad', 'resize', 'clip_default', 'v1'] as const) {
    for (const cfg of [small, wideCrop]) {
      it(`${entry}, crop ${cfg.crop_height}×${cfg.crop_width}, ${SIZES.length} sizes`, () => {
        SIZES.forEach(([w, h], i) => {
          const img = randomImage(w, h, 'RGB', 1000 + i);
          const ours = preprocessToUint8(img, cfg, { entryPoint: entry });
          const ref = refPipeline(img, entry, cfg);
          expect([ours.height, ours.width], `${w}×${h}`).toEqual([ref.h, ref.w]);
          expect(firstDiff(ours.data, ref.data), `${entry} ${w}×${h}`).toBeNull();
        });
      });
    }
  }

  for (const mode of ['L', 'LA', 'RGBA', 'P', '1', 'CMYK'] as const) {
    it(`mode ${mode}: v1 (own-mode resize) and pad match the reference`, () => {
      for (const [w, h] of [
        [23, 14],
        [7, 31],
        [10, 10],
        [3, 3],
      ] as const) {
        const img = randomImage(w, h, mode, w * 31 + h);
        for (const entry of ['v1', 'pad'] as const) {
          const ours = preprocessToUint8(img, small, { entryPoint: entry });
          expect(firstDiff(ours.data, refPipeline(img, entry, small).data), `${mode} ${entry} ${w}×${h}`).toBeNull();
        }
      }
    });
  }

  it('released 448 config: 1×600, 600×1, 3×500 through pad and resize (large downscale windows)', () => {
    const v2 = resolvePreprocessorConfig({ size: 448, crop_size: 448 });
    for (const [w, h] of [
      [1, 600],
      [600, 1],
      [3, 500],
    ] as const) {
      const img = randomImage(w, h, 'RGB', w + h);
      for (const entry of ['pad', 'resize'] as const) {
        const ours = preprocessToUint8(img, v2, { entryPoint: entry });
        expect(firstDiff(ours.data, refPipeline(img, entry, v2).data), `${entry} ${w}×${h}`).toBeNull();
      }
    }
  });

  it('resizeImage equals the reference for up- and downscaling, both axes and one axis', () => {
    const img = randomImage(19, 11, 'RGB', 7);
    const im: Img = { w: 19, h: 11, c: 3, d: img.data };
    for (const [ow, oh] of [
      [7, 5],
      [40, 23],
      [19, 30],
      [5, 11],
      [1, 1],
      [19, 11],
    ] as const) {
      expect(firstDiff(resizeImage(img, ow, oh).data, refResize(im, ow, oh).d), `${ow}×${oh}`).toBeNull();
    }
  });

  it('the fused fallback of `resize` for huge elongated images is flagged and stays close', () => {
    const img = randomImage(6, 90, 'RGB', 99);
    const exact = preprocessToUint8(img, small, { entryPoint: 'resize' });
    const fused = preprocessToUint8(img, small, { entryPoint: 'resize', maxExactStretchPixels: 100 });
    expect(exact.exact).toBe(true);
    expect(fused.exact).toBe(false);
    let maxAbs = 0;
    for (let i = 0; i < fused.data.length; i++) maxAbs = Math.max(maxAbs, Math.abs(fused.data[i]! - exact.data[i]!));
    console.log(`[preprocess] fused resize fallback vs exact (6×90 random, 12 px): max abs ${maxAbs} levels`);
    expect(maxAbs).toBeGreaterThan(0);
    expect(maxAbs).toBeLessThan(64);
  });

  it('coefficients: each output sums to 2^22 within rounding, bounds as Pillow rounds them', () => {
    for (const [i, o] of [
      [640, 448],
      [65535, 448],
      [1, 448],
      [5, 17],
    ] as const) {
      const cx = axisCoefficients(i, o, FILTERS[Resampling.BICUBIC]);
      const ref = refCoeffs(i, o);
      for (let t = 0; t < o; t++) {
        expect(cx.start[t]).toBe(ref.lo[t]);
        expect(Array.from(cx.k.subarray(t * cx.ksize, t * cx.ksize + cx.length[t]!))).toEqual(ref.k[t]);
        expect(Math.abs(cx.sum[t]! - 4194304)).toBeLessThanOrEqual(cx.length[t]!);
      }
    }
  });
});
