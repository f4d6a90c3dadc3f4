/**
 * Reliability checklist B26: 1×1, 1×2, 2×1, 1×65535 and 65535×1 images give valid outputs on every
 * entry point, and memory stays far below the long-edge square (65535² × 3 B ≈ 12.9 GB) that the
 * official pipeline allocates. Checked deterministically: every typed-array buffer the pipeline
 * allocates is counted (views of existing buffers are not allocations) and none reaches 16 MB — the
 * padded square, or any full-length intermediate of a 65535-pixel edge (65535 × 448 × 3 B ≈ 84 MB),
 * would. The bytes allocated per call are printed. The process's peak RSS, which depends on when the garbage collector
 * runs (a loaded machine measured 74 MB against a 64 MB bound), is printed for information only.
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

const TYPED_ARRAYS = [
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
] as const;

/**
 * Runs `fn` while counting the typed-array buffers it allocates: each constructor is wrapped in a
 * Proxy (instances and `instanceof` stay the real ones), and slice/map/filter, which allocate
 * through the species constructor, are counted on the shared typed-array prototype.
 */
function countAllocations<T>(fn: () => T): { result: T; largest: number; total: number } {
  const g = globalThis as unknown as Record<string, unknown>;
  const saved = TYPED_ARRAYS.map((name) => g[name]);
  const proto = Object.getPrototypeOf(Uint8Array.prototype) as Record<string, unknown>;
  const methods = ['slice', 'map', 'filter'] as const;
  const savedMethods = methods.map((m) => proto[m]);
  let largest = 0;
  let total = 0;
  const count = (v: ArrayBufferView) => {
    largest = Math.max(largest, v.byteLength);
    total += v.byteLength;
  };
  TYPED_ARRAYS.forEach((name, i) => {
    g[name] = new Proxy(saved[i] as new (...args: unknown[]) => ArrayBufferView, {
      construct(target, args, newTarget) {
        const v = Reflect.construct(target, args, newTarget) as ArrayBufferView;
        // new X(buffer, offset, length) views memory that exists already
        if (!(args[0] instanceof ArrayBuffer || args[0] instanceof SharedArrayBuffer)) count(v);
        return v;
      },
    });
  });
  methods.forEach((m, i) => {
    const original = savedMethods[i] as (...args: unknown[]) => ArrayBufferView;
    proto[m] = function (this: ArrayBufferView, ...args: unknown[]) {
      const v = original.apply(this, args);
      count(v);
      return v;
    };
  });
  try {
    const result = fn();
    return { result, largest, total };
  } finally {
    TYPED_ARRAYS.forEach((name, i) => {
      g[name] = saved[i];
    });
    methods.forEach((m, i) => {
      proto[m] = savedMethods[i];
    });
  }
}

const MB = 2 ** 20;

describe('B26: degenerate and extreme aspect ratios', () => {
  const cases: [number, number][] = [
    [1, 1],
    [1, 2],
    [2, 1],
    [1, 65535],
    [65535, 1],
  ];
  const entries: EntryPoint[] = ['pad', 'resize', 'clip_default', 'v1'];

  it('every entry point gives a valid output; no buffer of 16 MB or more is ever allocated', () => {
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
        const {
          result: out,
          largest,
          total,
        } = countAllocations(() => preprocessToUint8(img, cfg, { entryPoint: entry }));
        const ms = performance.now() - t0;
        const heap1 = process.memoryUsage();
        const side = entry === 'v1' ? 224 : 448;
        expect([out.height, out.width], `${w}×${h} ${entry}`).toEqual([side, side]);
        expect(out.data.length).toBe(3 * side * side);
        expect(out.exact).toBe(true);
        expect(largest, `${w}×${h} ${entry}: largest buffer`).toBeGreaterThanOrEqual(out.data.byteLength); // counted
        expect(largest, `${w}×${h} ${entry}: largest buffer`).toBeLessThan(16 * MB);
        const grow = (heap1.heapUsed + heap1.arrayBuffers - heap0.heapUsed - heap0.arrayBuffers) / 2 ** 20;
        report.push(
          `${w}×${h} ${entry}: ${ms.toFixed(0)} ms, largest buffer ${(largest / MB).toFixed(2)} MB, allocated ${(total / MB).toFixed(1)} MB, heap+buffers ${grow >= 0 ? '+' : ''}${grow.toFixed(1)} MB`,
        );
      }
    }
    const growth = (peakRssBytes() - peak0) / 2 ** 20;
    console.log(
      `[preprocess] B26\n  ${report.join('\n  ')}\n  peak RSS growth over all cases: ${growth.toFixed(1)} MB`,
    );
  }, 120_000);
});
