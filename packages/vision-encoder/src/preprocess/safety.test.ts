/**
 * Reliability checklist B27 (pixel cap from the header, before decoding) and B28 (hostile or
 * truncated files give a typed error). No timer is asserted on (a loaded machine measures its load):
 * "before decoding" is shown by which check rejected the file — the header check, whose error has no
 * libvips cause — and by the RSS; the elapsed time is printed for information.
 */
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, type OwletError, isOwletError } from '@owlet/core';

import { decodeImageNode } from './decode-node.js';
import { imageBytes } from './fixtures.test-helpers.js';
import { DEFAULT_MAX_PIXELS, readImageHeader } from './header.js';
import { PreprocessErrorCode } from './image.js';
import { MplugOwlImageProcessor } from './processor.js';

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<{ error: OwletError; ms: number }> {
  const t0 = performance.now();
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  const ms = performance.now() - t0;
  if (!isOwletError(err, code)) expect.fail(`expected OwletError ${code}, got ${String(err)}`);
  return { error: err, ms };
}

/** The header check rejected it: its own error, not libvips' limitInputPixels (which has a cause). */
function expectHeaderRejection(error: OwletError, width: number, height: number): void {
  expect(error.cause).toBeUndefined();
  expect(error.details).toMatchObject({ width, height });
}

describe('B27: pixel cap enforced from the header', () => {
  it('a 14000×14000 flat PNG (~600 KB) is rejected before decoding', async () => {
    const png = new Uint8Array(
      await sharp({
        create: { width: 14000, height: 14000, channels: 3, background: { r: 9, g: 99, b: 199 } },
        limitInputPixels: false,
      })
        .png({ compressionLevel: 9 })
        .toBuffer(),
    );
    expect(png.length).toBeLessThan(2_000_000);
    expect(readImageHeader(png)).toMatchObject({ format: 'png', width: 14000, height: 14000 });
    const rss0 = process.memoryUsage().rss;
    const { error, ms } = await expectCode(decodeImageNode(png), PreprocessErrorCode.IMAGE_TOO_LARGE);
    expectHeaderRejection(error, 14000, 14000);
    const grew = (process.memoryUsage().rss - rss0) / 2 ** 20;
    console.log(
      `[preprocess] B27 14000×14000 PNG (${png.length} B): rejected in ${ms.toFixed(1)} ms, RSS +${grew.toFixed(1)} MB`,
    );
    expect(grew).toBeLessThan(64); // a decode would need 14000²·3 B ≈ 560 MB
    // the same through the processor
    const viaProcessor = await expectCode(
      MplugOwlImageProcessor.owl2().preprocess(png),
      PreprocessErrorCode.IMAGE_TOO_LARGE,
    );
    expectHeaderRejection(viaProcessor.error, 14000, 14000);
    expect(14000 * 14000).toBeGreaterThan(DEFAULT_MAX_PIXELS);
  }, 120_000);

  it('just under / at / just over a configured cap', async () => {
    const png = new Uint8Array(
      await sharp({ create: { width: 300, height: 200, channels: 3, background: { r: 1, g: 2, b: 3 } } })
        .png()
        .toBuffer(),
    );
    const at = await decodeImageNode(png, { maxPixels: 300 * 200 });
    expect([at.width, at.height]).toEqual([300, 200]);
    const overPixels = await expectCode(
      decodeImageNode(png, { maxPixels: 300 * 200 - 1 }),
      PreprocessErrorCode.IMAGE_TOO_LARGE,
    );
    expectHeaderRejection(overPixels.error, 300, 200);
    const overEdge = await expectCode(decodeImageNode(png, { maxEdge: 299 }), PreprocessErrorCode.IMAGE_TOO_LARGE);
    expectHeaderRejection(overEdge.error, 300, 200);
    expect((await decodeImageNode(png, { maxEdge: 300 })).width).toBe(300);
    // sharp's own limitInputPixels guard, for a format our header parser does not read (TIFF)
    const tiff = new Uint8Array(
      await sharp({ create: { width: 300, height: 200, channels: 3, background: '#123456' } })
        .tiff()
        .toBuffer(),
    );
    expect(readImageHeader(tiff)).toBeNull();
    const tiffOver = await expectCode(
      decodeImageNode(tiff, { maxPixels: 300 * 200 - 1 }),
      PreprocessErrorCode.IMAGE_TOO_LARGE,
    );
    expect(tiffOver.error.cause).toBeInstanceOf(Error); // rejected by libvips' guard before the pixels
    expect((await decodeImageNode(tiff, { maxPixels: 300 * 200 })).height).toBe(200);
  });
});

describe('B28: hostile and truncated inputs give a typed error', () => {
  const cases: [string, () => Uint8Array][] = [
    [
      'the 16-byte JPEG /9j/wfFR2AD/UdgA/9r/3g==',
      () => new Uint8Array(Buffer.from('/9j/wfFR2AD/UdgA/9r/3g==', 'base64')),
    ],
    ['a PNG cut after 6000 of 13045 bytes', () => imageBytes('rgb_640x480.png').subarray(0, 6000)],
    ['a PNG cut inside its IHDR', () => imageBytes('rgb_640x480.png').subarray(0, 20)],
    ['a JPEG cut after 20000 bytes', () => imageBytes('rgb_480x640.jpg').subarray(0, 20000)],
    ['a JPEG cut after 600 bytes', () => imageBytes('rgb_480x640.jpg').subarray(0, 600)],
    ['empty bytes', () => new Uint8Array(0)],
    ['"malformed"', () => new TextEncoder().encode('malformed')],
    ['HTML', () => new TextEncoder().encode('<!doctype html><html><body>404</body></html>')],
  ];
  for (const [name, bytes] of cases) {
    it(name, async () => {
      const { ms } = await expectCode(decodeImageNode(bytes()), PreprocessErrorCode.IMAGE_DECODE_FAILED);
      console.log(`[preprocess] B28 ${name}: typed error in ${ms.toFixed(1)} ms`);
    });
  }

  it('a PNG with a 1 MB zTXt chunk before IDAT still decodes or fails typed', async () => {
    // chunks are not checked by the header parser; libpng skips unknown-size ancillary data
    const src = imageBytes('rgb_17x5.png');
    const body = new Uint8Array(1 << 20).fill(0x41);
    const type = new TextEncoder().encode('zTXt');
    const chunk = new Uint8Array(12 + body.length);
    new DataView(chunk.buffer).setUint32(0, body.length);
    chunk.set(type, 4);
    chunk.set(body, 8); // CRC left zero: libpng reports a CRC error on an ancillary chunk
    const withChunk = new Uint8Array(src.length + chunk.length);
    withChunk.set(src.subarray(0, 33));
    withChunk.set(chunk, 33);
    withChunk.set(src.subarray(33), 33 + chunk.length);
    try {
      const img = await decodeImageNode(withChunk);
      expect([img.width, img.height]).toEqual([17, 5]);
    } catch (e) {
      expect(isOwletError(e, PreprocessErrorCode.IMAGE_DECODE_FAILED)).toBe(true);
    }
  });
});
