/** Whole-image convenience wrapper over the streaming resampler. */
import { OwletError } from '@owlet/core';

import { MODE_CHANNELS, imageRows, premultiply, unpremultiply, validateImage, type DecodedImage } from './image.js';
import { NearestResize, Resampling, pillowResize } from './resample.js';
import { MapRows, type RowSource } from './rows.js';

/**
 * `Image.resize((width, height), resample)` as Pillow 9.4 computes it, on a whole image in its own
 * mode: `P` and `1` always use NEAREST, `RGBA`/`LA` are resampled premultiplied (RGBa/La) unless
 * NEAREST, an unchanged size returns a copy. Returns a new image of the same mode.
 */
export function resizeImage(
  image: DecodedImage,
  width: number,
  height: number,
  resample: Resampling = Resampling.BICUBIC,
): DecodedImage {
  validateImage(image);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new OwletError('INVALID_ARGUMENT', `resize target must be positive integers, got ${width}×${height}`);
  }
  const ch = MODE_CHANNELS[image.mode];
  if (width === image.width && height === image.height) return { ...image, data: image.data.slice() };
  const src = imageRows(image);
  let rows: RowSource;
  if (image.mode === 'P' || image.mode === '1' || resample === Resampling.NEAREST) {
    rows = new NearestResize(src, width, height);
  } else if (image.mode === 'RGBA' || image.mode === 'LA') {
    const c = ch as 2 | 4;
    rows = new MapRows(pillowResize(new MapRows(src, c, premultiply(c)), width, height, resample), c, unpremultiply(c));
  } else {
    rows = pillowResize(src, width, height, resample);
  }
  const data = new Uint8Array(width * height * ch);
  for (let y = 0; y < height; y++) {
    const { data: d, offset } = rows.row(y).toDense();
    data.set(d.subarray(offset, offset + width * ch), y * width * ch);
  }
  return { width, height, mode: image.mode, data };
}
