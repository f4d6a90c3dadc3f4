/**
 * Reads an image's format, dimensions and (for PNG/JPEG) colour layout from its header, without
 * decoding: enough to enforce the pixel cap before any pixel buffer is allocated and to know the
 * mode Pillow would open the file in. Pure code, used by the Node and browser decoders alike.
 */
import { OwletError } from '@owlet/core';

import { PreprocessErrorCode, type PillowMode } from './image.js';

/** What {@link readImageHeader} found. */
export interface ImageHeader {
  readonly format: 'png' | 'jpeg' | 'gif' | 'webp' | 'bmp';
  readonly width: number;
  readonly height: number;
  /**
   * The mode Pillow opens the file in, where the header says it (PNG colour type and bit depth,
   * JPEG component count); undefined otherwise.
   */
  readonly mode?: PillowMode;
  /** PNG bit depth / JPEG sample precision. */
  readonly bitDepth?: number;
}

/**
 * Default pixel cap: 50 MP (the reliability checklist's §7.4 default: well under jpeg-js's 100 MP,
 * and far above what a 448 px target needs).
 */
export const DEFAULT_MAX_PIXELS = 50_000_000;
/** Default cap on the memory a decode may need, from the header: 50 MP × 4 channels × 1 byte. */
export const DEFAULT_MAX_DECODE_BYTES = 200_000_000;
/** Default cap on either edge (the JPEG limit). */
export const DEFAULT_MAX_EDGE = 65535;

/** Size limits checked from the header before decoding. */
export interface ImageLimits {
  /** Largest width·height accepted (default {@link DEFAULT_MAX_PIXELS}). */
  maxPixels?: number;
  /** Largest width or height accepted (default {@link DEFAULT_MAX_EDGE}). */
  maxEdge?: number;
  /**
   * Largest decoded size in bytes (width × height × channels × bytes per sample, from the header;
   * default {@link DEFAULT_MAX_DECODE_BYTES}).
   */
  maxDecodeBytes?: number;
}

/** Throws `IMAGE_TOO_LARGE` when decoding `width × height × channels` samples of `bytesPerSample` exceeds the budget. */
export function checkDecodeMemory(
  width: number,
  height: number,
  channels: number,
  bytesPerSample: number,
  limits: ImageLimits = {},
): void {
  const max = limits.maxDecodeBytes ?? DEFAULT_MAX_DECODE_BYTES;
  const need = width * height * channels * bytesPerSample;
  if (need > max) {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_TOO_LARGE,
      `decoding this ${width}×${height} image (${channels} channel(s) of ${8 * bytesPerSample} bits) needs ${need} bytes; the limit is ${max} bytes`,
      { details: { width, height, channels, bytesPerSample, maxDecodeBytes: max } },
    );
  }
}

/** Image formats told apart by their first bytes. */
export type SniffedFormat =
  | 'png'
  | 'jpeg'
  | 'gif'
  | 'webp'
  | 'tiff'
  | 'bmp'
  | 'svg'
  | 'avif'
  | 'heif'
  | 'jxl'
  | 'jp2'
  | 'pdf'
  | 'ico'
  | 'psd';

/** The formats owlet decodes: what the official pipeline's Pillow opens and sharp (or a browser) decodes. */
export const DECODABLE_FORMATS: readonly SniffedFormat[] = ['png', 'jpeg', 'gif', 'webp', 'tiff', 'bmp'];

/** A format's name as messages print it. */
export const FORMAT_NAMES: Readonly<Record<SniffedFormat, string>> = {
  png: 'PNG',
  jpeg: 'JPEG',
  gif: 'GIF',
  webp: 'WebP',
  tiff: 'TIFF',
  bmp: 'BMP',
  svg: 'SVG',
  avif: 'AVIF',
  heif: 'HEIF/HEIC',
  jxl: 'JPEG XL',
  jp2: 'JPEG 2000',
  pdf: 'PDF',
  ico: 'ICO',
  psd: 'PSD',
};

const ascii = (b: Uint8Array, from: number, to: number) => String.fromCharCode(...b.subarray(from, to));

/** Which format the bytes start like; null when none of {@link SniffedFormat}. Reads no more than 512 bytes. */
export function sniffImageFormat(bytes: Uint8Array): SniffedFormat | null {
  const b = bytes;
  if (b.length >= 8 && PNG_SIG.every((v, i) => b[i] === v)) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 6 && /^GIF8[79]a$/.test(ascii(b, 0, 6))) return 'gif';
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP') return 'webp';
  if (
    b.length >= 4 &&
    ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0) ||
      (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0 && b[3] === 0x2a))
  )
    return 'tiff';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  if (b.length >= 12 && ascii(b, 4, 8) === 'ftyp') {
    // major brand, minor version, compatible brands (within the box, at most 64 bytes read)
    const brands = ascii(b, 8, Math.min(b.length, Math.max(12, Math.min(64, u32be(b, 0)))));
    if (/avi[fs]/.test(brands)) return 'avif';
    if (/hei[cmsx]|hev[cmsx]|mif1|msf1/.test(brands)) return 'heif';
    if (/jp2 |jpx /.test(brands)) return 'jp2';
    return 'heif';
  }
  if (b.length >= 12 && b[0] === 0 && b[1] === 0 && b[2] === 0 && b[3] === 0x0c && ascii(b, 4, 8) === 'jP  ')
    return 'jp2';
  if ((b.length >= 2 && b[0] === 0xff && b[1] === 0x0a) || (b.length >= 12 && ascii(b, 4, 8) === 'JXL ')) return 'jxl';
  if (b.length >= 5 && ascii(b, 0, 5) === '%PDF-') return 'pdf';
  if (b.length >= 4 && ascii(b, 0, 4) === '8BPS') return 'psd';
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && (b[2] === 1 || b[2] === 2) && b[3] === 0) return 'ico';
  // SVG: XML text (optionally after a BOM, whitespace, an XML declaration, comments or a doctype) with an <svg element.
  const head = new TextDecoder('utf-8', { fatal: false })
    .decode(b.subarray(0, 512))
    .replace(/^\uFEFF/, '')
    .trimStart();
  if (head.startsWith('<') && /<svg[\s>]/i.test(head)) return 'svg';
  return null;
}

/**
 * Refuses, before any decoder sees them, formats the official pipeline's Pillow does not open
 * (SVG, AVIF, HEIF, JPEG XL, PDF, …) or owlet does not decode yet: `IMAGE_UNSUPPORTED`, naming the
 * format. Unknown bytes pass (the decoder then reports IMAGE_DECODE_FAILED).
 */
export function checkImageFormat(bytes: Uint8Array): SniffedFormat | null {
  const f = sniffImageFormat(bytes);
  if (f !== null && !DECODABLE_FORMATS.includes(f)) {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_UNSUPPORTED,
      `${FORMAT_NAMES[f]} images are not supported; owlet decodes ${DECODABLE_FORMATS.map((x) => FORMAT_NAMES[x]).join(', ')}`,
      { details: { format: f } },
    );
  }
  return f;
}

/** Throws `IMAGE_TOO_LARGE` when `width × height` exceeds the limits. */
export function checkImageLimits(width: number, height: number, limits: ImageLimits = {}): void {
  const maxPixels = limits.maxPixels ?? DEFAULT_MAX_PIXELS;
  const maxEdge = limits.maxEdge ?? DEFAULT_MAX_EDGE;
  if (!(width >= 1 && height >= 1)) {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_DECODE_FAILED,
      `image header gives an empty size ${width}×${height}`,
      {
        details: { width, height },
      },
    );
  }
  if (width * height > maxPixels) {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_TOO_LARGE,
      `image is ${width}×${height} = ${width * height} pixels; the limit is ${maxPixels} pixels`,
      { details: { width, height, maxPixels } },
    );
  }
  if (width > maxEdge || height > maxEdge) {
    throw new OwletError(
      PreprocessErrorCode.IMAGE_TOO_LARGE,
      `image is ${width}×${height}; the limit is ${maxEdge} pixels per edge`,
      { details: { width, height, maxEdge } },
    );
  }
}

function u16be(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
function u32be(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) >>> 0) + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
}
function u16le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u24le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16);
}
function i32le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);
}

const PNG_SIG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function pngMode(colorType: number, depth: number): PillowMode | undefined {
  switch (colorType) {
    case 0:
      return depth === 1 ? '1' : depth <= 8 ? 'L' : undefined; // 16-bit grey opens as I;16
    case 2:
      return 'RGB';
    case 3:
      return 'P';
    case 4:
      return 'LA';
    case 6:
      return 'RGBA';
    default:
      return undefined;
  }
}

/**
 * Parses the header of a PNG, JPEG, GIF, WebP or BMP file. Returns null when the bytes start with
 * none of these signatures; throws `IMAGE_DECODE_FAILED` when a known signature is followed by a
 * header that is cut short or invalid.
 */
export function readImageHeader(bytes: Uint8Array): ImageHeader | null {
  const b = bytes;
  const fail = (what: string): never => {
    throw new OwletError(PreprocessErrorCode.IMAGE_DECODE_FAILED, `invalid image header: ${what} (${b.length} bytes)`, {
      details: { byteLength: b.length },
    });
  };
  if (b.length >= 8 && PNG_SIG.every((v, i) => b[i] === v)) {
    if (b.length < 29 || String.fromCharCode(b[12]!, b[13]!, b[14]!, b[15]!) !== 'IHDR')
      fail('PNG without an IHDR chunk');
    const width = u32be(b, 16);
    const height = u32be(b, 20);
    const depth = b[24]!;
    const mode = pngMode(b[25]!, depth);
    return { format: 'png', width, height, bitDepth: depth, ...(mode ? { mode } : {}) };
  }
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) {
    let o = 2;
    while (o + 4 <= b.length) {
      if (b[o] !== 0xff) fail(`JPEG marker expected at byte ${o}`);
      const marker = b[o + 1]!;
      if (marker === 0xff) {
        o += 1; // fill byte
        continue;
      }
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
        o += 2;
        continue;
      }
      if (marker === 0xd9 || marker === 0xda) fail('JPEG without a frame header before its scan');
      const len = u16be(b, o + 2);
      if (len < 2) fail('JPEG segment of length < 2');
      const isSOF = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (isSOF) {
        if (o + 10 > b.length || len < 8) fail('JPEG frame header cut short');
        const precision = b[o + 4]!;
        const height = u16be(b, o + 5);
        const width = u16be(b, o + 7);
        const comps = b[o + 9]!;
        const mode: PillowMode | undefined = comps === 1 ? 'L' : comps === 3 ? 'RGB' : comps === 4 ? 'CMYK' : undefined;
        if (height === 0) fail('JPEG with height 0 (DNL) is not supported');
        return { format: 'jpeg', width, height, bitDepth: precision, ...(mode ? { mode } : {}) };
      }
      o += 2 + len;
    }
    return fail('JPEG header cut short before its frame header');
  }
  if (
    b.length >= 6 &&
    (String.fromCharCode(...b.subarray(0, 6)) === 'GIF87a' || String.fromCharCode(...b.subarray(0, 6)) === 'GIF89a')
  ) {
    if (b.length < 10) fail('GIF header cut short');
    return { format: 'gif', width: u16le(b, 6), height: u16le(b, 8), mode: 'P' };
  }
  if (
    b.length >= 12 &&
    String.fromCharCode(...b.subarray(0, 4)) === 'RIFF' &&
    String.fromCharCode(...b.subarray(8, 12)) === 'WEBP'
  ) {
    if (b.length < 30) fail('WebP header cut short');
    const chunk = String.fromCharCode(...b.subarray(12, 16));
    if (chunk === 'VP8 ') return { format: 'webp', width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
    if (chunk === 'VP8L') {
      const bits = (b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24)) >>> 0;
      return { format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
    }
    if (chunk === 'VP8X') return { format: 'webp', width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
    return fail(`WebP with unknown first chunk ${JSON.stringify(chunk)}`);
  }
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) {
    if (b.length < 26) fail('BMP header cut short');
    return { format: 'bmp', width: Math.abs(i32le(b, 18)), height: Math.abs(i32le(b, 22)) };
  }
  return null;
}
