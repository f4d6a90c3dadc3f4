import { isOwletError } from '@owlet/core';
import { maxAbsDiff } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { positionTables64 } from './reference64.testutil.js';
import { sincos1d, sincos2d } from './sincos.js';

describe('sin-cos position tables', () => {
  it('released size (64 queries, 32×32 grid + CLS, width 1024) equals the float64 formula to float32 rounding', () => {
    const q = sincos1d(
      1024,
      Array.from({ length: 64 }, (_, i) => i),
    );
    const k = sincos2d(1024, 32, true);
    expect(q.length).toBe(64 * 1024);
    expect(k.length).toBe(1025 * 1024);
    const ref = positionTables64(1024, 64, 32, true, 'correct');
    // |angle| ≤ 63 rad: float32 rounding of ω and p·ω bounds the error well below the 1e-5 fixture tolerance.
    expect(maxAbsDiff(q, ref.qPos).maxAbs).toBeLessThan(1e-5);
    expect(maxAbsDiff(k, ref.kPos).maxAbs).toBeLessThan(1e-5);
    expect(k.subarray(0, 1024).every((v) => v === 0)).toBe(true); // CLS row
  });

  it('patch n = row·grid + col: first half encodes the column, second half the row; sines before cosines', () => {
    const d = 8;
    const grid = 3;
    const k = sincos2d(d, grid, false);
    const row = 2;
    const col = 1;
    const at = (n: number, i: number) => k[n * d + i] as number;
    const n = row * grid + col;
    // Quarter widths: [sin(col·ω), cos(col·ω), sin(row·ω), cos(row·ω)] with ω = 1, 1/100 for d/2 = 4.
    expect(at(n, 0)).toBeCloseTo(Math.sin(col), 6);
    expect(at(n, 1)).toBeCloseTo(Math.sin(col / 100), 6);
    expect(at(n, 2)).toBeCloseTo(Math.cos(col), 6);
    expect(at(n, 4)).toBeCloseTo(Math.sin(row), 6);
    expect(at(n, 6)).toBeCloseTo(Math.cos(row), 6);
  });

  it('rejects widths the tables cannot be built for', () => {
    expect(() => sincos1d(7, [0])).toThrow(/multiple of 2, got 7/);
    expect(() => sincos2d(6, 2, true)).toThrow(/multiple of 4, got 6/);
    try {
      sincos2d(8, 0, true);
    } catch (e) {
      expect(isOwletError(e, 'INVALID_ARGUMENT')).toBe(true);
      return;
    }
    throw new Error('expected an error');
  });
});
