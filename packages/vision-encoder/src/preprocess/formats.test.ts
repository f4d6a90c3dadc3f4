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
import { DEFAULT_MAX_PIXELS, checkImageLimits, sniffImageFormat } from './header.js';
import { PreprocessErrorCode } from './image.js';

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
    ['BMP (not decoded by owlet yet)', () => Uint8Array.from([0x42, 0x4d, ...new Array(60).fill(0)]), /BMP/],
  ];
  for (const [name, make, format] of cases) {
    it(name, async () => {
      const r = await codeOf(decodeImageNode(await make()));
      expect(r.code, r.message).toBe(PreprocessErrorCode.IMAGE_UNSUPPORTED);
      expect(r.message).toMatch(format);
      expect(r.message).toMatch(/owlet decodes PNG, JPEG, GIF, WebP, TIFF/);
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
