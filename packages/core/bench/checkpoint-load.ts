/**
 * Checkpoint load benchmark (not a test): writes a sharded safetensors checkpoint of F16 tensors
 * into a temporary folder, then streams it back (a) as raw bytes and (b) as float32 tf.Tensors
 * (decode + widen + upload + dispose), printing MB/s and peak RSS. The folder is deleted after.
 *
 *   npx tsx packages/core/bench/checkpoint-load.ts                 # 2 GB (default)
 *   npx tsx packages/core/bench/checkpoint-load.ts --size-mb 512   # smaller
 *   options: --size-mb N (total), --shard-mb N (default 500), --tensor-mb N (default 32), --json out.json
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';

import { createSafetensorsFileWriter, openCheckpoint, type SafetensorsTensorSpec } from '@owlet/checkpoint';

import { initBackend } from '../src/index.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const MB = 1024 * 1024;
const sizeMb = arg('size-mb', 2048);
const shardMb = arg('shard-mb', 500);
const tensorMb = arg('tensor-mb', 32);
const jsonIdx = process.argv.indexOf('--json');
const jsonOut = jsonIdx >= 0 ? process.argv[jsonIdx + 1] : undefined;

let peakRss = 0;
const sample = () => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
};

async function main() {
  await initBackend('cpu');
  const dir = mkdtempSync(join(tmpdir(), 'owlet-bench-ckpt-'));
  try {
    // ── generate ──
    const elems = Math.floor((tensorMb * MB) / 2);
    const cols = 4096;
    const rows = Math.max(1, Math.floor(elems / cols));
    const tensorBytes = rows * cols * 2;
    const nTensors = Math.max(1, Math.round((sizeMb * MB) / tensorBytes));
    const perShard = Math.max(1, Math.floor((shardMb * MB) / tensorBytes));
    const nShards = Math.ceil(nTensors / perShard);
    const payload = new Uint16Array(rows * cols);
    for (let i = 0; i < payload.length; i++) payload[i] = 0x3c00 ^ ((i * 2654435761) % 0x3ff); // finite halves near 1
    const bytes = new Uint8Array(payload.buffer);
    const weightMap: Record<string, string> = {};
    const tg = performance.now();
    for (let s = 0; s < nShards; s++) {
      const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(nShards).padStart(5, '0')}.safetensors`;
      const specs: SafetensorsTensorSpec[] = [];
      for (let t = s * perShard; t < Math.min(nTensors, (s + 1) * perShard); t++) {
        specs.push({ key: `model.layers.${t}.weight`, dtype: 'F16', shape: [rows, cols] });
        weightMap[`model.layers.${t}.weight`] = name;
      }
      const w = await createSafetensorsFileWriter(join(dir, name), specs);
      for (const sp of specs) await w.write(sp.key, bytes);
      await w.commit();
    }
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: nTensors * tensorBytes }, weight_map: weightMap }),
    );
    const genS = (performance.now() - tg) / 1000;
    const totalMb = (nTensors * tensorBytes) / MB;

    const timer = setInterval(sample, 20);
    // ── (a) raw bytes ──
    peakRss = 0;
    const baseRss = process.memoryUsage().rss;
    let t0 = performance.now();
    let ck = await openCheckpoint(dir);
    let n = 0;
    for await (const [, raw] of ck.raw()) {
      n += raw.byteLength;
      sample();
    }
    await ck.close();
    const rawS = (performance.now() - t0) / 1000;
    const rawPeak = peakRss;

    // ── (b) float32 tensors (decode F16 → F32, tf.tensor, dispose) ──
    peakRss = 0;
    t0 = performance.now();
    ck = await openCheckpoint(dir);
    let m = 0;
    for await (const [, t] of ck.tensors()) {
      m += t.size * 2;
      sample();
      t.dispose();
    }
    await ck.close();
    const tensS = (performance.now() - t0) / 1000;
    const tensPeak = peakRss;
    clearInterval(timer);
    if (n !== m || tf.memory().numTensors !== 0)
      throw new Error(`bench self-check failed: ${n} vs ${m} bytes, ${tf.memory().numTensors} tensors left`);

    const result = {
      checkpoint: {
        totalMB: +totalMb.toFixed(1),
        shards: nShards,
        tensors: nTensors,
        tensorMB: +(tensorBytes / MB).toFixed(1),
        dtype: 'F16',
      },
      generateSeconds: +genS.toFixed(2),
      raw: { seconds: +rawS.toFixed(2), MBps: +(totalMb / rawS).toFixed(1), peakRssMB: +(rawPeak / MB).toFixed(1) },
      tensorsF32: {
        seconds: +tensS.toFixed(2),
        MBps: +(totalMb / tensS).toFixed(1),
        peakRssMB: +(tensPeak / MB).toFixed(1),
      },
      rssBeforeLoadMB: +(baseRss / MB).toFixed(1),
      node: process.version,
      backend: tf.getBackend(),
    };
    console.log(JSON.stringify(result, null, 2));
    if (jsonOut) writeFileSync(jsonOut, JSON.stringify(result, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
