import * as tf from '@tensorflow/tfjs-core';
import { OwletError } from '@owlet/core';
import { describeBackends, expectNoLeaks, randn } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it as plainIt } from 'vitest';

import { KVCache } from '../KVCache.js';
import { LlamaForCausalLM } from '../LlamaForCausalLM.js';
import { randomize, slow, tinyConfig } from '../test-helpers.js';
import {
  MinNewTokensLengthLogitsProcessor,
  RepetitionPenaltyLogitsProcessor,
  TemperatureLogitsWarper,
  TopKLogitsWarper,
  TopPLogitsWarper,
  argmax,
  sampleFromScores,
} from './logits-process.js';
import { SeededRandom } from './random.js';

const row = (seed: number, n = 40) => Float64Array.from(randn(n, seed, 2));

// ---- float64 references written from the transformers 4.31 definitions
function refRepetition(ids: number[], s: Float64Array, p: number) {
  const out = Float64Array.from(s);
  for (const id of ids) out[id] = s[id]! < 0 ? s[id]! * p : s[id]! / p;
  return out;
}
function refTopK(s: Float64Array, k: number) {
  const kth = [...s].sort((a, b) => b - a)[k - 1]!;
  return s.map((v) => (v < kth ? -Infinity : v));
}
function refTopP(s: Float64Array, p: number) {
  const idx = [...s.keys()].sort((a, b) => s[a]! - s[b]! || a - b);
  const m = Math.max(...s);
  const e = [...s].map((v) => Math.exp(v - m));
  const z = e.reduce((a, b) => a + b, 0);
  const out = Float64Array.from(s);
  let cum = 0;
  idx.forEach((i, r) => {
    cum += e[i]! / z;
    if (cum <= 1 - p && r < idx.length - 1) out[i] = -Infinity;
  });
  return out;
}

describe('logits processors (host, float64)', () => {
  plainIt('repetition penalty: seen ids divided when positive, multiplied when negative, once per id', () => {
    const s = row(1);
    const ids = [3, 3, 7, 11, 0];
    const got = Float64Array.from(s);
    new RepetitionPenaltyLogitsProcessor(1.3).process(ids, got);
    expect([...got]).toEqual([...refRepetition([...new Set(ids)], s, 1.3)]);
    expect(got[3]).not.toBe(s[3]);
  });

  plainIt('temperature divides every score', () => {
    const s = row(2);
    const got = Float64Array.from(s);
    new TemperatureLogitsWarper(0.7).process([], got);
    got.forEach((v, i) => {
      expect(v).toBeCloseTo(s[i]! / 0.7, 12);
    });
  });

  plainIt('top-k keeps the k best (and ties with the k-th)', () => {
    const s = row(3);
    s[5] = s[9] = 10; // a tie at the top
    for (const k of [1, 2, 5, 39, 40, 100]) {
      const got = Float64Array.from(s);
      new TopKLogitsWarper(k).process([], got);
      expect([...got]).toEqual([...refTopK(s, Math.min(k, 40))]);
    }
    const tie = new Float64Array([1, 3, 3, 0]);
    new TopKLogitsWarper(1).process([], tie);
    expect([...tie]).toEqual([-Infinity, 3, 3, -Infinity]);
  });

  plainIt('top-p keeps the smallest set whose mass exceeds p (at least one token)', () => {
    for (const [seed, p] of [
      [4, 0.9],
      [5, 0.5],
      [6, 0.05],
      [7, 0.999],
    ] as const) {
      const s = row(seed);
      const got = Float64Array.from(s);
      new TopPLogitsWarper(p).process([], got);
      expect([...got]).toEqual([...refTopP(s, p)]);
      expect(got.some((v) => v !== -Infinity)).toBe(true);
    }
  });

  plainIt('min_new_tokens forbids EOS until reached', () => {
    const s = row(8);
    const proc = new MinNewTokensLengthLogitsProcessor(3, 2, [2, 5]);
    const a = Float64Array.from(s);
    proc.process([0, 1, 4, 9], a); // 1 new token
    expect([a[2], a[5]]).toEqual([-Infinity, -Infinity]);
    const b = Float64Array.from(s);
    proc.process([0, 1, 4, 9, 9], b); // 2 new tokens
    expect([...b]).toEqual([...s]);
  });

  plainIt('argmax takes the first maximum; sampling follows the softmax distribution', () => {
    expect(argmax([1, 5, 5, 2])).toBe(1);
    expect(() => argmax([1, NaN])).toThrow(OwletError);
    const s = new Float64Array([0, Math.log(3), -Infinity, Math.log(6)]); // p = 0.1, 0.3, 0, 0.6
    expect(sampleFromScores(s, 0.05)).toBe(0);
    expect(sampleFromScores(s, 0.35)).toBe(1);
    expect(sampleFromScores(s, 0.41)).toBe(3);
    expect(sampleFromScores(s, 0.9999999)).toBe(3);
    const rng = new SeededRandom(123);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[sampleFromScores(s, rng.next())]!++;
    expect(counts[2]).toBe(0);
    expect(Math.abs(counts[3]! / 20000 - 0.6)).toBeLessThan(0.02);
    expect(Math.abs(counts[0]! / 20000 - 0.1)).toBeLessThan(0.02);
  });

  plainIt('SeededRandom is reproducible and uniform', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const c = new SeededRandom(43);
    const xa = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xa);
    expect(Array.from({ length: 1000 }, () => c.next())).not.toEqual(xa);
    const mean = xa.reduce((s, v) => s + v, 0) / xa.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.03);
    expect(xa.every((v) => v >= 0 && v < 1)).toBe(true);
  });
});

describeBackends('generate', ({ it: matrixIt }) => {
  const it = slow(matrixIt);
  let model: LlamaForCausalLM;
  const PROMPT = [[1, 7, 19, 4, 33, 8]];
  beforeAll(() => {
    model = new LlamaForCausalLM(tinyConfig());
    randomize(model, 77, 0.5);
  });
  afterAll(() => model.dispose());

  it('greedy: cached generation equals argmax over no-cache recomputation; no leaks', async () => {
    await expectNoLeaks(async () => {
      const res = await model.generate({
        input_ids: PROMPT,
        max_new_tokens: 6,
        eos_token_id: null,
        output_logits: true,
      });
      expect(res.generated_ids).toHaveLength(6);
      expect(res.sequences[0]).toEqual([...PROMPT[0]!, ...res.generated_ids]);
      const seq = [...PROMPT[0]!];
      for (let k = 0; k < 6; k++) {
        const o = model.forward({ input_ids: [seq], logits_to_keep: 1 });
        o.last_hidden_state.dispose();
        const r = (await o.logits.data()) as Float32Array;
        o.logits.dispose();
        let d = 0;
        r.forEach((v, i) => {
          d = Math.max(d, Math.abs(v - res.logits![k]![i]!));
        });
        expect(d).toBeLessThan(2e-5);
        expect(argmax(r)).toBe(res.generated_ids[k]);
        seq.push(argmax(r));
      }
    }, 'generate');
  });

  it('sampling is reproducible with a seed and changes with it; processed scores are returned', async () => {
    await expectNoLeaks(async () => {
      const opts = {
        input_ids: PROMPT,
        max_new_tokens: 10,
        do_sample: true,
        temperature: 1.5,
        top_k: 20,
        top_p: 0.95,
        repetition_penalty: 1.1,
        eos_token_id: null,
      };
      const a = await model.generate({ ...opts, seed: 1234, output_scores: true, output_logits: true });
      const b = await model.generate({ ...opts, seed: 1234 });
      const c = await model.generate({ ...opts, seed: 99 });
      expect(b.generated_ids).toEqual(a.generated_ids);
      expect(c.generated_ids).not.toEqual(a.generated_ids);
      // Scores = warpers applied to the logits, in the transformers order.
      const ids = [...PROMPT[0]!];
      a.scores!.forEach((s, k) => {
        const ref = refTopP(
          refTopK(
            refRepetition([...new Set(ids)], Float64Array.from(a.logits![k]!), 1.1).map((v) => v / 1.5),
            20,
          ),
          0.95,
        );
        s.forEach((v, i) => {
          if (v === -Infinity) expect(ref[i]).toBe(-Infinity);
          else expect(Math.abs(v - ref[i]!)).toBeLessThan(1e-5);
        });
        expect(s[a.generated_ids[k]!]).not.toBe(-Infinity);
        ids.push(a.generated_ids[k]!);
      });
    });
  });

  it('stops on EOS, on stop strings, on abort; streams every token', async () => {
    await expectNoLeaks(async () => {
      const greedy = await model.generate({ input_ids: PROMPT, max_new_tokens: 8, eos_token_id: null });
      const g = greedy.generated_ids;
      const eos = await model.generate({ input_ids: PROMPT, max_new_tokens: 8, eos_token_id: [g[2]!] });
      expect(eos.finish_reason).toBe('eos');
      expect(eos.generated_ids).toEqual(g.slice(0, g.indexOf(g[2]!) + 1));
      const decode = (ids: number[]) => ids.map((i) => `<${i}>`).join('');
      const stop = await model.generate({
        input_ids: PROMPT,
        max_new_tokens: 8,
        eos_token_id: null,
        stop_strings: [`<${g[3]}>`],
        decode,
      });
      expect(stop.finish_reason).toBe('stop_string');
      expect(stop.stop_string).toBe(`<${g[3]}>`);
      expect(stop.generated_ids).toEqual(g.slice(0, g.indexOf(g[3]!) + 1));
      const ac = new AbortController();
      const streamed: number[] = [];
      let ended = 0;
      const ab = await model.generate({
        input_ids: PROMPT,
        max_new_tokens: 8,
        eos_token_id: null,
        signal: ac.signal,
        streamer: {
          put: (ids) => {
            streamed.push(...ids);
            if (streamed.length === 3) ac.abort();
          },
          end: () => ended++,
        },
      });
      expect(ab.finish_reason).toBe('abort');
      expect(ab.generated_ids).toEqual(g.slice(0, 3));
      expect(streamed).toEqual(g.slice(0, 3));
      expect(ended).toBe(1);
      // An abort that arrives as another task (a worker message, a timer, Ctrl-C) lands between tokens.
      const later = new AbortController();
      const timer = setTimeout(() => later.abort(), 0);
      const byTask = await model.generate({
        input_ids: PROMPT,
        max_new_tokens: 8,
        eos_token_id: null,
        signal: later.signal,
      });
      clearTimeout(timer);
      expect(byTask.finish_reason).toBe('abort');
      expect(byTask.generated_ids.length).toBeLessThan(8);
      expect(byTask.generated_ids).toEqual(g.slice(0, byTask.generated_ids.length));
      const pre = await model.generate({ input_ids: PROMPT, signal: AbortSignal.abort() });
      expect(pre.finish_reason).toBe('abort');
      expect(pre.generated_ids).toEqual([]);
      const minNew = await model.generate({
        input_ids: PROMPT,
        max_new_tokens: 8,
        eos_token_id: g[0]!,
        min_new_tokens: 2,
      });
      expect(minNew.generated_ids[0]).not.toBe(g[0]);
    });
  });

  it('multi-turn: continuing a returned cache equals generating from the whole conversation', async () => {
    await expectNoLeaks(async () => {
      const t1 = await model.generate({
        input_ids: PROMPT,
        max_new_tokens: 4,
        eos_token_id: null,
        return_past_key_values: true,
      });
      const cache = t1.past_key_values!;
      expect(cache.length).toBe(PROMPT[0]!.length + 4 - 1);
      const user2 = [5, 9, 12];
      const t2 = await model.generate({
        input_ids: [[t1.generated_ids[3]!, ...user2]],
        past_key_values: cache,
        max_new_tokens: 4,
        eos_token_id: null,
        output_logits: true,
      });
      expect(t2.past_key_values).toBe(cache);
      const whole = await model.generate({
        input_ids: [[...PROMPT[0]!, ...t1.generated_ids, ...user2]],
        max_new_tokens: 4,
        eos_token_id: null,
        output_logits: true,
      });
      expect(t2.generated_ids).toEqual(whole.generated_ids);
      t2.logits!.forEach((r, k) => {
        r.forEach((v, i) => {
          expect(Math.abs(v - whole.logits![k]![i]!)).toBeLessThan(2e-5);
        });
      });
      // Roll the second turn back and regenerate it: same answer.
      cache.truncate(PROMPT[0]!.length + 3);
      const again = await model.generate({
        input_ids: [[t1.generated_ids[3]!, ...user2]],
        past_key_values: cache,
        max_new_tokens: 4,
        eos_token_id: null,
      });
      expect(again.generated_ids).toEqual(t2.generated_ids);
      cache.dispose();
    });
  });

  it('generate from inputs_embeds with image modality; the cache and its tensors are released', async () => {
    await expectNoLeaks(async () => {
      const x = tf.tensor3d(Float32Array.from(randn(6 * 16, 5)), [1, 6, 16]);
      const res = await model.generate({
        inputs_embeds: x,
        modality_indicators: [[0, 1, 1, 1, 0, 0]],
        max_new_tokens: 5,
        eos_token_id: null,
      });
      expect(res.sequences).toEqual([res.generated_ids]);
      expect(res.past_key_values).toBeUndefined();
      expect(res.usage.prompt_tokens).toBe(6);
      x.dispose();
    });
  });

  it('L3: a prompt that does not fit the context window is refused before prefill; max_new_tokens is capped at window − prompt', async () => {
    const window = model.config.max_position_embeddings; // 64
    const before = tf.memory().numTensors;
    // Refused: the prompt fills (or overflows) the window, alone or after a cached conversation.
    for (const len of [window, window + 1, 25 * window]) {
      const ids = [Array.from({ length: len }, (_, i) => 1 + (i % 40))];
      const err = await model.generate({ input_ids: ids, max_new_tokens: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OwletError);
      expect((err as OwletError).code).toBe('CONTEXT_WINDOW_EXCEEDED');
      expect((err as OwletError).message).toContain(`${len} tokens`);
      expect((err as OwletError).message).toContain(`context window is ${window} tokens`);
    }
    expect(tf.memory().numTensors).toBe(before);
    // A huge max_new_tokens stops at the window with finish reason 'length'. The guard aborts a run
    // that goes past the window, so a missing cap fails here instead of generating for ever.
    const guard = new AbortController();
    let steps = 0;
    const out = await model.generate({
      input_ids: PROMPT,
      max_new_tokens: 1e12,
      eos_token_id: null,
      streamer: () => {
        if (++steps > window) guard.abort(new Error(`generation ran past the ${window}-token window`));
      },
      signal: guard.signal,
    });
    expect(out.finish_reason).toBe('length');
    expect(out.generated_ids).toHaveLength(window - PROMPT[0]!.length);
    expect(out.sequences[0]).toHaveLength(window);
    // The same after a cached turn: cached + prompt + new ≤ window.
    const first = await model.generate({
      input_ids: PROMPT,
      max_new_tokens: 40,
      eos_token_id: null,
      return_past_key_values: true,
    });
    const cache = first.past_key_values!;
    const cached = cache.length; // 6 + 40 − 1
    const next = await model.generate({
      input_ids: [[5, 6, 7]],
      past_key_values: cache,
      max_new_tokens: 1000,
      eos_token_id: null,
    });
    expect(next.finish_reason).toBe('length');
    expect(next.generated_ids).toHaveLength(window - cached - 3);
    const full = cache.length;
    const refused = await model
      .generate({ input_ids: [Array.from({ length: window - full }, () => 3)], past_key_values: cache })
      .catch((e: unknown) => e);
    expect((refused as OwletError).code).toBe('CONTEXT_WINDOW_EXCEEDED');
    expect((refused as OwletError).message).toContain(`${full} already in the conversation`);
    expect(cache.length).toBe(full); // unchanged by the refusal
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects bad options with typed errors before any work; errors mid-generation release everything', async () => {
    const before = tf.memory().numTensors;
    const bad: Record<string, unknown>[] = [
      { top_k: -1 },
      { top_k: 1.5 },
      { temperature: Number.NaN },
      { temperature: Infinity },
      { temperature: 0 },
      { top_p: 0 },
      { top_p: 1.5 },
      { max_new_tokens: 0 },
      { repetition_penalty: -2 },
      { seed: 0.5 },
      { eos_token_id: 50 },
      { stop_strings: ['x'] },
      { stop_strings: [''], decode: () => '' },
    ];
    for (const b of bad) {
      await expect(
        model.generate({ input_ids: PROMPT, do_sample: true, ...b }),
        JSON.stringify(b),
      ).rejects.toBeInstanceOf(OwletError);
    }
    await expect(
      model.generate({
        input_ids: [
          [1, 2],
          [3, 4],
        ],
      }),
    ).rejects.toThrow(/batch size must be 1/);
    const cache = new KVCache(2);
    await expect(
      model.generate({
        input_ids: PROMPT,
        past_key_values: cache,
        streamer: () => {
          throw new Error('consumer failed');
        },
      }),
    ).rejects.toThrow('consumer failed');
    expect(cache.length).toBe(0); // rolled back
    cache.dispose();
    await expect(
      model.generate({
        input_ids: PROMPT,
        streamer: () => {
          throw new Error('x');
        },
      }),
    ).rejects.toThrow('x');
    expect(tf.memory().numTensors).toBe(before);
  });
});
