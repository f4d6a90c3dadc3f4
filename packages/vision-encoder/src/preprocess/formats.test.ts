/**
 * Image inputs match what the official pipeline accepts (issue 23 item 7): the formats its Pillow
 * opens and sharp decodes are decoded; SVG, AVIF, HEIF, … are refused from their first bytes,
 * before any decoder runs; the pixel cap is the checklist's 50 MP; decode memory is capped from
 * the header.
 */
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { isOwletError } from '@owlet/core';

import { decodeImageBrowser } from './decode-browser.js';
import { decodeImageNode } from './decode-node.js';
import { firstDiff, imageBytes, preprocessFixture, preprocessIndex } from './fixtures.test-helpers.js';
import { DEFAULT_MAX_PIXELS, checkImageLimits, sniffImageFormat } from './header.js';
import { PreprocessErrorCode, type DecodedImage } from './image.js';
import { OWL2_PREPROCESSOR_CONFIG, resolvePreprocessorConfig } from './config.js';
import { preprocessToUint8 } from './pipeline.js';

async function codeOf(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (!isOwletError(e)) throw e;
    return { code: e.code, message: e.message };
  }
  return { message: 'no error' };
}

const flat = (format: 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff' | 'avif' | 'heif', w = 40, h = 30) =>
  sharp({ create: { width: w, height: h, channels: 3, background: { r: 200, g: 100, b: 50 } } })
    .toFormat(format, format === 'heif' ? { compression: 'av1' } : {})
    .toBuffer()
    .then((b) => new Uint8Array(b));

const enc = (s: string) => new TextEncoder().encode(s);
const BIG_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="8000" height="8000"><rect width="8000" height="8000"/></svg>';

describe('formats Pillow opens are decoded', () => {
  for (const f of ['png', 'jpeg', 'webp', 'gif', 'tiff'] as const) {
    it(f, async () => {
      const bytes = await flat(f);
      expect(sniffImageFormat(bytes)).toBe(f);
      const img = await decodeImageNode(bytes);
      expect([img.width, img.height]).toEqual([40, 30]);
    });
  }
});

describe('formats the official pipeline does not open are refused before decoding (IMAGE_UNSUPPORTED)', () => {
  const cases: [string, () => Promise<Uint8Array> | Uint8Array, RegExp][] = [
    ['an 8000² SVG', () => enc(BIG_SVG), /SVG/],
    [
      'an SVG after a BOM, an XML declaration and a doctype',
      () => enc(`\uFEFF  <?xml version="1.0"?>\n<!DOCTYPE svg>\n${BIG_SVG}`),
      /SVG/,
    ],
    ['AVIF', () => flat('avif'), /AVIF/],
    [
      'HEIF (ftyp heic)',
      () => Uint8Array.from([0, 0, 0, 24, ...enc('ftypheic'), 0, 0, 0, 0, ...enc('mif1heic')]),
      /HEIF/,
    ],
    ['a PDF', () => enc('%PDF-1.7\n1 0 obj\n'), /PDF/],
  ];
  for (const [name, make, format] of cases) {
    it(name, async () => {
      const r = await codeOf(decodeImageNode(await make()));
      expect(r.code, r.message).toBe(PreprocessErrorCode.IMAGE_UNSUPPORTED);
      expect(r.message).toMatch(format);
      expect(r.message).toMatch(/owlet decodes PNG, JPEG, GIF, WebP, TIFF, BMP/);
    });
  }

  it('an SVG behind a long comment is not handed to sharp either (unknown bytes are not an image)', async () => {
    const svg = enc(`<!-- ${'x'.repeat(2000)} -->${BIG_SVG}`);
    const r = await codeOf(decodeImageNode(svg));
    expect([PreprocessErrorCode.IMAGE_UNSUPPORTED, PreprocessErrorCode.IMAGE_DECODE_FAILED]).toContain(r.code);
  });

  describe('in the browser decoder too (createImageBitmap is never called)', () => {
    const g = globalThis as Record<string, unknown>;
    afterEach(() => {
      delete g.createImageBitmap;
      delete g.OffscreenCanvas;
    });
    it('SVG and AVIF', async () => {
      let calls = 0;
      g.createImageBitmap = async () => {
        calls++;
        return { width: 8000, height: 8000 };
      };
      g.OffscreenCanvas = class {};
      expect((await codeOf(decodeImageBrowser(enc(BIG_SVG)))).code).toBe(PreprocessErrorCode.IMAGE_UNSUPPORTED);
      expect((await codeOf(decodeImageBrowser(await flat('avif')))).code).toBe(PreprocessErrorCode.IMAGE_UNSUPPORTED);
      expect(calls).toBe(0);
    });
  });
});

describe('caps', () => {
  it('the default pixel cap is 50 MP (checklist §7.4), checked from the header', async () => {
    expect(DEFAULT_MAX_PIXELS).toBe(50_000_000);
    expect(() => checkImageLimits(7071, 7071)).not.toThrow(); // 49,999,041 pixels
    const over = new Uint8Array(
      await sharp({
        create: { width: 7072, height: 7072, channels: 3, background: '#000' },
        limitInputPixels: false,
      })
        .png({ compressionLevel: 9 })
        .toBuffer(),
    );
    const r = await codeOf(decodeImageNode(over));
    expect(r.code).toBe(PreprocessErrorCode.IMAGE_TOO_LARGE);
    expect(r.message).toMatch(/limit is 50000000 pixels/);
  }, 60_000);

  it('decode memory is capped from the header (channels × depth), also for TIFF', async () => {
    const rgba16 = new Uint8Array(
      await sharp({ create: { width: 100, height: 50, channels: 4, background: { r: 1, g: 2, b: 3, alpha: 0.5 } } })
        .png()
        .toColourspace('rgb16')
        .toBuffer(),
    );
    const need = 100 * 50 * 4 * 2;
    expect((await decodeImageNode(rgba16, { maxDecodeBytes: need })).width).toBe(100);
    const r = await codeOf(decodeImageNode(rgba16, { maxDecodeBytes: need - 1 }));
    expect(r.code).toBe(PreprocessErrorCode.IMAGE_TOO_LARGE);
    expect(r.message).toMatch(/needs 40000 bytes/);
    const tiff = await flat('tiff', 100, 50);
    expect((await codeOf(decodeImageNode(tiff, { maxDecodeBytes: 100 * 50 * 3 - 1 }))).code).toBe(
      PreprocessErrorCode.IMAGE_TOO_LARGE,
    );
  });
});

/**
 * A BMP written from the format specification (BITMAPFILEHEADER + BITMAPINFOHEADER or V4 header,
 * rows padded to 4 bytes, bottom-up unless `topDown`), from decoded pixels.
 */
function encodeBmp(
  img: DecodedImage,
  o: { bits: 1 | 4 | 8 | 24 | 32; palette?: number[][]; indices?: Uint8Array; bitfields?: boolean; topDown?: boolean },
): Uint8Array {
  const { width: w, height: h } = img;
  const stride = Math.floor((o.bits * w + 31) / 32) * 4;
  const pal = o.palette ?? [];
  const headerSize = o.bitfields ? 108 : 40;
  const offset = 14 + headerSize + pal.length * 4;
  const out = new Uint8Array(offset + stride * h);
  const dv = new DataView(out.buffer);
  out[0] = 0x42;
  out[1] = 0x4d;
  dv.setUint32(2, out.length, true);
  dv.setUint32(10, offset, true);
  dv.setUint32(14, headerSize, true);
  dv.setInt32(18, w, true);
  dv.setInt32(22, o.topDown ? -h : h, true);
  dv.setUint16(26, 1, true);
  dv.setUint16(28, o.bits, true);
  dv.setUint32(30, o.bitfields ? 3 : 0, true);
  dv.setUint32(46, pal.length, true);
  if (o.bitfields) {
    dv.setUint32(54, 0x00ff0000, true);
    dv.setUint32(58, 0x0000ff00, true);
    dv.setUint32(62, 0x000000ff, true);
    dv.setUint32(66, 0xff000000, true);
  }
  for (const [i, [r, g, b]] of pal.entries())
    out.set([b as number, g as number, r as number, 0], 14 + headerSize + i * 4);
  const ch = img.data.length / (w * h);
  for (let y = 0; y < h; y++) {
    const row = offset + (o.topDown ? y : h - 1 - y) * stride;
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * ch;
      if (o.bits === 1) {
        const at = row + (x >> 3);
        if ((o.indices as Uint8Array)[y * w + x]) out[at] = (out[at] as number) | (0x80 >> (x & 7));
      } else if (o.bits === 4) {
        const at = row + (x >> 1);
        out[at] = (out[at] as number) | (((o.indices as Uint8Array)[y * w + x] as number) << (x & 1 ? 0 : 4));
      } else if (o.bits === 8) {
        out[row + x] = (o.indices as Uint8Array)[y * w + x] as number;
      } else {
        const q = row + x * (o.bits / 8);
        out[q] = img.data[p + 2] as number;
        out[q + 1] = img.data[p + 1] as number;
        out[q + 2] = img.data[p] as number;
        if (o.bits === 32) out[q + 3] = ch === 4 ? (img.data[p + 3] as number) : 0x7f;
      }
    }
  }
  return out;
}

/** A palette and per-pixel indices for an image of ≤ 256 colours (RGB data). */
function paletteOf(img: DecodedImage): { palette: number[][]; indices: Uint8Array } {
  const ch = img.data.length / (img.width * img.height);
  const seen = new Map<string, number>();
  const palette: number[][] = [];
  const indices = new Uint8Array(img.width * img.height);
  for (let i = 0; i < indices.length; i++) {
    const c =
      ch === 1
        ? [img.data[i], img.data[i], img.data[i]]
        : [img.data[i * ch], img.data[i * ch + 1], img.data[i * ch + 2]];
    const k = c.join(',');
    if (!seen.has(k)) {
      seen.set(k, palette.length);
      palette.push(c as number[]);
    }
    indices[i] = seen.get(k) as number;
  }
  return { palette, indices };
}

describe("BMP (Pillow opens it; sharp does not): decoded in Pillow's mode, preprocessing equals the Pillow fixtures", () => {
  const v2 = resolvePreprocessorConfig(OWL2_PREPROCESSOR_CONFIG);
  const index = preprocessIndex();
  const parity = (file: string, bmp: Uint8Array, mode: string) => async () => {
    const png = await decodeImageNode(imageBytes(file));
    const img = await decodeImageNode(bmp);
    expect(img.mode).toBe(mode);
    expect([img.width, img.height]).toEqual([png.width, png.height]);
    if (mode === png.mode) expect(firstDiff(img.data, png.data)).toBeNull();
    // The same pixels in the same mode: the official owl2_pad output of the PNG (Pillow) is reproduced.
    const entry = index.images[file];
    if (mode === png.mode) {
      if (!entry?.tensors.owl2_pad_u8) throw new Error(`${file} has no owl2_pad_u8 fixture`);
      const want = preprocessFixture(entry.fixture).get('owl2_pad_u8');
      expect(want).toBeDefined();
      const got = preprocessToUint8(img, v2, { entryPoint: 'pad' });
      expect(firstDiff(got.data, want?.data as Uint8Array)).toBeNull();
    }
  };
  it('24-bit, bottom-up', async () => {
    const png = await decodeImageNode(imageBytes('rgb_640x480.png'));
    await parity('rgb_640x480.png', encodeBmp(png, { bits: 24 }), 'RGB')();
  });
  it('32-bit BI_RGB (the 4th byte is ignored), top-down, an odd width', async () => {
    const png = await decodeImageNode(imageBytes('rgb_17x5.png'));
    await parity('rgb_17x5.png', encodeBmp(png, { bits: 32, topDown: true }), 'RGB')();
  });
  it('32-bit BITFIELDS with an alpha mask opens as RGBA', async () => {
    const png = await decodeImageNode(imageBytes('rgba_320x240.png'));
    await parity('rgba_320x240.png', encodeBmp(png, { bits: 32, bitfields: true }), 'RGBA')();
  });
  it('8-bit palette opens as P; a grey-ramp palette as L', async () => {
    const p = await decodeImageNode(imageBytes('palette_P_210x150.png'));
    const pal = paletteOf(p);
    expect(pal.palette.length).toBeLessThanOrEqual(256);
    await parity('palette_P_210x150.png', encodeBmp(p, { bits: 8, ...pal }), 'P')();
    const g = await decodeImageNode(imageBytes('gray_L_200x300.png'));
    const ramp = Array.from({ length: 256 }, (_, i) => [i, i, i]);
    await parity('gray_L_200x300.png', encodeBmp(g, { bits: 8, palette: ramp, indices: g.data }), 'L')();
  });
  it('4-bit palette (two pixels a byte, an odd width) opens as P', async () => {
    const w = 7;
    const h = 3;
    const indices = Uint8Array.from({ length: w * h }, (_, i) => (i * 5) % 16);
    const palette = Array.from({ length: 16 }, (_, i) => [i * 16, 255 - i * 8, (i * 37) % 256]);
    const img = await decodeImageNode(
      encodeBmp({ width: w, height: h, mode: 'P', data: new Uint8Array(w * h * 3) }, { bits: 4, palette, indices }),
    );
    expect(img.mode).toBe('P');
    expect(Array.from(img.data)).toEqual(Array.from(indices).flatMap((i) => palette[i] as number[]));
  });
  it('1-bit black and white opens as 1; other 2-colour palettes as P', async () => {
    const img: DecodedImage = {
      width: 13,
      height: 3,
      mode: '1',
      data: Uint8Array.from({ length: 39 }, (_, i) => (i % 3 ? 255 : 0)),
    };
    const indices = Uint8Array.from(img.data, (v) => (v ? 1 : 0));
    const bw = await decodeImageNode(
      encodeBmp(img, {
        bits: 1,
        palette: [
          [0, 0, 0],
          [255, 255, 255],
        ],
        indices,
      }),
    );
    expect(bw.mode).toBe('1');
    expect(Array.from(bw.data)).toEqual(Array.from(img.data));
    const two = await decodeImageNode(
      encodeBmp(img, {
        bits: 1,
        palette: [
          [200, 0, 0],
          [0, 0, 90],
        ],
        indices,
      }),
    );
    expect(two.mode).toBe('P');
    expect(Array.from(two.data.subarray(0, 6))).toEqual([200, 0, 0, 0, 0, 90]);
  });
  it('in the browser decoder too: BMP is decoded by owlet, not by createImageBitmap', async () => {
    const g = globalThis as Record<string, unknown>;
    let calls = 0;
    g.createImageBitmap = async () => {
      calls++;
      return { width: 1, height: 1 };
    };
    g.OffscreenCanvas = class {};
    try {
      const png = await decodeImageNode(imageBytes('rgb_17x5.png'));
      const img = await decodeImageBrowser(encodeBmp(png, { bits: 24 }));
      expect(img.mode).toBe('RGB');
      expect(firstDiff(img.data, png.data)).toBeNull();
      expect(calls).toBe(0);
    } finally {
      delete g.createImageBitmap;
      delete g.OffscreenCanvas;
    }
  });
  it('cut short, RLE, 16-bit, odd headers: typed errors; the pixel cap from the header', async () => {
    const png = await decodeImageNode(imageBytes('rgb_17x5.png'));
    const bmp = encodeBmp(png, { bits: 24 });
    expect((await codeOf(decodeImageNode(bmp.subarray(0, bmp.length - 10)))).code).toBe(
      PreprocessErrorCode.IMAGE_DECODE_FAILED,
    );
    const rle = bmp.slice();
    new DataView(rle.buffer).setUint32(30, 1, true);
    expect((await codeOf(decodeImageNode(rle))).message).toMatch(/RLE/);
    const b16 = bmp.slice();
    new DataView(b16.buffer).setUint16(28, 16, true);
    expect((await codeOf(decodeImageNode(b16))).code).toBe(PreprocessErrorCode.IMAGE_UNSUPPORTED);
    const header52 = bmp.slice();
    new DataView(header52.buffer).setUint32(14, 52, true);
    expect((await codeOf(decodeImageNode(header52))).message).toMatch(/header of 52 bytes/);
    // 8-bit pixels with a black-and-white palette: Pillow would read them as 1-bit ('1'); refused
    const bw8 = encodeBmp(
      { width: 4, height: 2, mode: 'L', data: new Uint8Array(8) },
      {
        bits: 8,
        palette: [
          [0, 0, 0],
          [255, 255, 255],
        ],
        indices: Uint8Array.from([0, 1, 0, 1, 1, 0, 1, 0]),
      },
    );
    expect((await codeOf(decodeImageNode(bw8))).code).toBe(PreprocessErrorCode.IMAGE_UNSUPPORTED);
    const huge = bmp.slice();
    new DataView(huge.buffer).setInt32(18, 100_000, true);
    new DataView(huge.buffer).setInt32(22, 60_000, true);
    expect((await codeOf(decodeImageNode(huge))).code).toBe(PreprocessErrorCode.IMAGE_TOO_LARGE);
  });
});
