// Bundled for headless Chromium by browser.test.ts: the bundled model loaded over HTTP with
// fromPretrained (Range requests), on WebGPU, one greedy chat turn about the owl picture.
import { initBackend } from '@owlet/core';

import { fromPretrained } from '../../src/index.js';

const t0 = performance.now();
const stage = (s: string) => console.log(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${s}`);

async function main() {
  stage('start');
  const backend = await initBackend('webgpu');
  const base = new URL('/files/model/', location.href).href;
  const events: string[] = [];
  stage(`backend ${backend.name}`);
  const model = await fromPretrained(base, {
    onProgress: (e) => {
      events.push(`${e.status}:${'file' in e ? e.file : ''}`);
      if (e.status !== 'progress') stage(events.at(-1)!);
    },
  });
  stage('loaded');
  const image = new Uint8Array(await (await fetch('/files/owl.png')).arrayBuffer());
  const stream = model.chat({
    messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in the picture?' }] }],
    images: [image],
    max_new_tokens: 3, // prefill + two cached decode steps; every further step only compiles more shaders
  });
  let text = '';
  for await (const d of stream) {
    if (!text) stage('first token');
    text += d;
  }
  stage('answered');
  const r = await stream.result;
  model.dispose();
  return { backend: backend.name, text, answer: r.text, tokens: r.usage.completion_tokens, events };
}

main().then(
  (r) => ((globalThis as Record<string, unknown>).__owletResult = r),
  (e: unknown) => ((globalThis as Record<string, unknown>).__owletError = String((e as Error)?.stack ?? e)),
);
