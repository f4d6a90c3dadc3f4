/**
 * Node decoding through sharp (libvips), loaded with a dynamic import so browser bundles never pull
 * it in. The header is read (our own parser, then sharp's `metadata()`, which decodes no pixels)
 * and checked against the pixel cap before the pixels are decoded; sharp's own
 * `limitInputPixels` is set to the same cap as a second guard.
 *
 * The pixels are returned in the mode Pillow would open the file in (spec A.8: the v1 path resizes
 * in that mode): embedded ICC profiles are ignored and EXIF orientation is not applied, as Pillow's
 * `Image.open` does neither.
 */
import { OwletError, isOwletError } from '@owlet/core';

import { decodeBmp } from './bmp.js';
import {
  DECODABLE_FORMATS,
  DEFAULT_MAX_PIXELS,
  FORMAT_NAMES,
  checkDecodeMemory,
  checkImageFormat,
  checkImageLimits,
  readImageHeader,
  type ImageLimits,
} from './header.js';
import { MODE_CHANNELS, PreprocessErrorCode, type DecodedImage, type PillowMode } from './image.js';

/** Options of {@link decodeImageNode}. */
export type NodeDecodeOptions = ImageLimits;

type SharpModule = typeof import('sharp');
let sharpPromise: Promise<SharpModule> | null = null;

async function loadSharp(): Promise<SharpModule> {
  // A variable specifier keeps browser bundlers from pulling sharp (a Node addon) into web bundles.
  const specifier = 'sharp';
  sharpPromise ??= import(/* @vite-ignore */ specifier).then(
    (m) => ((m as unknown as { default?: SharpModule }).default ?? m) as SharpModule,
  );
  try {
    return await sharpPromise;
  } catch (e) {
    sharpPromise = null;
    throw new OwletError(
      PreprocessErrorCode.IMAGE_UNSUPPORTED,
      `image decoding in Node needs the sharp package, which failed to load: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
}

function decodeError(msg: string, cause: unknown, details: Record<string, unknown> = {}): OwletError {
  // sharp's own limitInputPixels guard (formats our header parser does not read)
  const overLimit = cause instanceof Error && /exceeds pixel limit/i.test(cause.message);
  return new OwletError(
    overLimit ? PreprocessErrorCode.IMAGE_TOO_LARGE : PreprocessErrorCode.IMAGE_DECODE_FAILED,
    msg,
    { cause, details },
  );
}

/** Pillow's mode for what sharp reports, refined by the header where sharp loses information. */
function pillowModeFor(
  meta: {
    channels?: number;
    space?: string;
    isPalette?: boolean;
    hasAlpha?: boolean;
    format?: string;
    bitsPerSample?: number;
  },
  headerMode: PillowMode | undefined,
): PillowMode {
  if (headerMode) return headerMode; // PNG colour type / JPEG components are authoritative
  if (meta.format === 'gif' || meta.isPalette) return 'P';
  if (meta.space === 'cmyk') return 'CMYK';
  const ch = meta.channels ?? 3;
  if (ch === 1) return meta.bitsPerSample === 1 ? '1' : 'L';
  if (ch === 2) return 'LA';
  if (ch === 4) return 'RGBA';
  return 'RGB';
}

/** Reduces sharp's raw `channels`-wide pixels to the layout of `mode` (drops a tRNS alpha, etc.). */
function toModeLayout(raw: Uint8Array, n: number, channels: number, mode: PillowMode): Uint8Array {
  const want = MODE_CHANNELS[mode];
  if (channels === want) return raw;
  const out = new Uint8Array(n * want);
  if (want === 3 && channels === 4) {
    // P / RGB with a tRNS chunk: Pillow keeps the colours, the transparency is metadata
    for (let i = 0; i < n; i++) {
      out[i * 3] = raw[i * 4]!;
      out[i * 3 + 1] = raw[i * 4 + 1]!;
      out[i * 3 + 2] = raw[i * 4 + 2]!;
    }
    return out;
  }
  if (want === 1 && (channels === 2 || channels === 3 || channels === 4)) {
    // grey with tRNS (2), or a grey image sharp expanded: take the first channel
    for (let i = 0; i < n; i++) out[i] = raw[i * channels]!;
    return out;
  }
  if (want === 3 && (channels === 1 || channels === 2)) {
    // palette of greys decoded by sharp as grey: expand to the palette colours
    for (let i = 0; i < n; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = raw[i * channels]!;
    return out;
  }
  if (want === 2 && channels === 4) {
    for (let i = 0; i < n; i++) {
      out[i * 2] = raw[i * 4]!;
      out[i * 2 + 1] = raw[i * 4 + 3]!;
    }
    return out;
  }
  throw new OwletError(
    PreprocessErrorCode.IMAGE_UNSUPPORTED,
    `cannot map ${channels} decoded channels to Pillow mode ${mode} (${want} channels)`,
    { details: { channels, mode } },
  );
}

/**
 * Decodes encoded image bytes (PNG, JPEG, GIF, WebP, TIFF, … whatever sharp reads) into a
 * {@link DecodedImage} in Pillow's mode for the file. Size limits are checked from the header
 * before decoding.
 *
 * @throws OwletError `IMAGE_TOO_LARGE` (over the cap; nothing decoded), `IMAGE_DECODE_FAILED`
 *   (not an image, truncated, corrupt), `IMAGE_UNSUPPORTED`.
 */
export async function decodeImageNode(
  input: Uint8Array | ArrayBuffer,
  options: NodeDecodeOptions = {},
): Promise<DecodedImage> {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  if (bytes.length === 0) throw decodeError('image bytes are empty', undefined, { byteLength: 0 });
  // Only the formats the official pipeline's Pillow opens reach sharp: SVG, AVIF, HEIF, … are refused
  // from their first bytes (sharp would rasterise an 8000² SVG), unknown bytes are not an image.
  const format = checkImageFormat(bytes);
  if (format === null) {
    throw decodeError(
      `not an image (${bytes.length} bytes; owlet decodes ${DECODABLE_FORMATS.map((f) => FORMAT_NAMES[f]).join(', ')})`,
      undefined,
      { byteLength: bytes.length },
    );
  }
  if (format === 'bmp') return decodeBmp(bytes, options); // sharp does not read BMP
  const header = readImageHeader(bytes);
  if (header) checkImageLimits(header.width, header.height, options);
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const sharp = await loadSharp();
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const open = () =>
    sharp(buf, {
      limitInputPixels: maxPixels,
      failOn: 'error',
      ignoreIcc: true,
      autoOrient: false,
      sequentialRead: true,
      animated: false,
    });
  let meta: Awaited<ReturnType<ReturnType<SharpModule>['metadata']>>;
  try {
    meta = await open().metadata();
  } catch (e) {
    throw decodeError(`not a decodable image (${bytes.length} bytes): ${(e as Error).message}`, e, {
      byteLength: bytes.length,
    });
  }
  if (meta.width === undefined || meta.height === undefined) throw decodeError('image header has no size', undefined);
  if (meta.format !== format) {
    throw decodeError(`the bytes start like ${FORMAT_NAMES[format]} but decode as ${String(meta.format)}`, undefined);
  }
  checkImageLimits(meta.width, meta.height, options);
  // Decode memory from the header: sharp decodes every channel at the stored sample depth.
  const sampleBytes =
    meta.depth === 'ushort' || meta.depth === 'short'
      ? 2
      : meta.depth === 'uchar' || meta.depth === 'char' || meta.depth === undefined
        ? 1
        : 4;
  checkDecodeMemory(meta.width, meta.height, Math.max(meta.channels ?? 4, 3), sampleBytes, options);
  const mode = pillowModeFor(meta, header?.mode);
  let pipeline = open();
  if (mode === 'CMYK') pipeline = pipeline.pipelineColourspace('cmyk').toColourspace('cmyk');
  try {
    const { data, info } = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.width !== meta.width || info.height !== meta.height) {
      throw decodeError(`decoded ${info.width}×${info.height}, header says ${meta.width}×${meta.height}`, undefined);
    }
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const pixels = toModeLayout(raw, info.width * info.height, info.channels, mode);
    return { width: info.width, height: info.height, mode, data: pixels };
  } catch (e) {
    if (isOwletError(e)) throw e;
    throw decodeError(`decoding the ${meta.format ?? 'image'} failed: ${(e as Error).message}`, e, {
      format: meta.format,
    });
  }
}
