/**
 * The official preprocessing entry points of mPLUG-Owl2 and mPLUG-Owl v1, each followed by the
 * `CLIPImageProcessor` steps, computed as a streaming composition (see rows.ts) that equals
 * Pillow's output byte for byte without building the long-edge square.
 */
import { OwletError } from '@owlet/core';

import type { PreprocessorConfig } from './config.js';
import { imageRows, premultiply, rgbRows, unpremultiply, validateImage, type DecodedImage } from './image.js';
import { NearestResize, Resampling, pillowResize, readPlanar, type Region } from './resample.js';
import { MapRows, PadToSquare, type RowSource } from './rows.js';

/**
 * Which official pre-step runs before the CLIP steps:
 * - `pad`: mPLUG-Owl2 `serve/cli.py` default (`--image-aspect-ratio pad`): `convert('RGB')`,
 *   `expand2square` with `int(255·mean)` = (122, 116, 104);
 * - `resize`: mPLUG-Owl2 README / `evaluate/*.py`: `convert('RGB')`, `img.resize((m, m))` (BICUBIC),
 *   m = max(W, H);
 * - `v1`: mPLUG-Owl `MplugOwlProcessor`: `img.resize((r, r), 3)` in the file's own mode
 *   (P and 1 with NEAREST, RGBA/LA premultiplied), then RGB;
 * - `clip_default`: `convert('RGB')` and the plain CLIP steps (model_worker without
 *   `image_aspect_ratio`).
 */
export type EntryPoint = 'pad' | 'resize' | 'v1' | 'clip_default';

/** Options of {@link preprocessToUint8}. */
export interface PipelineOptions {
  /** The official entry point (default `pad` for v2 configs). */
  entryPoint: EntryPoint;
  /** Padding colour of `pad`; default `int(255·mean)` per channel, i.e. (122, 116, 104). */
  padColor?: readonly [number, number, number];
  /**
   * `resize` only: the largest max(W,H)² for which the stretch to the long-edge square is
   * reproduced exactly (streamed, so memory stays bounded either way; time grows as max(W,H)²).
   * Above it (elongated images with a long edge > √limit whose short edge is > 1) the stretch and
   * the CLIP resize are fused into one Pillow resize from the source, which differs from the
   * official output by a few uint8 levels. Default 2^26 (a long edge of 8192).
   */
  maxExactStretchPixels?: number;
}

/** Planar uint8 output of the pipeline before rescale/normalise. */
export interface Uint8Planar {
  /** `[3, height, width]`, RGB, CHW. */
  readonly data: Uint8Array;
  readonly height: number;
  readonly width: number;
  /** False when the `maxExactStretchPixels` fallback was taken (not bit-identical to Pillow). */
  readonly exact: boolean;
}

/** Default of {@link PipelineOptions.maxExactStretchPixels}. */
export const DEFAULT_MAX_EXACT_STRETCH_PIXELS = 2 ** 26;

/**
 * transformers' `get_resize_output_image_size(image, size, default_to_square=False)`: the short
 * edge becomes `size`, the long edge `int(size·long/short)`. Returns `[height, width]`.
 */
export function shortestEdgeSize(height: number, width: number, size: number): [number, number] {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  if (short === size) return [height, width];
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? [newLong, size] : [size, newLong];
}

interface CropPlan {
  outH: number;
  outW: number;
  /** Rows/columns of the (resized) image that land in the output. */
  region: Region;
  dstTop: number;
  dstLeft: number;
}

/** transformers' `center_crop` (offsets `(H−h)//2`, `(W−w)//2`, zero padding when too small). */
export function centerCropPlan(h: number, w: number, ch: number, cw: number): CropPlan {
  const top = Math.floor((h - ch) / 2);
  const left = Math.floor((w - cw) / 2);
  if (top >= 0 && top + ch <= h && left >= 0 && left + cw <= w) {
    return { outH: ch, outW: cw, region: { y0: top, y1: top + ch, x0: left, x1: left + cw }, dstTop: 0, dstLeft: 0 };
  }
  const newH = Math.max(ch, h);
  const newW = Math.max(cw, w);
  const topPad = Math.floor((newH - h) / 2);
  const leftPad = Math.floor((newW - w) / 2);
  const ys = Math.max(0, top + topPad);
  const ye = Math.min(newH, top + ch + topPad);
  const xs = Math.max(0, left + leftPad);
  const xe = Math.min(newW, left + cw + leftPad);
  // canvas row Y holds image row Y − topPad
  const region = {
    y0: Math.max(0, ys - topPad),
    y1: Math.min(h, ye - topPad),
    x0: Math.max(0, xs - leftPad),
    x1: Math.min(w, xe - leftPad),
  };
  return { outH: ye - ys, outW: xe - xs, region, dstTop: region.y0 + topPad - ys, dstLeft: region.x0 + leftPad - xs };
}

/**
 * The CLIPImageProcessor geometry on an RGB source: shortest-edge resize (Pillow, `resample`),
 * center crop, read out as planar uint8. `assumeSize` makes the resize target be computed for a
 * source of that size (used by the `resize` fallback, where the source stands in for its stretch).
 */
function clipGeometry(src: RowSource, cfg: PreprocessorConfig, assumeSize?: [number, number]): Uint8Planar {
  const [h0, w0] = assumeSize ?? [src.height, src.width];
  const [h, w] = cfg.do_resize ? shortestEdgeSize(h0, w0, cfg.shortest_edge) : [h0, w0];
  const plan = cfg.do_center_crop
    ? centerCropPlan(h, w, cfg.crop_height, cfg.crop_width)
    : { outH: h, outW: w, region: { y0: 0, y1: h, x0: 0, x1: w }, dstTop: 0, dstLeft: 0 };
  const { region } = plan;
  if (region.y1 <= region.y0 || region.x1 <= region.x0) {
    return { data: new Uint8Array(3 * plan.outH * plan.outW), height: plan.outH, width: plan.outW, exact: true };
  }
  const full = region.x0 === 0 && region.y0 === 0 && region.x1 === w && region.y1 === h;
  const rows = pillowResize(src, w, h, cfg.resample, full ? undefined : region);
  const data = readPlanar(rows, plan.outH, plan.outW, plan.dstTop, plan.dstLeft);
  return { data, height: plan.outH, width: plan.outW, exact: true };
}

/** The v1 pre-step: `img.resize((r, r), 3)` in the image's own mode, then `convert('RGB')`. */
function v1Stretch(img: DecodedImage, r: number): RowSource {
  const src = imageRows(img);
  if (img.width === r && img.height === r) return rgbRows(src, img.mode); // Pillow returns a copy
  switch (img.mode) {
    case 'P':
    case '1':
      return rgbRows(new NearestResize(src, r, r), img.mode);
    case 'RGBA':
    case 'LA': {
      const ch = img.mode === 'RGBA' ? 4 : 2;
      const pre = new MapRows(src, ch, premultiply(ch));
      const resized = pillowResize(pre, r, r, Resampling.BICUBIC);
      return rgbRows(new MapRows(resized, ch, unpremultiply(ch)), img.mode);
    }
    default:
      return rgbRows(pillowResize(src, r, r, Resampling.BICUBIC), img.mode);
  }
}

/**
 * Runs an entry point and the CLIP geometry (resize + center crop) on a decoded image: the exact
 * uint8 pixels the official processor rescales and normalises, as `[3, H, W]` RGB.
 */
export function preprocessToUint8(img: DecodedImage, cfg: PreprocessorConfig, options: PipelineOptions): Uint8Planar {
  validateImage(img);
  const { entryPoint } = options;
  switch (entryPoint) {
    case 'pad': {
      const rgb = rgbRows(imageRows(img), img.mode);
      const color =
        options.padColor ?? (cfg.image_mean.map((m) => Math.trunc(255 * m)) as unknown as [number, number, number]);
      if (!color.every((c) => Number.isInteger(c) && c >= 0 && c <= 255)) {
        throw new OwletError(
          'INVALID_ARGUMENT',
          `padColor must be three integers in [0, 255], got ${JSON.stringify(color)}`,
        );
      }
      const square = img.width === img.height ? rgb : new PadToSquare(rgb, Uint8Array.from(color));
      return clipGeometry(square, cfg);
    }
    case 'resize': {
      const rgb = rgbRows(imageRows(img), img.mode);
      const m = Math.max(img.width, img.height);
      if (img.width === img.height) return clipGeometry(rgb, cfg);
      const limit = options.maxExactStretchPixels ?? DEFAULT_MAX_EXACT_STRETCH_PIXELS;
      // a 1-pixel-wide (or -high) source stretches to constant rows: exact at any size
      const cheap = Math.min(img.width, img.height) === 1;
      if (!cheap && m * m > limit) {
        return { ...clipGeometry(rgb, cfg, [m, m]), exact: false };
      }
      return clipGeometry(pillowResize(rgb, m, m, Resampling.BICUBIC), cfg);
    }
    case 'v1':
      return clipGeometry(v1Stretch(img, cfg.resolution), cfg);
    case 'clip_default':
      return clipGeometry(rgbRows(imageRows(img), img.mode), cfg);
    default:
      throw new OwletError(
        'INVALID_ARGUMENT',
        `unknown entry point ${JSON.stringify(entryPoint)}; expected pad, resize, v1 or clip_default`,
      );
  }
}

/**
 * The rescale + normalise table: `LUT[c·256 + v]` is transformers' float32 result for channel c and
 * uint8 value v: `float32(v · factor)` (the product in float64), then `(x − mean) / std` in float32.
 * `pixel_values = LUT[u8]` bit for bit.
 */
export function pixelLUT(cfg: PreprocessorConfig): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (const c of [0, 1, 2] as const) {
    const mean = Math.fround(cfg.image_mean[c]);
    const std = Math.fround(cfg.image_std[c]);
    for (let v = 0; v < 256; v++) {
      let x = cfg.do_rescale ? Math.fround(v * cfg.rescale_factor) : Math.fround(v);
      if (cfg.do_normalize) x = Math.fround(Math.fround(x - mean) / std);
      lut[c * 256 + v] = x;
    }
  }
  return lut;
}

/** Applies {@link pixelLUT} to planar uint8 RGB, writing float32 into `out` at `outOffset`. */
export function applyLUT(planar: Uint8Planar, lut: Float32Array, out: Float32Array, outOffset = 0): void {
  const plane = planar.height * planar.width;
  for (let c = 0; c < 3; c++) {
    const base = c * 256;
    const src = c * plane;
    const dst = outOffset + c * plane;
    // biome-ignore lint/style/noNonNullAssertion: per-pixel loop; i < plane and a uint8 indexes the 3·256 LUT
    for (let i = 0; i < plane; i++) out[dst + i] = lut[base + planar.data[src + i]!]!;
  }
}
