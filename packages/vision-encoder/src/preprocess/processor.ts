/**
 * `MplugOwlImageProcessor`: decoding + an official entry point + the CLIPImageProcessor steps,
 * configured from `preprocessor_config.json`, returning `pixel_values` `[N, 3, H, W]`.
 *
 * Mirrors MplugOwlImageProcessor — X-PLUG/mPLUG-Owl@0f3068f mPLUG-Owl/mplug_owl/processing_mplug_owl.py
 * and `process_images` / `expand2square` — mPLUG-Owl2/mplug_owl2/mm_utils.py (transformers'
 * CLIPImageProcessor for the CLIP steps).
 */
import * as tf from '@tensorflow/tfjs-core';
import { OwletError } from '@owlet/core';

import {
  OWL1_PREPROCESSOR_CONFIG,
  OWL2_PREPROCESSOR_CONFIG,
  resolvePreprocessorConfig,
  type PreprocessorConfig,
  type PreprocessorConfigJson,
} from './config.js';
import { decodeImageBrowser } from './decode-browser.js';
import { checkImageLimits, type ImageLimits } from './header.js';
import { MODE_CHANNELS, validateImage, type DecodedImage, type PillowMode } from './image.js';
import {
  applyLUT,
  pixelLUT,
  preprocessToUint8,
  type EntryPoint,
  type PipelineOptions,
  type Uint8Planar,
} from './pipeline.js';

/** Raw interleaved pixels (e.g. canvas `ImageData`: 4 channels). */
export interface RawImageInput {
  readonly data: Uint8Array | Uint8ClampedArray;
  readonly width: number;
  readonly height: number;
  /** 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA); ignored when `mode` is given. */
  readonly channels?: 1 | 2 | 3 | 4;
  /** The Pillow mode of the pixels (default from `channels`). */
  readonly mode?: PillowMode;
}

/**
 * What the processor accepts: encoded bytes (`Uint8Array`/`ArrayBuffer`/`Blob`), a
 * {@link DecodedImage}, raw pixels, or a tf tensor `[H, W, C]` of integers 0–255 (not disposed).
 */
export type ImageInput = Uint8Array | ArrayBuffer | Blob | DecodedImage | RawImageInput | tf.Tensor;

const CHANNEL_MODES: Record<number, PillowMode> = { 1: 'L', 2: 'LA', 3: 'RGB', 4: 'RGBA' };

/** A {@link DecodedImage} from raw interleaved pixels (the bytes are viewed, not copied). */
export function imageFromRaw(raw: RawImageInput, limits: ImageLimits = {}): DecodedImage {
  const mode = raw.mode ?? CHANNEL_MODES[raw.channels ?? -1];
  if (!mode) {
    throw new OwletError(
      'INVALID_ARGUMENT',
      `raw image needs a mode or channels in 1–4, got channels=${String(raw.channels)}`,
    );
  }
  checkImageLimits(raw.width, raw.height, limits);
  const data =
    raw.data instanceof Uint8Array
      ? raw.data
      : new Uint8Array(raw.data.buffer, raw.data.byteOffset, raw.data.byteLength);
  const img: DecodedImage = { width: raw.width, height: raw.height, mode, data };
  validateImage(img);
  return img;
}

/**
 * A {@link DecodedImage} from a tensor `[H, W, C]` (C = 1, 2, 3, 4 → L, LA, RGB, RGBA) whose values
 * are integers in [0, 255]. The tensor is read, not disposed.
 */
export async function imageFromTensor(t: tf.Tensor, limits: ImageLimits = {}): Promise<DecodedImage> {
  const [h, w, c] = t.shape;
  const mode = t.rank === 3 && c !== undefined ? CHANNEL_MODES[c] : undefined;
  if (!mode || h === undefined || w === undefined) {
    throw new OwletError(
      'SHAPE_MISMATCH',
      `image tensor must be [H, W, C] with C in 1–4, got [${t.shape.join(', ')}]`,
      {
        details: { shape: t.shape },
      },
    );
  }
  checkImageLimits(w, h, limits);
  const values = await t.data();
  const data = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (!(v >= 0 && v <= 255 && Number.isInteger(v))) {
      throw new OwletError(
        'INVALID_ARGUMENT',
        `image tensor values must be integers in [0, 255]; element ${i} is ${v}`,
        {
          details: { index: i, value: v },
        },
      );
    }
    data[i] = v;
  }
  return { width: w, height: h, mode, data };
}

function isDecoded(x: unknown): x is DecodedImage {
  return (
    typeof x === 'object' &&
    x !== null &&
    'mode' in x &&
    'data' in x &&
    'width' in x &&
    (x as DecodedImage).mode in MODE_CHANNELS &&
    (x as DecodedImage).data instanceof Uint8Array &&
    !('channels' in x)
  );
}

/**
 * Decodes encoded bytes: Node through sharp (dynamically imported), browsers through
 * `createImageBitmap`. Size limits are checked from the header before decoding.
 */
export async function decodeImage(
  input: Uint8Array | ArrayBuffer | Blob,
  limits: ImageLimits = {},
): Promise<DecodedImage> {
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  if (isNode) {
    const { decodeImageNode } = await import('./decode-node.js');
    const bytes =
      typeof Blob !== 'undefined' && input instanceof Blob
        ? new Uint8Array(await input.arrayBuffer())
        : (input as Uint8Array | ArrayBuffer);
    return decodeImageNode(bytes, limits);
  }
  return decodeImageBrowser(input, limits);
}

/** Options of {@link MplugOwlImageProcessor}. */
export interface ImageProcessorOptions extends ImageLimits, Omit<PipelineOptions, 'entryPoint'> {
  /** The official entry point (default `pad`, the mPLUG-Owl2 CLI default; `v1` for mPLUG-Owl). */
  entryPoint?: EntryPoint;
}

/** Float32 `pixel_values` and their shape. */
export interface PixelValues {
  /** `[N, 3, H, W]`, RGB, normalised. */
  readonly data: Float32Array;
  readonly shape: [number, number, number, number];
  /** Per image: false when the `resize` fallback for huge elongated images was used. */
  readonly exact: boolean[];
}

/**
 * The image processor of mPLUG-Owl2 / mPLUG-Owl: equal to the official Python pipeline (Pillow +
 * transformers CLIPImageProcessor) byte for byte before normalisation and bit for bit after it.
 *
 * @example
 * ```ts
 * import assert from 'node:assert/strict';
 * import { readFileSync } from 'node:fs';
 * import { MplugOwlImageProcessor } from '@owlet/vision-encoder';
 *
 * const bytes = readFileSync('apps/cli/assets/owl.png');   // PNG, JPEG, GIF, WebP, TIFF or BMP bytes
 * const proc = MplugOwlImageProcessor.owl2();              // 448, pad with (122,116,104)
 * const pixelValues = await proc.pixelValuesTensor(bytes); // tf.Tensor4D [1, 3, 448, 448]; caller disposes
 * const shape = pixelValues.shape;
 * pixelValues.dispose();
 * assert.deepEqual(shape, [1, 3, 448, 448]);
 * ```
 */
export class MplugOwlImageProcessor {
  /** The resolved configuration. */
  readonly config: PreprocessorConfig;
  /** The entry point in use. */
  readonly entryPoint: EntryPoint;
  private readonly options: ImageProcessorOptions;
  private readonly lut: Float32Array;

  /**
   * @param config `preprocessor_config.json` contents (resolved with CLIP defaults) or a resolved config.
   * @param options entry point, size limits, padding colour.
   */
  constructor(
    config: PreprocessorConfigJson | PreprocessorConfig = OWL2_PREPROCESSOR_CONFIG,
    options: ImageProcessorOptions = {},
  ) {
    this.config =
      Object.isFrozen(config) && 'shortest_edge' in config
        ? (config as PreprocessorConfig)
        : resolvePreprocessorConfig(config as PreprocessorConfigJson);
    this.entryPoint = options.entryPoint ?? 'pad';
    if (!['pad', 'resize', 'v1', 'clip_default'].includes(this.entryPoint)) {
      throw new OwletError(
        'INVALID_ARGUMENT',
        `unknown entry point ${JSON.stringify(this.entryPoint)}; expected pad, resize, v1 or clip_default`,
      );
    }
    this.options = { ...options };
    this.lut = pixelLUT(this.config);
  }

  /** mPLUG-Owl2's released processor (448 px); entry point `pad` unless given. */
  static owl2(options: ImageProcessorOptions = {}): MplugOwlImageProcessor {
    return new MplugOwlImageProcessor(OWL2_PREPROCESSOR_CONFIG, { entryPoint: 'pad', ...options });
  }

  /** mPLUG-Owl v1's processor (224 px stretch in the file's mode). */
  static owl1(options: ImageProcessorOptions = {}): MplugOwlImageProcessor {
    return new MplugOwlImageProcessor(OWL1_PREPROCESSOR_CONFIG, { entryPoint: 'v1', ...options });
  }

  /** The rescale+normalise table (`[3·256]`, `LUT[c·256 + v]`). */
  get pixelLUT(): Float32Array {
    return this.lut.slice();
  }

  /** Turns any {@link ImageInput} into a {@link DecodedImage}, enforcing the size limits. */
  async toDecoded(input: ImageInput): Promise<DecodedImage> {
    if (input instanceof tf.Tensor) return imageFromTensor(input, this.options);
    if (
      input instanceof Uint8Array ||
      input instanceof ArrayBuffer ||
      (typeof Blob !== 'undefined' && input instanceof Blob)
    ) {
      return decodeImage(input, this.options);
    }
    if (isDecoded(input)) {
      checkImageLimits(input.width, input.height, this.options);
      validateImage(input);
      return input;
    }
    return imageFromRaw(input as RawImageInput, this.options);
  }

  /** The uint8 pixels before rescale/normalise, `[3, H, W]` (the fixtures' `*_u8`). */
  uint8(image: DecodedImage): Uint8Planar {
    return preprocessToUint8(image, this.config, { ...this.options, entryPoint: this.entryPoint });
  }

  /** `pixel_values[0]` of one decoded image: float32 `[3, H, W]`. Synchronous, no tensors. */
  processDecoded(image: DecodedImage): Float32Array {
    const planar = this.uint8(image);
    const out = new Float32Array(3 * planar.height * planar.width);
    applyLUT(planar, this.lut, out);
    return out;
  }

  /** Preprocesses one or more images into float32 `pixel_values` `[N, 3, H, W]`. */
  async preprocess(inputs: ImageInput | readonly ImageInput[]): Promise<PixelValues> {
    const list = Array.isArray(inputs) ? (inputs as readonly ImageInput[]) : [inputs as ImageInput];
    if (list.length === 0) throw new OwletError('INVALID_ARGUMENT', 'preprocess needs at least one image, got 0');
    const planars: Uint8Planar[] = [];
    for (const input of list) planars.push(this.uint8(await this.toDecoded(input)));
    const [first] = planars;
    if (!first) throw new OwletError('INVALID_ARGUMENT', 'preprocess needs at least one image, got 0');
    const { height, width } = first;
    for (const [i, p] of planars.entries()) {
      if (p.height !== height || p.width !== width) {
        throw new OwletError(
          'SHAPE_MISMATCH',
          `images of one batch must share a size: image 0 gives ${height}×${width}, image ${i} gives ${p.height}×${p.width} (enable do_center_crop)`,
        );
      }
    }
    const plane = 3 * height * width;
    const data = new Float32Array(planars.length * plane);
    planars.forEach((p, i) => {
      applyLUT(p, this.lut, data, i * plane);
    });
    return { data, shape: [planars.length, 3, height, width], exact: planars.map((p) => p.exact) };
  }

  /** {@link preprocess} as a float32 `tf.Tensor4D` `[N, 3, H, W]`; the caller owns (disposes) it. */
  async pixelValuesTensor(inputs: ImageInput | readonly ImageInput[]): Promise<tf.Tensor4D> {
    const { data, shape } = await this.preprocess(inputs);
    return tf.tensor4d(data, shape, 'float32');
  }
}
