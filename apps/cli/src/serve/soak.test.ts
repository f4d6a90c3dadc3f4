/**
 * Soak (checklist L5): a few hundred sequential image+text requests against the real server.
 * After a warm-up, the engine's tf.memory() (numTensors and numBytes, from /metrics) must not move
 * at all, and the process RSS must stay within a fixed band. OWLET_SOAK_REQUESTS=1000 runs the
 * checklist's full count.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { type RunningServer, metric, raw, startServer } from './serve.testutil.js';
import { dataUrl, makePng, writeTinyModel } from './test-model.testutil.js';

const REQUESTS = Number(process.env.OWLET_SOAK_REQUESTS ?? 300);
const WARMUP = 30;
/** RSS may wander this much above its post-warm-up level (GC, allocator), not more. */
const RSS_BAND = 96 * 1024 * 1024;

const tmp = mkdtempSync(join(tmpdir(), 'owlet-soak-'));
const MODEL = join(tmp, 'owlet-soak-tiny');
let server: RunningServer;

beforeAll(async () => {
  await writeTinyModel(MODEL, { imageSize: 56 });
  server = await startServer(['--model', MODEL, '--backend', 'wasm']);
});
afterAll(async () => {
  await server?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

it(`keeps tf.memory() flat and RSS in a band over ${REQUESTS} sequential image+text requests (L5)`, async () => {
  const images = [
    makePng(64, 48, (x, y) => [x * 4, y * 5, 200]),
    makePng(31, 97, (x, y) => [(x * y) % 256, 90, x * 8]),
    makePng(120, 120),
  ].map((p) => dataUrl(p));
  const model = basename(MODEL);
  const samples: { i: number; tensors: number; bytes: number; rss: number }[] = [];
  const sample = async (i: number) => {
    const m = (await raw(`${server.url}/metrics`)).body;
    samples.push({
      i,
      tensors: metric(m, 'owlet_tf_tensors'),
      bytes: metric(m, 'owlet_tf_bytes'),
      rss: metric(m, 'process_resident_memory_bytes'),
    });
  };
  for (let i = 0; i < REQUESTS; i++) {
    const stream = i % 3 === 2;
    const body = JSON.stringify({
      model,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: images[i % images.length] } },
            { type: 'text', text: `Question ${i}: what is in the picture?` },
          ],
        },
      ],
      max_tokens: 4,
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    });
    const r = await raw(`${server.url}/v1/chat/completions`, { body });
    expect(r.status, r.body).toBe(200);
    if (stream) expect(r.body).toContain('data: [DONE]');
    else expect(r.json().usage.completion_tokens).toBe(4);
    if (i + 1 === WARMUP || (i + 1 > WARMUP && (i + 1) % 30 === 0) || i + 1 === REQUESTS) await sample(i + 1);
  }
  const [warm, ...rest] = samples;
  if (!warm) throw new Error('no samples');
  const maxRss = Math.max(...rest.map((s) => s.rss));
  const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  process.stdout.write(
    `soak: ${REQUESTS} requests; after warm-up (${WARMUP}) tf ${warm.tensors} tensors / ${warm.bytes} bytes, RSS ${mb(warm.rss)}; ` +
      `at the end tf ${rest.at(-1)?.tensors} / ${rest.at(-1)?.bytes}, RSS ${mb(rest.at(-1)?.rss ?? 0)}, max RSS ${mb(maxRss)}\n` +
      `soak: RSS MiB by request ${JSON.stringify(samples.map((x) => [x.i, Math.round(x.rss / 2 ** 20)]))}\n`,
  );
  for (const s of rest) {
    expect(s.tensors, `tensors after ${s.i} requests`).toBe(warm.tensors);
    expect(s.bytes, `bytes after ${s.i} requests`).toBe(warm.bytes);
  }
  expect(maxRss - warm.rss).toBeLessThan(RSS_BAND);
}, 900_000); // a soak: a loaded CI machine may take minutes; no time is asserted
