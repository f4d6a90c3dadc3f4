/**
 * MplugOwlImageProcessor: tensor output on every backend (values = the float32 path, no leaks),
 * tensor / raw / browser inputs, config resolution and its errors.
 */
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { isOwletError } from '@owlet/core';
import { describeBackends, expectNoLeaks } from '@owlet/test-utils';

import { OWL2_PREPROCESSOR_CONFIG, resolvePreprocessorConfig } from './config.js';
import { decodeImageBrowser } from './decode-browser.js';
import { decodeImageNode } from './decode-node.js';
import { firstDiff, imageBytes, preprocessFixture } from './fixtures.test-helpers.js';
import { readImageHeader } from './header.js';
import { PreprocessErrorCode, type DecodedImage } from './image.js';
import { MplugOwlImageProcessor } from './processor.js';

const tiny = { size: 6, crop_size: 6, resolution: 6 };

function rgbImage(w: number, h: number, seed = 1): DecodedImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + seed * 11) % 256;
  return { width: w, height: h, mode: 'RGB', data };
}

describeBackends('MplugOwlImageProcessor tensors', ({ it }) => {
  it('pixelValuesTensor equals preprocess() and leaks nothing', async () => {
    const proc = new MplugOwlImageProcessor(tiny, { entryPoint: 'pad' });
    const imgs = [rgbImage(9, 4, 1), rgbImage(3, 7, 2)];
    const { data, shape } = await proc.preprocess(imgs);
    await expectNoLeaks(async () => {
      const t = await proc.pixelValuesTensor(imgs);
      expect(t.shape).toEqual(shape);
      expect(t.dtype).toBe('float32');
      expect(firstDiff(await t.data(), data)).toBeNull();
      t.dispose();
    }, 'pixelValuesTensor');
  });

  it('a [H, W, C] tensor input equals the same pixels as a decoded image, and is not disposed', async () => {
    const proc = new MplugOwlImageProcessor(tiny, { entryPoint: 'resize' });
    const img = rgbImage(5, 8, 3);
    const t = tf.tensor3d(Array.from(img.data), [8, 5, 3], 'int32');
    await expectNoLeaks(async () => {
      const a = await proc.preprocess(t);
      const b = await proc.preprocess(img);
      expect(firstDiff(a.data, b.data)).toBeNull();
    }, 'tensor input');
    expect(t.isDisposed).toBe(false);
    const bad = tf.tensor3d([0.5, 1, 2], [1, 1, 3]);
    await expect(proc.preprocess(bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const badShape = tf.tensor2d([1, 2], [1, 2]);
    await expect(proc.preprocess(badShape)).rejects.toMatchObject({ code: 'SHAPE_MISMATCH' });
    tf.dispose([t, bad, badShape]);
  });
});

describe('MplugOwlImageProcessor inputs and config', () => {
  it('raw RGBA (ImageData-like) input equals the decoded PNG path', async () => {
    const bytes = imageBytes('rgba_320x240.png');
    const decoded = await decodeImageNode(bytes);
    const proc = MplugOwlImageProcessor.owl1();
    const raw = { data: new Uint8ClampedArray(decoded.data), width: 320, height: 240, channels: 4 as const };
    const a = await proc.preprocess(raw);
    const b = await proc.preprocess(bytes);
    expect(firstDiff(a.data, b.data)).toBeNull();
    // and both equal the fixture through the LUT
    const u8 = preprocessFixture('rgba_320x240.png.safetensors').get('owl1_u8')!.data;
    const lut = proc.pixelLUT;
    const plane = 224 * 224;
    const expected = Float32Array.from(u8, (v, i) => lut[Math.floor(i / plane) * 256 + v]!);
    expect(firstDiff(a.data, expected)).toBeNull();
  });

  it('mixed batch sizes without a center crop are refused with both sizes named', async () => {
    const proc = new MplugOwlImageProcessor({ ...tiny, do_center_crop: false }, { entryPoint: 'clip_default' });
    await expect(proc.preprocess([rgbImage(6, 12), rgbImage(12, 6)])).rejects.toThrow(/12×6.*6×12|6×12.*12×6/);
  });

  it('resolves the released configs and rejects bad fields with INVALID_CONFIG', () => {
    const c = resolvePreprocessorConfig(OWL2_PREPROCESSOR_CONFIG);
    expect([c.shortest_edge, c.crop_height, c.crop_width, c.resample]).toEqual([448, 448, 448, 3]);
    const v1 = resolvePreprocessorConfig({ resolution: 224 });
    expect([v1.shortest_edge, v1.crop_height, v1.resolution]).toEqual([224, 224, 224]);
    expect(
      resolvePreprocessorConfig({ size: { shortest_edge: 336 }, crop_size: { height: 300, width: 320 } }),
    ).toMatchObject({
      shortest_edge: 336,
      crop_height: 300,
      crop_width: 320,
    });
    for (const bad of [
      { size: 0 },
      { size: { height: 3, width: 3 } },
      { resample: 9 },
      { image_std: [1, 0, 1] },
      { image_mean: [1, 2] },
      { do_resize: 'yes' },
    ]) {
      let err: unknown;
      try {
        resolvePreprocessorConfig(bad as never);
      } catch (e) {
        err = e;
      }
      expect(isOwletError(err, 'INVALID_CONFIG'), JSON.stringify(bad)).toBe(true);
    }
    expect(() => new MplugOwlImageProcessor(tiny, { entryPoint: 'square' as never })).toThrow(/unknown entry point/);
  });

  it('the header parser reads PNG/JPEG sizes and Pillow modes', async () => {
    expect(readImageHeader(imageBytes('palette_P_210x150.png'))).toMatchObject({ width: 210, height: 150, mode: 'P' });
    expect(readImageHeader(imageBytes('gray_L_200x300.png'))).toMatchObject({ width: 200, height: 300, mode: 'L' });
    expect(readImageHeader(imageBytes('rgba_320x240.png'))).toMatchObject({ mode: 'RGBA' });
    expect(readImageHeader(imageBytes('rgb_480x640.jpg'))).toMatchObject({
      format: 'jpeg',
      width: 480,
      height: 640,
      mode: 'RGB',
    });
    const webp = new Uint8Array(
      await sharp({ create: { width: 33, height: 21, channels: 3, background: '#808080' } })
        .webp()
        .toBuffer(),
    );
    expect(readImageHeader(webp)).toMatchObject({ format: 'webp', width: 33, height: 21 });
    const gif = new Uint8Array(
      await sharp({ create: { width: 13, height: 8, channels: 3, background: '#808080' } })
        .gif()
        .toBuffer(),
    );
    expect(readImageHeader(gif)).toMatchObject({ format: 'gif', width: 13, height: 8, mode: 'P' });
    expect(readImageHeader(new TextEncoder().encode('not an image'))).toBeNull();
  });

  it('CMYK JPEG decodes as CMYK and converts with Pillow’s formula', async () => {
    const jpg = new Uint8Array(
      await sharp(imageBytes('rgb_17x5.png')).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer(),
    );
    const img = await decodeImageNode(jpg);
    expect(img.mode).toBe('CMYK');
    expect(img.data.length).toBe(17 * 5 * 4);
    const out = await MplugOwlImageProcessor.owl2().preprocess(jpg);
    expect(out.shape).toEqual([1, 3, 448, 448]);
  });
});

describe('browser decoding (createImageBitmap / OffscreenCanvas stubbed)', () => {
  function stubBrowser(rgba: Uint8ClampedArray, w: number, h: number) {
    const g = globalThis as Record<string, unknown>;
    const saved = { c: g.createImageBitmap, o: g.OffscreenCanvas };
    let decodes = 0;
    g.createImageBitmap = async () => {
      decodes++;
      return { width: w, height: h, close() {} };
    };
    g.OffscreenCanvas = class {
      getContext() {
        return { drawImage() {}, getImageData: () => ({ data: rgba }) };
      }
    };
    return {
      decodes: () => decodes,
      restore() {
        g.createImageBitmap = saved.c;
        g.OffscreenCanvas = saved.o;
      },
    };
  }

  it('rebuilds the Pillow mode from the header (L, P) and matches the Node decode', async () => {
    for (const file of ['gray_L_200x300.png', 'palette_P_210x150.png']) {
      const node = await decodeImageNode(imageBytes(file));
      const rgba = new Uint8ClampedArray(node.width * node.height * 4);
      const ch = node.mode === 'L' ? 1 : 3;
      for (let i = 0; i < node.width * node.height; i++) {
        for (let c = 0; c < 3; c++) rgba[i * 4 + c] = node.data[i * ch + (ch === 1 ? 0 : c)]!;
        rgba[i * 4 + 3] = 255;
      }
      const stub = stubBrowser(rgba, node.width, node.height);
      try {
        const img = await decodeImageBrowser(imageBytes(file));
        expect(img.mode).toBe(node.mode);
        expect(firstDiff(img.data, node.data)).toBeNull();
      } finally {
        stub.restore();
      }
    }
  });

  it('rejects an oversized header before the browser decodes anything', async () => {
    const png = imageBytes('rgb_640x480.png');
    const stub = stubBrowser(new Uint8ClampedArray(4), 1, 1);
    try {
      await expect(decodeImageBrowser(png, { maxPixels: 640 * 480 - 1 })).rejects.toMatchObject({
        code: PreprocessErrorCode.IMAGE_TOO_LARGE,
      });
      expect(stub.decodes()).toBe(0);
    } finally {
      stub.restore();
    }
  });

  it('without createImageBitmap it fails with IMAGE_UNSUPPORTED', async () => {
    await expect(decodeImageBrowser(imageBytes('rgb_17x5.png'))).rejects.toMatchObject({
      code: PreprocessErrorCode.IMAGE_UNSUPPORTED,
    });
  });
});
