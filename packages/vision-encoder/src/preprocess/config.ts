/**
 * `preprocessor_config.json` of the released checkpoints, resolved the way transformers'
 * `CLIPImageProcessor` (4.28 / 4.31) reads it.
 */
import { OwletError } from '@owlet/core';

import { Resampling } from './resample.js';

/** OpenAI CLIP mean (transformers `OPENAI_CLIP_MEAN`). */
export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
/** OpenAI CLIP std (transformers `OPENAI_CLIP_STD`). */
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** The JSON fields read from `preprocessor_config.json` (all optional; unknown fields are ignored). */
export interface PreprocessorConfigJson {
  size?: number | { shortest_edge?: number; height?: number; width?: number };
  crop_size?: number | { height?: number; width?: number };
  /** mPLUG-Owl v1: the side of the pre-stretch (`img.resize((resolution, resolution), 3)`). */
  resolution?: number;
  resample?: number;
  do_resize?: boolean;
  do_center_crop?: boolean;
  do_rescale?: boolean;
  rescale_factor?: number;
  do_normalize?: boolean;
  do_convert_rgb?: boolean;
  image_mean?: number[];
  image_std?: number[];
  [key: string]: unknown;
}

/** A validated, frozen preprocessing configuration. */
export interface PreprocessorConfig {
  /** `size.shortest_edge`: the shortest edge after the CLIP resize. */
  readonly shortest_edge: number;
  readonly crop_height: number;
  readonly crop_width: number;
  /** v1 pre-stretch side (`resolution`, default = shortest edge). */
  readonly resolution: number;
  readonly resample: Resampling;
  readonly do_resize: boolean;
  readonly do_center_crop: boolean;
  readonly do_rescale: boolean;
  readonly rescale_factor: number;
  readonly do_normalize: boolean;
  readonly image_mean: readonly [number, number, number];
  readonly image_std: readonly [number, number, number];
}

function bad(field: string, value: unknown, expected: string): never {
  throw new OwletError(
    'INVALID_CONFIG',
    `preprocessor_config.${field}: expected ${expected}, got ${JSON.stringify(value)}`,
    {
      details: { field, value },
    },
  );
}

function posInt(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) bad(field, v, 'an integer in [1, 65535]');
  return v;
}

function bool(field: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') bad(field, v, 'a boolean');
  return v;
}

function triple(
  field: string,
  v: unknown,
  dflt: readonly [number, number, number],
  positive: boolean,
): [number, number, number] {
  if (v === undefined) return [...dflt];
  if (typeof v === 'number' && Number.isFinite(v)) v = [v, v, v];
  if (
    !Array.isArray(v) ||
    v.length !== 3 ||
    !v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))
  ) {
    bad(field, v, positive ? 'three positive numbers' : 'three finite numbers');
  }
  return [v[0], v[1], v[2]];
}

/**
 * Resolves `preprocessor_config.json` fields with CLIPImageProcessor's defaults (shortest edge 224,
 * crop 224, BICUBIC, ×1/255, OpenAI CLIP mean/std). An int `size` means `{shortest_edge: size}`
 * (transformers ≥ 4.26); an int `crop_size` means a square. Throws `INVALID_CONFIG` naming the
 * field and value.
 */
export function resolvePreprocessorConfig(json: PreprocessorConfigJson = {}): PreprocessorConfig {
  if (json === null || typeof json !== 'object') bad('(root)', json, 'an object');
  let shortest = 224;
  if (json.size !== undefined) {
    if (typeof json.size === 'number') shortest = posInt('size', json.size);
    else if (json.size && typeof json.size === 'object' && json.size.shortest_edge !== undefined) {
      shortest = posInt('size.shortest_edge', json.size.shortest_edge);
    } else bad('size', json.size, 'an integer or {"shortest_edge": n} (CLIPImageProcessor requires shortest_edge)');
  } else if (json.resolution !== undefined) {
    shortest = posInt('resolution', json.resolution);
  }
  // CLIPImageProcessor's default crop_size is 224; v1's `resolution` sets both sides
  let cropH = json.resolution !== undefined ? posInt('resolution', json.resolution) : 224;
  let cropW = cropH;
  if (json.crop_size !== undefined) {
    if (typeof json.crop_size === 'number') cropH = cropW = posInt('crop_size', json.crop_size);
    else if (json.crop_size && typeof json.crop_size === 'object') {
      cropH = posInt('crop_size.height', json.crop_size.height);
      cropW = posInt('crop_size.width', json.crop_size.width);
    } else bad('crop_size', json.crop_size, 'an integer or {"height": h, "width": w}');
  }
  const resolution = json.resolution !== undefined ? posInt('resolution', json.resolution) : shortest;
  const resample = json.resample ?? Resampling.BICUBIC;
  if (typeof resample !== 'number' || !Object.values(Resampling).includes(resample as Resampling)) {
    bad('resample', resample, 'a Pillow filter id 0–5');
  }
  const factor = json.rescale_factor ?? 1 / 255;
  if (typeof factor !== 'number' || !Number.isFinite(factor) || factor <= 0)
    bad('rescale_factor', factor, 'a positive number');
  if (json.do_convert_rgb === false) bad('do_convert_rgb', false, 'true (the vision encoder needs RGB)');
  return Object.freeze({
    shortest_edge: shortest,
    crop_height: cropH,
    crop_width: cropW,
    resolution,
    resample: resample as Resampling,
    do_resize: bool('do_resize', json.do_resize, true),
    do_center_crop: bool('do_center_crop', json.do_center_crop, true),
    do_rescale: bool('do_rescale', json.do_rescale, true),
    rescale_factor: factor,
    do_normalize: bool('do_normalize', json.do_normalize, true),
    image_mean: Object.freeze(triple('image_mean', json.image_mean, CLIP_MEAN, false)),
    image_std: Object.freeze(triple('image_std', json.image_std, CLIP_STD, true)),
  }) as PreprocessorConfig;
}

/** The released mPLUG-Owl2 `preprocessor_config.json` (spec A.8): 448, BICUBIC, CLIP mean/std. */
export const OWL2_PREPROCESSOR_CONFIG: PreprocessorConfigJson = Object.freeze({
  crop_size: 448,
  do_center_crop: true,
  do_normalize: true,
  do_resize: true,
  image_mean: [...CLIP_MEAN],
  image_std: [...CLIP_STD],
  resample: 3,
  size: 448,
});

/** The released mPLUG-Owl v1 `preprocessor_config.json` (spec B.4). */
export const OWL1_PREPROCESSOR_CONFIG: PreprocessorConfigJson = Object.freeze({
  resolution: 224,
  image_mean: [...CLIP_MEAN],
  image_std: [...CLIP_STD],
});
