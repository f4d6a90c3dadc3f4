import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import type { ChatMessage } from '@owlet/tokenizer';
import { REPO_ROOT, expectNoLeaks } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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
