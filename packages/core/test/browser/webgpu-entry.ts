// Bundled for headless Chromium by backend.browser.test.ts: initBackend('webgpu') in a real
// browser, then the attention and rmsNorm ops against their float64 references.
import * as tf from '@tensorflow/tfjs-core';

import { attention, initBackend, rmsNorm } from '../../src/index.js';
import { refAttention, refRmsNorm } from '../../src/ops/reference.test-helpers.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296 - 0.5;
  };
}
const rnd = (n: number, seed: number) => {
  const r = lcg(seed);
  return Float64Array.from({ length: n }, () => Math.fround(r()));
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
};

async function main() {
  const info = await initBackend('webgpu');
  const dims = { B: 1, H: 2, Hkv: 2, Lq: 3, Lk: 5, D: 8 };
  const q = rnd(48, 1);
  const k = rnd(80, 2);
  const v = rnd(80, 3);
  const out = attention(
    tf.tensor(Float32Array.from(q), [1, 2, 3, 8]),
    tf.tensor(Float32Array.from(k), [1, 2, 5, 8]),
    tf.tensor(Float32Array.from(v), [1, 2, 5, 8]),
    { causal: true },
  );
  const attnDiff = maxDiff(await out.data(), refAttention(q, k, v, dims, true));
  const x = rnd(32, 4);
  const w = rnd(8, 5);
  const y = rmsNorm(tf.tensor(Float32Array.from(x), [4, 8]), tf.tensor(Float32Array.from(w), [8]), 1e-6);
  const rmsDiff = maxDiff(await y.data(), refRmsNorm(x, 8, w, 1e-6));
  return {
    backend: tf.getBackend(),
    name: info.name,
    runtime: info.runtime,
    device: info.device,
    attnDiff,
    rmsDiff,
  };
}

main().then(
  (r) => ((globalThis as Record<string, unknown>).__owletResult = r),
  (e: unknown) => ((globalThis as Record<string, unknown>).__owletError = String((e as Error)?.stack ?? e)),
);
