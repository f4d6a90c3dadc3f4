/**
 * Parity with shared/fixtures/preprocess (Pillow 9.4 + transformers CLIPImageProcessor):
 * every PNG × every stored path uint8-exact, the JPEG through the stored Pillow decode, the
 * `rgb` conversions, and pixel_values = LUT[u8] against the stored float32.
 */
import { describe, expect, it } from 'vitest';
import { maxAbsDiff } from '@owlet/test-utils';

import { OWL1_PREPROCESSOR_CONFIG, OWL2_PREPROCESSOR_CONFIG, resolvePreprocessorConfig } from './config.js';
import { decodeImageNode } from './decode-node.js';
import { firstDiff, imageBytes, preprocessFixture, preprocessIndex } from './fixtures.test-helpers.js';
import { convertToRGB, type DecodedImage } from './image.js';
import { applyLUT, pixelLUT, preprocessToUint8, type EntryPoint } from './pipeline.js';
import { MplugOwlImageProcessor } from './processor.js';

const index = preprocessIndex();
const v2 = resolvePreprocessorConfig(OWL2_PREPROCESSOR_CONFIG);
const v1 = resolvePreprocessorConfig(OWL1_PREPROCESSOR_CONFIG);
const PATHS: Record<string, { entry: EntryPoint; cfg: typeof v2 }> = {
  owl2_pad: { entry: 'pad', cfg: v2 },
  owl2_resize: { entry: 'resize', cfg: v2 },
  owl1: { entry: 'v1', cfg: v1 },
  clip_default: { entry: 'clip_default', cfg: v2 },
};

function storedU8Paths(file: string): string[] {
  return Object.keys(index.images[file]!.tensors)
    .filter((k) => k.endsWith('_u8'))
    .map((k) => k.slice(0, -3));
}

const images = Object.keys(index.images);
const pngs = images.filter((f) => f.endsWith('.png'));
const jpegs = images.filter((f) => f.endsWith('.jpg'));

describe('preprocess fixtures', () => {
  it('covers the 7 fixture images (6 PNG, 1 JPEG)', () => {
    expect(pngs.length).toBe(6);
    expect(jpegs.length).toBe(1);
  });

  for (const file of pngs) {
    const entry = index.images[file]!;
    for (const path of storedU8Paths(file)) {
      it(`${file} ${path}_u8 is byte-identical`, async () => {
        const img = await decodeImageNode(imageBytes(file));
        expect(img.mode).toBe(entry.mode);
        expect([img.width, img.height]).toEqual(entry.size_wh);
        const { entry: ep, cfg } = PATHS[path]!;
        const out = preprocessToUint8(img, cfg, { entryPoint: ep });
        const expected = preprocessFixture(entry.fixture).get(`${path}_u8`)!;
        expect([3, out.height, out.width]).toEqual(expected.shape);
        expect(out.exact).toBe(true);
        expect(firstDiff(out.data, expected.data)).toBeNull();
      });
    }
  }

  for (const file of pngs.filter((f) => index.images[f]!.tensors.rgb)) {
    it(`${file}: convert('RGB') equals the stored rgb`, async () => {
      const img = await decodeImageNode(imageBytes(file));
      const rgb = convertToRGB(img);
      expect(firstDiff(rgb.data, preprocessFixture(index.images[file]!.fixture).get('rgb')!.data)).toBeNull();
    });
  }

  it('rgb_17x5.png decodes to the stored Pillow decode', async () => {
    const img = await decodeImageNode(imageBytes('rgb_17x5.png'));
    expect(firstDiff(img.data, preprocessFixture('rgb_17x5.png.safetensors').get('decoded')!.data)).toBeNull();
  });

  for (const file of jpegs) {
    const entry = index.images[file]!;
    const fx = () => preprocessFixture(entry.fixture);
    const decoded = (): DecodedImage => {
      const d = fx().get('decoded')!;
      return { width: d.shape[1]!, height: d.shape[0]!, mode: 'RGB', data: d.data as Uint8Array };
    };
    for (const path of storedU8Paths(file)) {
      it(`${file} ${path}_u8 from the stored Pillow decode is byte-identical`, () => {
        const { entry: ep, cfg } = PATHS[path]!;
        const out = preprocessToUint8(decoded(), cfg, { entryPoint: ep });
        expect(firstDiff(out.data, fx().get(`${path}_u8`)!.data)).toBeNull();
      });
    }
    it(`${file}: sharp's decode vs Pillow's (reported) and the paths from it`, async () => {
      const img = await decodeImageNode(imageBytes(file));
      const ref = decoded();
      expect([img.width, img.height, img.mode]).toEqual([ref.width, ref.height, 'RGB']);
      const d = firstDiff(img.data, ref.data);
      const report: Record<string, unknown> = { decode: d ? { differing: d.count, maxAbs: d.maxAbs } : 'identical' };
      for (const path of storedU8Paths(file)) {
        const { entry: ep, cfg } = PATHS[path]!;
        const out = preprocessToUint8(img, cfg, { entryPoint: ep });
        const e = firstDiff(out.data, fx().get(`${path}_u8`)!.data);
        report[path] = e ? { differing: e.count, maxAbs: e.maxAbs } : 'identical';
      }
      // libjpeg-turbo (ISLOW, fancy upsampling) in both sharp and Pillow: at most rounding-level differences
      console.log(`[preprocess] ${file}: sharp vs Pillow decode`, JSON.stringify(report));
      expect(d === null || d.maxAbs <= 2).toBe(true);
    });
  }

  it('the LUT equals the stored pixel_lut bit for bit', () => {
    const lutFx = preprocessFixture(index.lut);
    const stored = lutFx.get('pixel_lut')!.data as Float32Array;
    const lut = pixelLUT(v2);
    expect(firstDiff(lut, stored)).toBeNull();
  });

  for (const [file, key, proc] of [
    ['rgb_640x480.png', 'owl2_pad_pixel_values', MplugOwlImageProcessor.owl2({ entryPoint: 'pad' })],
    ['rgb_640x480.png', 'owl1_pixel_values', MplugOwlImageProcessor.owl1()],
  ] as const) {
    it(`${file} ${key}: processor output equals the stored float32 (max abs ≤ 1e-6)`, async () => {
      const stored = preprocessFixture(index.images[file]!.fixture).get(key)!;
      const { data, shape } = await proc.preprocess(imageBytes(file));
      expect(shape).toEqual([1, ...stored.shape]);
      const { maxAbs } = maxAbsDiff(data, stored.data);
      console.log(`[preprocess] ${file} ${key}: max abs diff ${maxAbs}`);
      expect(maxAbs).toBeLessThanOrEqual(1e-6);
      expect(firstDiff(data, stored.data)).toBeNull(); // bit-exact
    });
  }

  it('every stored u8 path maps to pixel values through the LUT (applyLUT)', () => {
    const fx = preprocessFixture('rgb_640x480.png.safetensors');
    const u8 = fx.get('owl1_u8')!;
    const out = new Float32Array(u8.data.length);
    applyLUT({ data: u8.data as Uint8Array, height: 224, width: 224, exact: true }, pixelLUT(v1), out);
    expect(firstDiff(out, fx.get('owl1_pixel_values')!.data)).toBeNull();
  });
});
