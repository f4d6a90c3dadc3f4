/**
 * Browser decoding through `createImageBitmap` and an `OffscreenCanvas`. No Node module is
 * imported here. The header is parsed first (PNG, JPEG, GIF, WebP, BMP) and the size limits are
 * enforced before the browser decodes anything.
 *
 * Parity notes: the canvas hands back RGBA; the Pillow mode comes from the header (PNG colour
 * type, JPEG components), so L, LA, P and RGBA sources are rebuilt in their mode. Browsers keep
 * premultiplied pixels internally, so the colour of fully transparent pixels is lost (Pillow's
 * `convert('RGB')` keeps it), and CMYK JPEGs are converted by the browser's colour management,
 * not Pillow's formula. For bit-exact parity in those cases decode on the server (decode-node.ts).
 */
import { OwletError } from '@owlet/core';

import { decodeBmp } from './bmp.js';
import {
  DECODABLE_FORMATS,
  FORMAT_NAMES,
  checkDecodeMemory,
  checkImageFormat,
  checkImageLimits,
  readImageHeader,
  type ImageLimits,
} from './header.js';
import { MODE_CHANNELS, PreprocessErrorCode, type DecodedImage, type PillowMode } from './image.js';

/** Options of {@link decodeImageBrowser}. */
export type BrowserDecodeOptions = ImageLimits;

const HEADER_BYTES = 1 << 16;

interface BitmapLike {
  width: number;
  height: number;
  close?: () => void;
}

/** Converts canvas RGBA pixels to the layout of `mode`. */
export function rgbaToMode(rgba: Uint8Array | Uint8ClampedArray, n: number, mode: PillowMode): Uint8Array {
  const ch = MODE_CHANNELS[mode];
  const out = new Uint8Array(n * ch);
  for (let i = 0; i < n; i++) {
    const p = i * 4;
    const q = i * ch;
    switch (mode) {
      case 'L':
      case '1':
        out[q] = rgba[p]!;
        break;
      case 'LA':
        out[q] = rgba[p]!;
        out[q + 1] = rgba[p + 3]!;
        break;
      case 'RGBA':
        out[q] = rgba[p]!;
        out[q + 1] = rgba[p + 1]!;
        out[q + 2] = rgba[p + 2]!;
        out[q + 3] = rgba[p + 3]!;
        break;
      default:
        out[q] = rgba[p]!;
        out[q + 1] = rgba[p + 1]!;
        out[q + 2] = rgba[p + 2]!;
    }
  }
  return out;
}

/**
 * Decodes an encoded image in a browser (or worker) into a {@link DecodedImage}.
 *
 * @throws OwletError `IMAGE_TOO_LARGE` (from the header, before decoding), `IMAGE_DECODE_FAILED`,
 *   `IMAGE_UNSUPPORTED` (no `createImageBitmap` / `OffscreenCanvas` in this environment).
 */
export async function decodeImageBrowser(
  input: Blob | Uint8Array | ArrayBuffer,
  options: BrowserDecodeOptions = {},
): Promise<DecodedImage> {
  const g = globalThis as unknown as {
    createImageBitmap?: (b: Blob, o?: Record<string, string>) => Promise<BitmapLike>;
    OffscreenCanvas?: new (
      w: number,
      h: number,
    ) => {
      getContext(
        kind: '2d',
        o?: Record<string, unknown>,
      ): {
        drawImage(b: BitmapLike, x: number, y: number): void;
        getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
      } | null;
    };
  };
  if (typeof g.createImageBitmap !== 'function' || typeof g.OffscreenCanvas !== 'function') {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_UNSUPPORTED,
      'browser decoding needs createImageBitmap and OffscreenCanvas, which this environment lacks',
    );
  }
  const blob = input instanceof Blob ? input : new Blob([input instanceof Uint8Array ? input.slice() : input]);
  if (blob.size === 0) {
    throw new OwletError(PreprocessErrorCode.IMAGE_DECODE_FAILED, 'image bytes are empty', {
      details: { byteLength: 0 },
    });
  }
  const head = new Uint8Array(await blob.slice(0, HEADER_BYTES).arrayBuffer());
  // Browsers decode SVG, AVIF, … which the official pipeline's Pillow does not open: refused first.
  const format = checkImageFormat(head);
  if (format === 'bmp') return decodeBmp(new Uint8Array(await blob.arrayBuffer()), options); // Pillow's modes, not the canvas'
  if (format === null) {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_DECODE_FAILED,
      `not an image (${blob.size} bytes; owlet decodes ${DECODABLE_FORMATS.map((f) => FORMAT_NAMES[f]).join(', ')})`,
      { details: { byteLength: blob.size } },
    );
  }
  const header = readImageHeader(head);
  if (header) {
    checkImageLimits(header.width, header.height, options);
    checkDecodeMemory(header.width, header.height, 4, 1, options); // the canvas holds RGBA
  }
  let bitmap: BitmapLike;
  try {
    bitmap = await g.createImageBitmap(blob, {
      premultiplyAlpha: 'none',
      colorSpaceConversion: 'none',
      imageOrientation: 'none',
    });
  } catch (e) {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_DECODE_FAILED,
      `the browser could not decode the image (${blob.size} bytes): ${(e as Error).message}`,
      {
        cause: e,
        details: { byteLength: blob.size },
      },
    );
  }
  try {
    const { width, height } = bitmap;
    checkImageLimits(width, height, options);
    checkDecodeMemory(width, height, 4, 1, options);
    const canvas = new g.OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
    if (!ctx) throw new OwletError(PreprocessErrorCode.IMAGE_UNSUPPORTED, 'OffscreenCanvas has no 2d context');
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    let mode: PillowMode = header?.mode ?? 'RGBA';
    if (mode === 'CMYK') mode = 'RGB'; // the browser already converted it
    if (header?.format === 'gif') mode = 'P';
    return { width, height, mode, data: rgbaToMode(rgba, width * height, mode) };
  } finally {
    bitmap.close?.();
  }
}
