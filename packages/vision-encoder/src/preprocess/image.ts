/**
 * Decoded images in Pillow's terms, and Pillow's mode conversions (Pillow 9.4
 * `libImaging/Convert.c`), reproduced exactly.
 */
import { ErrorCode, OwletError } from '@owlet/core';

import { BufferRows, MapRows, type RowSource } from './rows.js';

/**
 * The Pillow mode an image was opened in. It decides how the v1 path resizes (`P` and `1` with
 * NEAREST, `RGBA`/`LA` premultiplied) and how `convert('RGB')` works.
 *
 * Pixel layout of {@link DecodedImage.data} per mode (interleaved uint8):
 * `RGB` 3, `RGBA` 4, `L` 1, `LA` 2, `1` 1 (0 or 255), `CMYK` 4 (0 = no ink),
 * `P` 3: the palette colours already looked up (resizing a palette image with NEAREST and then
 * looking colours up equals looking up first, so the indices are not needed).
 */
export type PillowMode = 'RGB' | 'RGBA' | 'L' | 'LA' | '1' | 'P' | 'CMYK';

/** Channels of {@link DecodedImage.data} for each mode. */
export const MODE_CHANNELS: Readonly<Record<PillowMode, number>> = {
  RGB: 3,
  RGBA: 4,
  L: 1,
  LA: 2,
  '1': 1,
  P: 3,
  CMYK: 4,
};

/** A decoded 8-bit image: `height` rows of `width` pixels, `MODE_CHANNELS[mode]` bytes each. */
export interface DecodedImage {
  readonly width: number;
  readonly height: number;
  readonly mode: PillowMode;
  readonly data: Uint8Array;
}

/** Error codes of the preprocessing module (values of `OwletError.code`). */
/** The codes this package throws; each is declared, with its meaning, once in `ErrorCode` (@owlet/errors). */
export const PreprocessErrorCode = {
  IMAGE_DECODE_FAILED: ErrorCode.IMAGE_DECODE_FAILED,
  IMAGE_TOO_LARGE: ErrorCode.IMAGE_TOO_LARGE,
  IMAGE_UNSUPPORTED: ErrorCode.IMAGE_UNSUPPORTED,
} as const satisfies Readonly<Record<string, ErrorCode>>;

/** `MULDIV255(a, b)` of Pillow: `(a·b + 127) / 255` rounded as Pillow rounds it. */
function muldiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

function clip8(v: number): number {
  return v <= 0 ? 0 : v < 256 ? v : 255;
}

type PixelConverter = (src: Uint8Array, so: number, dst: Uint8Array, n: number) => void;

/** `convert('RGB')` per mode: drop alpha (no compositing), replicate L, CMYK by Pillow's formula. */
export const TO_RGB: Readonly<Record<PillowMode, PixelConverter | null>> = {
  RGB: null,
  P: null,
  RGBA: (s, so, d, n) => {
    for (let i = 0; i < n; i++) {
      d[i * 3] = s[so + i * 4]!;
      d[i * 3 + 1] = s[so + i * 4 + 1]!;
      d[i * 3 + 2] = s[so + i * 4 + 2]!;
    }
  },
  L: (s, so, d, n) => {
    for (let i = 0; i < n; i++) {
      const v = s[so + i]!;
      d[i * 3] = v;
      d[i * 3 + 1] = v;
      d[i * 3 + 2] = v;
    }
  },
  '1': (s, so, d, n) => {
    for (let i = 0; i < n; i++) {
      const v = s[so + i]! !== 0 ? 255 : 0;
      d[i * 3] = v;
      d[i * 3 + 1] = v;
      d[i * 3 + 2] = v;
    }
  },
  LA: (s, so, d, n) => {
    for (let i = 0; i < n; i++) {
      const v = s[so + i * 2]!;
      d[i * 3] = v;
      d[i * 3 + 1] = v;
      d[i * 3 + 2] = v;
    }
  },
  CMYK: (s, so, d, n) => {
    // cmyk2rgb: nk = 255 − K; R = CLIP8(nk − MULDIV255(C, nk))
    for (let i = 0; i < n; i++) {
      const p = so + i * 4;
      const nk = 255 - s[p + 3]!;
      d[i * 3] = clip8(nk - muldiv255(s[p]!, nk));
      d[i * 3 + 1] = clip8(nk - muldiv255(s[p + 1]!, nk));
      d[i * 3 + 2] = clip8(nk - muldiv255(s[p + 2]!, nk));
    }
  },
};

/** `RGBA → RGBa` / `LA → La` (premultiply: `MULDIV255(c, a)`), for `channels` = 4 or 2. */
export function premultiply(channels: 2 | 4): PixelConverter {
  return (s, so, d, n) => {
    for (let i = 0; i < n; i++) {
      const p = so + i * channels;
      const q = i * channels;
      const a = s[p + channels - 1]!;
      for (let c = 0; c < channels - 1; c++) d[q + c] = muldiv255(s[p + c]!, a);
      d[q + channels - 1] = a;
    }
  };
}

/** `RGBa → RGBA` / `La → LA` (unpremultiply: `CLIP8(255·c / a)` with integer division, a ∉ {0, 255}). */
export function unpremultiply(channels: 2 | 4): PixelConverter {
  return (s, so, d, n) => {
    for (let i = 0; i < n; i++) {
      const p = so + i * channels;
      const q = i * channels;
      const a = s[p + channels - 1]!;
      for (let c = 0; c < channels - 1; c++) {
        const v = s[p + c]!;
        d[q + c] = a === 255 || a === 0 ? v : clip8(Math.floor((255 * v) / a));
      }
      d[q + channels - 1] = a;
    }
  };
}

/** Checks the shape of a {@link DecodedImage} (throws `INVALID_ARGUMENT` naming both sides). */
export function validateImage(img: DecodedImage): void {
  const ch = MODE_CHANNELS[img.mode];
  if (ch === undefined) {
    throw new OwletError(
      'INVALID_ARGUMENT',
      `unknown image mode ${String(img.mode)}; expected one of ${Object.keys(MODE_CHANNELS).join(', ')}`,
    );
  }
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width < 1 || img.height < 1) {
    throw new OwletError('INVALID_ARGUMENT', `image size must be positive integers, got ${img.width}×${img.height}`, {
      details: { width: img.width, height: img.height },
    });
  }
  const expected = img.width * img.height * ch;
  if (!(img.data instanceof Uint8Array) || img.data.length !== expected) {
    throw new OwletError(
      'SHAPE_MISMATCH',
      `a ${img.width}×${img.height} ${img.mode} image needs ${expected} bytes (${ch} per pixel), got ${img.data instanceof Uint8Array ? img.data.length : typeof img.data}`,
      { details: { expected, got: img.data?.length } },
    );
  }
}

/** The rows of `img` in its own mode. */
export function imageRows(img: DecodedImage): RowSource {
  return new BufferRows(img.data, img.width, img.height, MODE_CHANNELS[img.mode]);
}

/** Rows of `src` (in `mode`) converted to RGB as `Image.convert('RGB')` does. */
export function rgbRows(src: RowSource, mode: PillowMode): RowSource {
  const f = TO_RGB[mode];
  return f ? new MapRows(src, 3, f) : src;
}

/** `Image.convert('RGB')` of a whole image, as an `[H, W, 3]` buffer (a copy). */
export function convertToRGB(img: DecodedImage): DecodedImage {
  validateImage(img);
  const f = TO_RGB[img.mode];
  const out = new Uint8Array(img.width * img.height * 3);
  if (f) f(img.data, 0, out, img.width * img.height);
  else out.set(img.data);
  return { width: img.width, height: img.height, mode: 'RGB', data: out };
}
