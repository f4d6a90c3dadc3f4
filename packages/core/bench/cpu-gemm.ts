/**
 * Owned CPU kernels alone: GEMV (decode) and GEMM (prefill) throughput per weight dtype and thread
 * count on a ~1B LLaMA MLP shape, through `linear()` (tfjs tensor in, tfjs tensor out).
 *   npx tsx packages/core/bench/cpu-gemm.ts [threads...]
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { PackedWeight, disableCpuEngine, enableCpuEngine, linear } from '../src/index.js';

await tf.setBackend('cpu');
const [out, k] = [5632, 2048];
const values = new Float32Array(out * k).map((_, i) => Math.sin(i) * 0.02);
const threadsList = process.argv.slice(2).map(Number);
for (const threads of threadsList.length ? threadsList : [1, 2]) {
  await enableCpuEngine({ threads });
  for (const dtype of ['q4', 'q8', 'fp16', 'fp32'] as const) {
    const w = PackedWeight.fromFloat32(values, [out, k], dtype);
    for (const n of [1, 64]) {
      const x = tf.randomNormal([n, k]);
      const reps = n === 1 ? 40 : 4;
      tf.dispose(linear(x, w));
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) tf.dispose(linear(x, w));
      const ms = (performance.now() - t0) / reps;
      const gbs = w.byteLength / ms / 1e6;
      const gflops = (2 * n * out * k) / ms / 1e6;
      console.log(
        `${threads}t ${dtype} n=${n}: ${ms.toFixed(2)} ms, ${gbs.toFixed(1)} GB/s weights, ${gflops.toFixed(1)} GFLOP/s`,
      );
      x.dispose();
    }
    w.dispose();
  }
  disableCpuEngine();
}
