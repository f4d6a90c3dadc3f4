/**
 * The core demo: picks the best backend available here (or the one named on the command line),
 * says which and why, runs one LLaMA-shaped attention block on random weights through the ops seam,
 * and prints the output checksum and timing.
 *
 *   pnpm demo            # auto
 *   pnpm demo wasm       # a named backend
 */
import * as tf from '@tensorflow/tfjs-core';

import { attention, initBackend, linear, rmsNorm, ropeTables, applyRope, type BackendRequest } from '../src/index.js';

const requested = (process.argv[2] ?? 'auto') as BackendRequest;
const info = await initBackend(requested);
console.log(`owlet core demo`);
console.log(`backend: ${info.name} (${info.reason})`);
for (const a of info.attempts) console.log(`  ${a.available ? '✓' : '✗'} ${a.name}: ${a.reason}`);
if (info.device)
  console.log(`  device: ${info.device.description || info.device.architecture} (${info.device.vendor})`);

const [L, D, H] = [64, 256, 8];
const Dh = D / H;
const w = tf.tidy(() => ({
  q: tf.randomNormal([D, D], 0, 0.05, 'float32', 1),
  k: tf.randomNormal([D, D], 0, 0.05, 'float32', 2),
  v: tf.randomNormal([D, D], 0, 0.05, 'float32', 3),
  o: tf.randomNormal([D, D], 0, 0.05, 'float32', 4),
  norm: tf.ones([D]),
  x: tf.randomNormal([1, L, D], 0, 1, 'float32', 5),
}));
const tables = ropeTables(
  Array.from({ length: L }, (_, i) => i),
  Dh,
);

const block = () =>
  tf.tidy(() => {
    const h = rmsNorm(w.x, w.norm, 1e-6);
    const heads = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [1, L, H, Dh]), [0, 2, 1, 3]); // [1, L, D] -> [1, H, L, Dh]
    const q = applyRope(heads(linear(h, w.q)), tables);
    const k = applyRope(heads(linear(h, w.k)), tables);
    const v = heads(linear(h, w.v));
    const a = attention(q, k, v, { causal: true });
    const merged = tf.reshape(tf.transpose(a, [0, 2, 1, 3]), [1, L, D]); // [1, H, L, Dh] -> [1, L, D]
    return tf.add(w.x, linear(merged, w.o));
  });

const warm = block();
await warm.data();
warm.dispose();
const runs = 5;
const t0 = performance.now();
let out: tf.Tensor | undefined;
for (let i = 0; i < runs; i++) {
  out?.dispose();
  out = block();
}
const data = await out!.data();
const ms = (performance.now() - t0) / runs;
let sum = 0;
for (const v of data) sum += v;
console.log(
  `attention block [1, ${L}, ${D}] x ${H} heads: checksum ${sum.toFixed(4)}, ${ms.toFixed(2)} ms per run (${runs} runs)`,
);
out!.dispose();
tf.dispose([...Object.values(w), tables.cos, tables.sin]);
