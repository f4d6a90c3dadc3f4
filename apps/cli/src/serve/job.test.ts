/**
 * The engine's job runner on a real (tiny, random) model, in-process: prompt counting against
 * the library's own usage, the context window (L3), cancellation within one decode step with the
 * KV cache freed (L4), choices, stop strings, and bad images failing cleanly (F15).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { fromPretrained, type MplugOwlModel } from '@owlet/mplug-owl';
import type { ChatMessage } from '@owlet/tokenizer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { modelLimits, promptIds, promptLength, runJob } from './job.js';
import type { EngineJob, WorkerToMain } from './protocol.js';
import { makePng, writeTinyModel } from './test-model.testutil.js';

const tmp = mkdtempSync(join(tmpdir(), 'owlet-job-'));
let model: MplugOwlModel;
let baseline: number;
const IMAGE = makePng(40, 30, (x, y) => [x * 6, y * 8, 128]);

beforeAll(async () => {
  const dir = await writeTinyModel(join(tmp, 'model'), { contextWindow: 96 });
  model = await fromPretrained(dir, { backend: 'cpu' });
  // Warm-up: the first forward builds cached tables (RoPE) that live as long as the model.
  await run({ messages: user('warm up', 1), images: [IMAGE], max_tokens: 2 });
  baseline = tf.memory().numTensors;
});
afterAll(() => {
  model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

function user(text: string, images = 0): ChatMessage[] {
  return [
    {
      role: 'user',
      content: [...Array.from({ length: images }, () => ({ type: 'image' }) as const), { type: 'text', text }],
    },
  ];
}

async function run(
  job: Partial<EngineJob> & Pick<EngineJob, 'messages'>,
  stopAfter?: (events: WorkerToMain[]) => boolean,
): Promise<WorkerToMain[]> {
  const events: WorkerToMain[] = [];
  await runJob(model, { id: 1, images: [], n: 1, stream: true, ...job }, modelLimits(model), {
    post: (m) => events.push(m),
    shouldStop: () => stopAfter?.(events) ?? false,
  });
  return events;
}

const of = <T extends WorkerToMain['type']>(events: WorkerToMain[], type: T) =>
  events.filter((e): e is Extract<WorkerToMain, { type: T }> => e.type === type);

describe('runJob', () => {
  it('counts the prompt as generate does, images included, before decoding anything', async () => {
    for (const images of [0, 1, 2]) {
      const messages = user('What is in the picture?', images);
      const counted = promptLength(model, promptIds(model, messages));
      const ev = await run({ messages, images: Array.from({ length: images }, () => IMAGE), max_tokens: 2 });
      const [started] = of(ev, 'started');
      const [choice] = of(ev, 'choice');
      expect(started?.prompt_tokens).toBe(counted);
      expect(choice?.usage.prompt_tokens).toBe(counted); // generate's own count of the spliced prompt
      if (images > 0)
        expect(counted).toBe(promptIds(model, messages).length + images * (model.config.image_tokens - 1));
    }
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it('refuses a prompt that fills the context window and caps max_tokens at what is left (L3)', async () => {
    const window = model.config.text_config.max_position_embeddings;
    // Grow a prompt to exactly `window` positions, then one under it.
    let words = 1;
    let msgs = user('owl');
    while (promptLength(model, promptIds(model, msgs)) < window) msgs = user('owl '.repeat(++words).trim());
    const full = promptLength(model, promptIds(model, msgs));
    expect(full).toBeGreaterThanOrEqual(window);
    const refused = await run({ messages: msgs, max_tokens: 1 });
    const [failed] = of(refused, 'failed');
    expect(failed?.error.status).toBe(400);
    expect(failed?.error.code).toBe('context_length_exceeded');
    expect(failed?.error.message).toContain(`${window} tokens`);
    expect(of(refused, 'started')).toHaveLength(0);

    let shorter = user('owl '.repeat(words - 3).trim());
    while (promptLength(model, promptIds(model, shorter)) > window - 3) {
      words--;
      shorter = user('owl '.repeat(words - 3).trim());
    }
    const p = promptLength(model, promptIds(model, shorter));
    const capped = await run({ messages: shorter, max_tokens: 1000 });
    const [started] = of(capped, 'started');
    const [choice] = of(capped, 'choice');
    expect(started?.max_tokens).toBe(window - p);
    expect(choice?.usage.completion_tokens).toBeLessThanOrEqual(window - p);
    expect(choice?.finish_reason).toBe(choice?.usage.completion_tokens === window - p ? 'length' : 'stop');
    // Absent max_tokens: generation_config's default, still under the cap.
    const dflt = await run({ messages: user('hi'), stream: false });
    expect(of(dflt, 'started')[0]?.max_tokens).toBe(Math.min(modelLimits(model).default_max_tokens, window - 9));
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it('stops before the next forward once the client is gone, and frees the KV cache (L4)', async () => {
    for (const k of [1, 3, 5]) {
      // shouldStop is read once before each choice and then once per generated token.
      let callsSinceStart = 0;
      const ev = await run({ messages: user('Tell me a long story'), max_tokens: 40 }, (events) => {
        if (of(events, 'started').length === 0) return false;
        callsSinceStart++;
        return callsSinceStart === k + 1; // the client goes away right after token k
      });
      const done = of(ev, 'done')[0];
      expect(done?.aborted).toBe(true);
      expect(done?.completion_tokens).toBe(k); // no forward ran after the stop was seen
      expect(of(ev, 'choice')).toHaveLength(0);
      expect(done?.memory.numTensors).toBe(baseline);
    }
    // A job stopped while its images are being read never starts.
    const ev = await run({ messages: user('x', 2), images: [IMAGE, IMAGE] }, () => true);
    expect(of(ev, 'started')).toHaveLength(0);
    expect(of(ev, 'done')[0]?.aborted).toBe(true);
    expect(tf.memory().numTensors).toBe(baseline);
  });

  it('streams deltas that join to each choice; n choices sample with seed + i; stop strings cut', async () => {
    const ev = await run({ messages: user('Describe'), n: 3, temperature: 1, seed: 11, max_tokens: 8 });
    const choices = of(ev, 'choice');
    expect(choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (const c of choices) {
      const joined = of(ev, 'delta')
        .filter((d) => d.index === c.index)
        .map((d) => d.text)
        .join('');
      expect(joined).toBe(c.text);
    }
    expect(new Set(choices.map((c) => c.text)).size).toBeGreaterThan(1);
    const again = await run({ messages: user('Describe'), n: 1, temperature: 1, seed: 12, max_tokens: 8 });
    expect(of(again, 'choice')[0]?.text).toBe(choices[1]?.text);

    const greedy = await run({ messages: user('Describe'), temperature: 0, max_tokens: 12 });
    const text = of(greedy, 'choice')[0]?.text ?? '';
    const word = text.slice(3, 6);
    expect(word.trim().length).toBeGreaterThan(0);
    const stopped = await run({ messages: user('Describe'), temperature: 0, max_tokens: 12, stop: [word] });
    const sc = of(stopped, 'choice')[0];
    expect(sc?.finish_reason).toBe('stop');
    expect(sc?.text).toBe(text.slice(0, text.indexOf(word)).trim());
    expect(sc?.text).not.toContain(word);
    expect(
      of(stopped, 'delta')
        .map((d) => d.text)
        .join(''),
    ).toBe(sc?.text);
  });

  it('a bad image fails the job with a 400 and leaves nothing behind (F15)', async () => {
    const broken = IMAGE.slice(0, 60); // a valid PNG header, then nothing
    const ev = await run({ messages: user('x', 1), images: [broken] });
    const [failed] = of(ev, 'failed');
    expect(failed?.error.status).toBe(400);
    expect(failed?.error.code).toBe('image_decode_failed');
    expect(failed?.memory.numTensors).toBe(baseline);
    // A mismatched image count is a 400 too, from the tokenizer.
    const mismatch = await run({ messages: user('x', 1), images: [] });
    expect(of(mismatch, 'failed')[0]?.error.status).toBe(400);
    // The model still answers.
    const ok = await run({ messages: user('x', 1), images: [IMAGE], max_tokens: 2 });
    expect(of(ok, 'choice')[0]?.usage.completion_tokens).toBe(2);
    expect(tf.memory().numTensors).toBe(baseline);
  });
});
