/**
 * BMP decoding in pure TypeScript (sharp does not read BMP; Pillow, which the official pipeline
 * uses, does). Follows Pillow 9.4 `BmpImagePlugin`: the mode a file opens in (`P` for palette
 * images, `L` / `1` when the palette is a grey ramp / black and white, `RGB` for 24 and 32 bits,
 * `RGBA` for 32-bit BITFIELDS with an alpha mask) and the pixels it holds. Covered: the core,
 * info, V4 and V5 headers; 1, 4, 8, 24 and 32 bits per pixel uncompressed; 32-bit BITFIELDS with
 * the masks Pillow supports; rows bottom-up or top-down. Refused (`IMAGE_UNSUPPORTED`): RLE, 16-bit,
 * embedded JPEG/PNG, and masks Pillow does not read. Size limits are checked before any pixel buffer
 * is allocated; the file is bounds-checked (`IMAGE_DECODE_FAILED` when cut short).
 */
import { OwletError } from '@owlet/core';

import { checkDecodeMemory, checkImageLimits, type ImageLimits } from './header.js';
import { PreprocessErrorCode, type DecodedImage, type PillowMode } from './image.js';

const unsupported = (what: string) =>
  new OwletError(PreprocessErrorCode.IMAGE_UNSUPPORTED, `BMP ${what} is not supported; convert the image to PNG`, {
    details: { format: 'bmp' },
  });
const broken = (what: string, n: number) =>
  new OwletError(PreprocessErrorCode.IMAGE_DECODE_FAILED, `invalid BMP: ${what} (${n} bytes)`, {
    details: { format: 'bmp', byteLength: n },
  });

/** 32-bit BITFIELDS masks (r, g, b, a) Pillow reads, with the byte order of each pixel. */
const MASKS_32: readonly { masks: [number, number, number, number]; order: string }[] = [
  { masks: [0xff0000, 0xff00, 0xff, 0], order: 'BGRX' },
  { masks: [0xff000000, 0xff0000, 0xff00, 0], order: 'XBGR' },
  { masks: [0xff000000, 0xff0000, 0xff00, 0xff], order: 'ABGR' },
  { masks: [0xff, 0xff00, 0xff0000, 0xff000000], order: 'RGBA' },
  { masks: [0xff0000, 0xff00, 0xff, 0xff000000], order: 'BGRA' },
  { masks: [0, 0, 0, 0], order: 'BGRA' },
];

/** Decodes a BMP file into the mode Pillow opens it in. */
export function decodeBmp(bytes: Uint8Array, limits: ImageLimits = {}): DecodedImage {
  const n = bytes.length;
  if (n < 26 || bytes[0] !== 0x42 || bytes[1] !== 0x4d) throw broken('no BMP file header', n);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const need = (end: number, what: string) => {
    if (end > n) throw broken(what, n);
  };
  const dataOffset = u32(10);
  const headerSize = u32(14);
  let width: number;
  let height: number;
  let bits: number;
  let compression = 0;
  let colors = 0;
  let paletteEntry = 4;
  let masks: [number, number, number, number] = [0, 0, 0, 0];
  if (headerSize === 12) {
    need(26, 'core header cut short');
    width = u16(18);
    height = dv.getInt16(20, true);
    bits = u16(24);
    paletteEntry = 3;
  } else if (headerSize === 40 || headerSize === 64 || headerSize === 108 || headerSize === 124) {
    // Pillow 9.4 reads these (info, OS/2 v2, V4, V5); other sizes are refused as it refuses them
    need(14 + 40, 'info header cut short');
    width = dv.getInt32(18, true);
    height = dv.getInt32(22, true);
    bits = u16(28);
    compression = u32(30);
    colors = u32(46);
    if (compression === 3) {
      // masks follow a 40-byte header, or sit inside a V2+ header
      need(14 + 40 + 16, 'BITFIELDS masks cut short');
      masks = [u32(54), u32(58), u32(62), headerSize > 40 ? u32(66) : 0];
    }
  } else {
    throw unsupported(`header of ${headerSize} bytes`);
  }
  if (u16(headerSize === 12 ? 22 : 26) !== 1) throw broken('planes ≠ 1', n);
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height <= 0) throw broken(`size ${width}×${height}`, n);
  checkImageLimits(width, height, limits);

  if (compression === 1 || compression === 2) throw unsupported('RLE compression');
  if (compression === 4 || compression === 5) throw unsupported('with an embedded JPEG or PNG');
  if (compression !== 0 && compression !== 3) throw unsupported(`compression ${compression}`);
  if (bits === 16) throw unsupported('16-bit colour');
  if (![1, 4, 8, 24, 32].includes(bits)) throw unsupported(`${bits}-bit colour`);

  let order = bits === 24 ? 'BGR' : 'BGRX';
  let mode: PillowMode = bits <= 8 ? 'P' : 'RGB';
  if (compression === 3) {
    if (bits !== 32 && !(bits === 24 && masks[0] === 0xff0000 && masks[1] === 0xff00 && masks[2] === 0xff))
      throw unsupported(`BITFIELDS with ${bits} bits`);
    if (bits === 32) {
      const m = MASKS_32.find((x) => x.masks.every((v, i) => v >>> 0 === (masks[i] as number) >>> 0));
      if (!m) throw unsupported(`BITFIELDS masks ${masks.map((x) => `0x${(x >>> 0).toString(16)}`).join('/')}`);
      order = m.order;
      if (order.includes('A')) mode = 'RGBA';
    }
  }

  // palette (Pillow: colors from the header, else 2^bits)
  let palette: Uint8Array | null = null;
  if (bits <= 8) {
    const count = colors > 0 ? colors : 1 << bits;
    if (count > 1 << bits) throw broken(`${count} palette colours for ${bits} bits`, n);
    const at = 14 + headerSize;
    need(at + count * paletteEntry, 'palette cut short');
    palette = new Uint8Array(256 * 3); // entries past the palette stay black
    for (let i = 0; i < count; i++) {
      palette[i * 3] = bytes[at + i * paletteEntry + 2] as number;
      palette[i * 3 + 1] = bytes[at + i * paletteEntry + 1] as number;
      palette[i * 3 + 2] = bytes[at + i * paletteEntry] as number;
    }
    // Pillow: a grey-ramp palette opens as L, a black-and-white one (2 colours) as 1
    const indices = count === 2 ? [0, 255] : Array.from({ length: count }, (_, i) => i);
    const grey = indices.every(
      (v, i) => palette?.[i * 3] === v && palette?.[i * 3 + 1] === v && palette?.[i * 3 + 2] === v,
    );
    if (grey) {
      // Pillow then reads the pixel bytes in the grey mode itself (8-bit L, 1-bit '1'): only the
      // bit depth that matches gives an image; the others are refused rather than garbled
      if (count === 2 && bits === 1) mode = '1';
      else if (count === 2) throw unsupported(`${bits}-bit black-and-white palette`);
      else if (bits === 8) mode = 'L';
      else throw unsupported(`${bits}-bit grey palette`); // Pillow reads those bytes as 8-bit grey
    }
  }

  const stride = Math.floor((bits * width + 31) / 32) * 4;
  need(dataOffset + stride * height, 'pixel data cut short');
  const channels = mode === 'RGBA' ? 4 : mode === 'L' || mode === '1' ? 1 : 3;
  checkDecodeMemory(width, height, channels, 1, limits);
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * stride;
    let q = y * width * channels;
    for (let x = 0; x < width; x++) {
      if (bits <= 8) {
        const bitPos = x * bits;
        const byte = bytes[row + (bitPos >> 3)] as number;
        const index = bits === 8 ? byte : (byte >> (8 - bits - (bitPos & 7))) & ((1 << bits) - 1);
        if (mode === '1') out[q++] = index ? 255 : 0;
        else if (mode === 'L') out[q++] = index;
        else {
          out[q++] = (palette as Uint8Array)[index * 3] as number;
          out[q++] = (palette as Uint8Array)[index * 3 + 1] as number;
          out[q++] = (palette as Uint8Array)[index * 3 + 2] as number;
        }
        continue;
      }
      const p = row + x * (bits >> 3);
      const at = (c: string) => bytes[p + order.indexOf(c)] as number;
      out[q++] = at('R');
      out[q++] = at('G');
      out[q++] = at('B');
      if (channels === 4) out[q++] = at('A');
    }
  }
  return { width, height, mode, data: out };
}
