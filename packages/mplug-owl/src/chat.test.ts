import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { IMAGE_TOKEN_INDEX, apply_chat_template, type ChatMessage } from '@owlet/tokenizer';
import { REPO_ROOT, expectNoLeaks } from '@owlet/test-utils';
import type { MplugOwlImageProcessor, PixelValues } from '@owlet/vision-encoder';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pixelDigest } from './chat.js';
import { fromPretrained, type MplugOwlModel } from './pretrained.js';

// The CLI's bundled model: random weights, the real LLaMA tokenizer, 448-px preprocessing.
const MODEL_DIR = join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random');
const IMAGE = readFileSync(join(REPO_ROOT, 'apps/cli/assets/owl.png'));

let model: MplugOwlModel;
beforeAll(async () => {
  model = await fromPretrained(MODEL_DIR, { backend: 'wasm' });
});
afterAll(() => model.dispose());

async function collect(stream: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const d of stream) out.push(d);
  return out;
}

describe('chat', () => {
  const turn1: ChatMessage[] = [
    { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in the picture?' }] },
  ];

  it('streams complete-character deltas that join to the answer, with usage figures', async () => {
    model.resetChat();
    const stream = model.chat({ messages: turn1, images: [IMAGE], max_new_tokens: 6 });
    const deltas = await collect(stream);
    const r = await stream.result;
    expect(deltas.join('').trim()).toBe(r.text);
    for (const d of deltas) expect(d).not.toMatch(/\uFFFD/);
    expect(r.usage.completion_tokens).toBe(6);
    expect(r.usage.prompt_tokens).toBeGreaterThan(9);
    expect(r.usage.cached_prompt_tokens).toBe(0);
    expect(r.usage.time_to_first_token_s).toBeGreaterThan(0);
  });

  it('token_callback_function sees every chosen token id, in order, as the text streams', async () => {
    model.resetChat();
    const ids: number[] = [];
    let textWhenLastToken = '';
    let text = '';
    const stream = model.chat({
      messages: turn1,
      images: [IMAGE],
      max_new_tokens: 5,
      token_callback_function: (t) => {
        ids.push(...t);
        textWhenLastToken = text;
      },
    });
    for await (const d of stream) text += d;
    const r = await stream.result;
    expect(ids).toHaveLength(r.usage.completion_tokens);
    const tok = model.tokenizer;
    if (!tok) throw new Error('fromPretrained sets the tokenizer');
    expect(tok.decode(ids, { skip_special_tokens: true }).trim()).toBe(r.text);
    // Called before the token's text is pushed: the text seen then is a prefix of the answer.
    expect(text.startsWith(textWhenLastToken)).toBe(true);
  });

  it('a follow-up reuses the KV cache and answers exactly as a fresh recompute', async () => {
    model.resetChat();
    const first = model.chat({ messages: turn1, images: [IMAGE], max_new_tokens: 5 });
    await collect(first);
    const a1 = (await first.result).text;
    const turn2: ChatMessage[] = [
      ...turn1,
      { role: 'assistant', content: a1 },
      { role: 'user', content: 'Where is it sitting?' },
    ];
    const cached = model.chat({ messages: turn2, images: [IMAGE], max_new_tokens: 5 });
    await collect(cached);
    const rc = await cached.result;
    expect(rc.usage.cached_prompt_tokens).toBeGreaterThan(9); // at least the image rows
    model.resetChat();
    const fresh = model.chat({ messages: turn2, images: [IMAGE], max_new_tokens: 5 });
    await collect(fresh);
    const rf = await fresh.result;
    expect(rf.usage.cached_prompt_tokens).toBe(0);
    expect(rc.text).toBe(rf.text);
  });

  it('sampling with a seed is reproducible; stop strings and abort end the answer', async () => {
    const opts = {
      messages: turn1,
      images: [IMAGE],
      max_new_tokens: 6,
      do_sample: true,
      temperature: 1.2,
      top_k: 40,
      seed: 7,
    };
    model.resetChat();
    const a = model.chat(opts);
    await collect(a);
    model.resetChat();
    const b = model.chat(opts);
    await collect(b);
    expect((await a.result).text).toBe((await b.result).text);
    const ac = new AbortController();
    ac.abort();
    model.resetChat();
    const c = model.chat({ ...opts, signal: ac.signal });
    const failed = await collect(c).then(
      () => null,
      (e: unknown) => e,
    );
    expect(failed).not.toBeNull();
  });

  it('an image count that does not match the messages is a typed error', async () => {
    model.resetChat();
    const s = model.chat({ messages: turn1, images: [], max_new_tokens: 2 });
    await expect(collect(s)).rejects.toMatchObject({ code: expect.stringMatching(/IMAGE_COUNT_MISMATCH|INVALID/) });
  });

  it('does not leak tensors across turns and resets', async () => {
    model.resetChat();
    const warm = model.chat({ messages: turn1, images: [IMAGE], max_new_tokens: 2 });
    await collect(warm);
    model.resetChat();
    await expectNoLeaks(async () => {
      const s = model.chat({ messages: turn1, images: [IMAGE], max_new_tokens: 3 });
      await collect(s);
      model.resetChat();
    });
    expect(tf.memory().numTensors).toBeGreaterThan(0);
  });
});

/** The 32-bit FNV-1a over float words that keyed image features before: here only to build a collision. */
function fnv1a32(data: Float32Array): number {
  const u = new Uint32Array(data.buffer, data.byteOffset, data.length);
  let h = 0x811c9dc5;
  for (let i = 0; i < u.length; i++) h = Math.imul(h ^ (u[i] as number), 0x01000193) >>> 0;
  return h;
}

/**
 * A copy of `a` whose first two pixels differ and whose FNV-1a hash is the same: after word 0 the two
 * states differ by `d`, so word 1 is `a[1] ^ d` (searched until that is a plain pixel value).
 */
function fnvCollision(a: Float32Array): Float32Array {
  const b = new Float32Array(a);
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const v = new Uint32Array(b.buffer);
  const step = (h: number, w: number) => Math.imul(h ^ w, 0x01000193) >>> 0;
  const h1 = step(0x811c9dc5, u[0] as number);
  for (let k = 1; k < 10_000; k++) {
    b[0] = (a[0] as number) + k / 1024;
    const h1b = step(0x811c9dc5, v[0] as number);
    v[1] = ((u[1] as number) ^ h1 ^ h1b) >>> 0;
    if (Number.isFinite(b[1]) && Math.abs(b[1] as number) < 3 && b[1] !== a[1]) return b;
  }
  throw new Error('no FNV collision found');
}

describe('ChatSession', () => {
  const turn1: ChatMessage[] = [
    { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in the picture?' }] },
  ];

  it('keys image features by SHA-256: two images that collide under the old 32-bit hash never share an entry', async () => {
    const proc = model.imageProcessor;
    if (!proc) throw new Error('fromPretrained sets the image processor');
    const real = await proc.preprocess(IMAGE);
    const a = real.data;
    const b = fnvCollision(a);
    expect(fnv1a32(b)).toBe(fnv1a32(a)); // the old key would have been the same
    expect(b.some((x, i) => x !== a[i])).toBe(true);
    const [da, db] = [await pixelDigest(a, real.shape), await pixelDigest(b, real.shape)];
    expect(da).toMatch(/^[0-9a-f]{64}:1x3x\d+x\d+$/);
    expect(db).not.toBe(da);
    expect(await pixelDigest(new Float32Array(a), real.shape)).toBe(da); // same pixels, same key

    // Through a conversation: the second image is encoded anew, and its answer is the fresh one.
    const imageA = Buffer.from(IMAGE);
    const imageB = Buffer.from(IMAGE);
    const stub = {
      preprocess: async (img: unknown): Promise<PixelValues> => ({
        data: img === imageA ? a : b,
        shape: real.shape,
        exact: [true],
      }),
    } as unknown as MplugOwlImageProcessor;
    model.imageProcessor = stub;
    const session = model.createChatSession();
    try {
      const first = session.chat({ messages: turn1, images: [imageA], max_new_tokens: 2 });
      await collect(first);
      const r1 = await first.result;
      const second = session.chat({ messages: turn1, images: [imageB], max_new_tokens: 2 });
      await collect(second);
      const r2 = await second.result;
      expect(session.cachedImages).toBe(2);
      // Only the text before the image is reused; no row of image A stands in for image B.
      const tok = model.tokenizer;
      if (!tok) throw new Error('fromPretrained sets the tokenizer');
      const ids = apply_chat_template(tok, turn1, { template: model.templateName, tokenize: true });
      const imageStart = ids.indexOf(IMAGE_TOKEN_INDEX);
      expect(imageStart).toBeGreaterThan(0);
      expect(r1.usage.cached_prompt_tokens).toBe(0);
      expect(r2.usage.cached_prompt_tokens).toBe(imageStart);
      session.reset();
      expect(session.cachedImages).toBe(0);
      const fresh = session.chat({ messages: turn1, images: [imageB], max_new_tokens: 2 });
      await collect(fresh);
      expect((await fresh.result).text).toBe(r2.text);
    } finally {
      session.dispose();
      model.imageProcessor = proc;
    }
  });

  it('sessions are independent conversations; dispose frees one without touching the others', async () => {
    model.resetChat();
    const s1 = model.createChatSession();
    const s2 = model.createChatSession();
    try {
      const a = s1.chat({ messages: turn1, images: [IMAGE], max_new_tokens: 2 });
      await collect(a);
      expect(s1.cachedTokens).toBeGreaterThan(9);
      expect(s2.cachedTokens).toBe(0);
      const b = s2.chat({ messages: turn1, images: [IMAGE], max_new_tokens: 2 });
      await collect(b);
      expect((await b.result).usage.cached_prompt_tokens).toBe(0);
      expect((await b.result).text).toBe((await a.result).text);
      const before = tf.memory().numTensors;
      s1.dispose();
      expect(s1.cachedTokens).toBe(0);
      expect(tf.memory().numTensors).toBeLessThan(before);
      expect(s2.cachedTokens).toBeGreaterThan(9);
    } finally {
      s1.dispose();
      s2.dispose();
    }
  });
});
