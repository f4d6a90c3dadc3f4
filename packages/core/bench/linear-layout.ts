/**
 * Measures the two Linear weight layouts of the ops seam on each backend:
 * `[out, in]` multiplied with a transposed B vs `[in, out]` multiplied directly.
 *   npx tsx bench/linear-layout.ts [backend ...]   (default: wasm cpu)
 */
import * as tf from '@tensorflow/tfjs-core';

import { initBackend, type BackendName } from '../src/index.js';

const backends = (process.argv.slice(2).length ? process.argv.slice(2) : ['wasm', 'cpu']) as BackendName[];
const [n, inF, out] = [1089, 1024, 1024];
const results: Record<string, unknown>[] = [];
for (const b of backends) {
  await initBackend(b);
  const x = tf.randomNormal([n, inF]);
  const w = tf.randomNormal([out, inF]);
  const wt = tf.transpose(w);
  const time = async (f: () => tf.Tensor, runs: number) => {
    const warm = f();
    await warm.data();
    warm.dispose();
    const ts: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const y = f();
      await y.data();
      ts.push(performance.now() - t0);
      y.dispose();
    }
    ts.sort((a, c) => a - c);
    return ts[Math.floor(ts.length / 2)] as number;
  };
  const runs = b === 'cpu' ? 1 : 3;
  const outIn = await time(() => tf.matMul(x, w, false, true), runs);
  const inOut = await time(() => tf.matMul(x, wt), runs);
  const gflop = (2 * n * inF * out) / 1e9;
  const row = {
    backend: b,
    shape: `${n}x${inF} · ${inF}x${out}`,
    out_in_ms: +outIn.toFixed(1),
    in_out_ms: +inOut.toFixed(1),
    out_in_gflops: +(gflop / (outIn / 1000)).toFixed(2),
    in_out_gflops: +(gflop / (inOut / 1000)).toFixed(2),
  };
  results.push(row);
  console.log(row);
  tf.dispose([x, w, wt]);
}
console.log(JSON.stringify(results));
