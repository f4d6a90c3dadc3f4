/**
 * Test-only reading of the preprocess fixtures (`shared/fixtures/preprocess/`) through the
 * checkpoint reader of @owlet/core (`loadFixture`).
 */
import { readFileSync } from 'node:fs';

import { fixturePath, loadFixture } from '@owlet/test-utils';

export interface StoredArray {
  dtype: 'U8' | 'F32';
  shape: number[];
  data: Uint8Array | Float32Array;
}

/** Every U8 / F32 tensor of a fixture file (path relative to the fixtures folder). */
function readStoredArrays(relPath: string): Map<string, StoredArray> {
  const archive = loadFixture(relPath);
  const out = new Map<string, StoredArray>();
  for (const key of archive.keys()) {
    const { dtype, shape } = archive.info(key);
    if (dtype === 'U8') out.set(key, { dtype, shape, data: archive.rawBytes(key).slice() });
    else if (dtype === 'F32') out.set(key, { dtype, shape, data: archive.array(key) as Float32Array });
    else throw new Error(`${relPath}: ${key} has dtype ${dtype}; the preprocess fixtures hold U8 and F32`);
  }
  return out;
}

export interface PreprocessIndexEntry {
  mode: string;
  size_wh: [number, number];
  fixture: string;
  tensors: Record<string, string>;
  paths_computed: string[];
}

export function preprocessIndex(): { lut: string; images: Record<string, PreprocessIndexEntry> } {
  return JSON.parse(readFileSync(fixturePath('preprocess', 'index.json'), 'utf8'));
}

export function preprocessFixture(name: string): Map<string, StoredArray> {
  return readStoredArrays(`preprocess/${name}`);
}

export function imageBytes(file: string): Uint8Array {
  return new Uint8Array(readFileSync(fixturePath('preprocess', 'images', file)));
}

/** Index and value of the first difference of two equal-length arrays, or null. */
export function firstDiff(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): { index: number; a: number; b: number; count: number; maxAbs: number } | null {
  if (a.length !== b.length) return { index: -1, a: a.length, b: b.length, count: -1, maxAbs: Infinity };
  let first = -1;
  let count = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      if (first < 0) first = i;
      count++;
      maxAbs = Math.max(maxAbs, Math.abs(a[i]! - b[i]!));
    }
  }
  return first < 0 ? null : { index: first, a: a[first]!, b: b[first]!, count, maxAbs };
}
