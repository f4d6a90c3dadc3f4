/**
 * Reliability checklist B26: 1×1, 1×2, 2×1, 1×65535 and 65535×1 images give valid outputs on every
 * entry point, and peak memory stays far below the long-edge square (65535² × 3 B ≈ 12.9 GB) that
 * the official pipeline allocates: the growth of the process's peak RSS must stay < 64 MB.
 * Runs in its own file (own process) so the peak-RSS baseline is this file's.
 */
import { describe, expect, it } from 'vitest';

import { OWL1_PREPROCESSOR_CONFIG, OWL2_PREPROCESSOR_CONFIG, resolvePreprocessorConfig } from './config.js';
import type { DecodedImage } from './image.js';
import { preprocessToUint8, type EntryPoint } from './pipeline.js';

const v2 = resolvePreprocessorConfig(OWL2_PREPROCESSOR_CONFIG);
const v1 = resolvePreprocessorConfig(OWL1_PREPROCESSOR_CONFIG);

function gradient(w: number, h: number): DecodedImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    data[i * 3] = (i * 7) & 255;
    data[i * 3 + 1] = (i >> 3) & 255;
    data[i * 3 + 2] = 255 - ((i * 13) & 255);
  }
  return { width: w, height: h, mode: 'RGB', data };
}

const peakRssBytes = () => process.resourceUsage().maxRSS * 1024;

describe('B26: degenerate and extreme aspect ratios', () => {
  const cases: [number, number][] = [
    [1, 1],
    [1, 2],
    [2, 1],
    [1, 65535],
    [65535, 1],
  ];
  const entries: EntryPoint[] = ['pad', 'resize', 'clip_default', 'v1'];

  it('every entry point gives a valid output and peak RSS grows < 64 MB', () => {
    // warm-up (JIT, V8 heap sizing) on a 1×4096 / 4096×1 pair, so the measurement is the cases' own
    for (const [w, h] of [
      [1, 4096],
      [4096, 1],
    ] as const) {
      for (const entry of entries) preprocessToUint8(gradient(w, h), entry === 'v1' ? v1 : v2, { entryPoint: entry });
    }
    const peak0 = peakRssBytes();
    const report: string[] = [];
    for (const [w, h] of cases) {
      const img = gradient(w, h);
      for (const entry of entries) {
        const cfg = entry === 'v1' ? v1 : v2;
        const heap0 = process.memoryUsage();
        const t0 = performance.now();
        const out = preprocessToUint8(img, cfg, { entryPoint: entry });
        const ms = performance.now() - t0;
        const heap1 = process.memoryUsage();
        const side = entry === 'v1' ? 224 : 448;
        expect([out.height, out.width], `${w}×${h} ${entry}`).toEqual([side, side]);
        expect(out.data.length).toBe(3 * side * side);
        expect(out.exact).toBe(true);
        const grow = (heap1.heapUsed + heap1.arrayBuffers - heap0.heapUsed - heap0.arrayBuffers) / 2 ** 20;
        report.push(
          `${w}×${h} ${entry}: ${ms.toFixed(0)} ms, heap+buffers ${grow >= 0 ? '+' : ''}${grow.toFixed(1)} MB`,
        );
      }
    }
    const growth = (peakRssBytes() - peak0) / 2 ** 20;
    console.log(
      `[preprocess] B26\n  ${report.join('\n  ')}\n  peak RSS growth over all cases: ${growth.toFixed(1)} MB`,
    );
    expect(growth).toBeLessThan(64);
  }, 120_000);
});
