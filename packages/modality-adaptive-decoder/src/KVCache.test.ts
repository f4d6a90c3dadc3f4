import * as tf from '@tensorflow/tfjs-core';
import { OwletError, applyRope, ropeTables } from '@owlet/core';
import { describeBackends, expectNoLeaks } from '@owlet/test-utils';
import { expect } from 'vitest';

import { KVCache, type KVCacheGrowth } from './KVCache.js';
import { LlamaForCausalLM } from './LlamaForCausalLM.js';
import { attentionOverSegments as segmentedAttention } from '@owlet/core';
import { maxDiff, randTensor, randomize, slow, take, tinyConfig } from './test-helpers.js';

const N = 14;
// Mixed modality: an "image" run in the middle of text, as a spliced prompt.
const MODALITY = [0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0];

function build(seed = 3) {
  const config = tinyConfig();
  const model = new LlamaForCausalLM(config);
  randomize(model, seed);
  return { config, model };
}

/** logits [L, V] of positions a…b−1 computed in one forward without a cache. */
async function fullLogits(model: LlamaForCausalLM, x: tf.Tensor): Promise<Float32Array> {
  const o = model.forward({ inputs_embeds: x, modality_indicators: [MODALITY.slice(0, x.shape[1])] });
  o.last_hidden_state.dispose();
  return take(o.logits);
}

/** Runs positions [a, b) of x through the model with the cache. */
async function step(
  model: LlamaForCausalLM,
  x: tf.Tensor,
  a: number,
  b: number,
  cache: KVCache,
): Promise<Float32Array> {
  const part = tf.slice(x, [0, a, 0], [-1, b - a, -1]);
  const o = model.forward({ inputs_embeds: part, modality_indicators: [MODALITY.slice(a, b)], past_key_values: cache });
  part.dispose();
  o.last_hidden_state.dispose();
  return take(o.logits);
}

/** Float64 attention reference: q [B,H,Lq,D], k/v [B,Hkv,Lk,D], causal with the queries at the end, additive mask [B][Lk]. */
function refAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  B: number,
  H: number,
  Hkv: number,
  Lq: number,
  Lk: number,
  D: number,
  keyMask?: number[][],
) {
  const out = new Float64Array(B * H * Lq * D);
  const rep = H / Hkv;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Lq; i++) {
        const hk = Math.floor(h / rep);
        const s = new Float64Array(Lk);
        let m = -Infinity;
        for (let j = 0; j < Lk; j++) {
          let acc = 0;
          for (let d = 0; d < D; d++)
            acc += (q[((b * H + h) * Lq + i) * D + d] as number) * (k[((b * Hkv + hk) * Lk + j) * D + d] as number);
          acc /= Math.sqrt(D);
          if (j > Lk - Lq + i || keyMask?.[b]?.[j] === 0) acc = -Infinity;
          s[j] = acc;
          m = Math.max(m, acc);
        }
        let z = 0;
        for (let j = 0; j < Lk; j++) z += s[j] = Math.exp((s[j] as number) - m);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < Lk; j++) acc += ((s[j] as number) / z) * (v[((b * Hkv + hk) * Lk + j) * D + d] as number);
          out[((b * H + h) * Lq + i) * D + d] = acc;
        }
      }
  return out;
}

describeBackends('KVCache', ({ it: matrixIt }) => {
  const it = slow(matrixIt);
  it('the core attention over several cache segments matches a float64 reference (GQA, causal, padding mask)', async () => {
    await expectNoLeaks(async () => {
      const [B, H, Hkv, Lq, D] = [2, 4, 2, 3, 8];
      const lens = [5, 2, 1, 3];
      const Lk = lens.reduce((a, n) => a + n, 0);
      const q = randTensor([B, H, Lq, D], 1);
      const k = randTensor([B, Hkv, Lk, D], 2);
      const v = randTensor([B, Hkv, Lk, D], 3);
      const ks = tf.split(k, lens, 2);
      const vs = tf.split(v, lens, 2);
      const keyMask = [Array.from({ length: Lk }, (_, j) => (j === 1 ? 0 : 1)), Array.from({ length: Lk }, () => 1)];
      const mask = tf.tensor4d(
        keyMask.flat().map((m) => (m ? 0 : -1e9)),
        [B, 1, 1, Lk],
      );
      const segs = ks.map((kk, i) => ({ k: kk, v: vs[i]! }));
      const expected = refAttention(
        (await q.data()) as Float32Array,
        (await k.data()) as Float32Array,
        (await v.data()) as Float32Array,
        B,
        H,
        Hkv,
        Lq,
        Lk,
        D,
        keyMask,
      );
      const got = await take(segmentedAttention(q, segs, { causal: true, mask }));
      expect(maxDiff(got, expected)).toBeLessThan(2e-5);
      const one = await take(segmentedAttention(q, [{ k, v }], { causal: true, mask }));
      expect(maxDiff(one, expected)).toBeLessThan(2e-5);
      tf.dispose([q, k, v, ...ks, ...vs, mask]);
    });
  });

  for (const growth of ['segmented', 'contiguous'] as KVCacheGrowth[]) {
    it(`decoding with the cache equals recomputing without it (${growth}; prefill, chunk with past, single steps)`, async () => {
      const { model } = build();
      await expectNoLeaks(async () => {
        const x = randTensor([1, N, 16], 11);
        const full = await fullLogits(model, x);
        const V = 50;
        using cache = new KVCache(2, { growth });
        const chunks: [number, number][] = [
          [0, 5],
          [5, 8],
          [8, 9],
          [9, 10],
          [10, 11],
          [11, 12],
          [12, 13],
          [13, 14],
        ];
        let maxSegs = 0;
        for (const [a, b] of chunks) {
          const got = await step(model, x, a, b, cache);
          expect(maxDiff(got, full.subarray(a * V, b * V)), `positions ${a}…${b - 1}`).toBeLessThan(2e-5);
          maxSegs = Math.max(maxSegs, cache.numSegments(0));
          expect(cache.length).toBe(b);
        }
        if (growth === 'segmented') expect(maxSegs).toBeGreaterThan(1);
        else expect(maxSegs).toBe(1);
        x.dispose();
      }, `cache ${growth}`);
      model.dispose();
    });
  }

  it('segmented growth keeps O(log n) segments', () => {
    const cache = new KVCache(1);
    const before = tf.memory().numTensors;
    const one = tf.zeros([1, 1, 1, 2]);
    const prompt = tf.zeros([1, 1, 40, 2]);
    cache.append(0, prompt, prompt);
    for (let i = 0; i < 200; i++) {
      cache.append(0, one, one);
      expect(cache.numSegments(0)).toBeLessThanOrEqual(Math.ceil(Math.log2(cache.length)) + 1);
    }
    expect(cache.length).toBe(240);
    const keys = cache.keys(0);
    expect(keys.shape).toEqual([1, 1, 240, 2]);
    keys.dispose();
    cache.dispose();
    tf.dispose([one, prompt]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('truncate / rollback, then re-feeding, reproduces the no-cache logits', async () => {
    const { model } = build(5);
    await expectNoLeaks(async () => {
      const x = randTensor([1, N, 16], 12);
      const full = await fullLogits(model, x);
      const V = 50;
      const cache = new KVCache(2);
      await step(model, x, 0, 9, cache);
      for (let t = 9; t < N; t++) await step(model, x, t, t + 1, cache);
      expect(cache.length).toBe(N);
      cache.truncate(6); // cuts inside a segment
      expect(cache.length).toBe(6);
      expect(maxDiff(await step(model, x, 6, 10, cache), full.subarray(6 * V, 10 * V))).toBeLessThan(2e-5);
      cache.rollback(3);
      expect(cache.length).toBe(7);
      for (let t = 7; t < N; t++)
        expect(maxDiff(await step(model, x, t, t + 1, cache), full.subarray(t * V, (t + 1) * V))).toBeLessThan(2e-5);
      expect(() => cache.rollback(N + 1)).toThrow(OwletError);
      expect(() => cache.truncate(-1)).toThrow(OwletError);
      cache.truncate(N + 5); // longer than held: no-op
      expect(cache.length).toBe(N);
      cache.clear();
      expect(cache.length).toBe(0);
      expect(maxDiff(await step(model, x, 0, 4, cache), full.subarray(0, 4 * V))).toBeLessThan(2e-5);
      cache.dispose();
      expect(cache.isDisposed).toBe(true);
      expect(() => cache.length).toThrow(/after dispose/);
      x.dispose();
    }, 'truncate');
    model.dispose();
  });

  it('image positions keep the keys computed with multiway.1; generated (text) positions use multiway.0', async () => {
    const { model, config } = build(7);
    await expectNoLeaks(async () => {
      const x = randTensor([1, 3, 16], 13);
      const cache = new KVCache(2);
      const o = model.forward({ inputs_embeds: x, modality_indicators: [[1, 1, 0]], past_key_values: cache });
      tf.dispose([o.logits, o.last_hidden_state]);
      const layer = model.model.layers.at(0);
      const expectKeys = (m: number) =>
        tf.tidy(() => {
          const ln = layer.input_layernorm as unknown as {
            multiway: { at(i: number): { forward(t: tf.Tensor): tf.Tensor } };
          };
          const kp = layer.self_attn.k_proj as unknown as {
            multiway: { at(i: number): { forward(t: tf.Tensor): tf.Tensor } };
          };
          const k = kp.multiway.at(m).forward(ln.multiway.at(m).forward(x)); // [1, 3, Hkv·Dh]
          const heads = tf.transpose(tf.reshape(k, [1, 3, config.num_key_value_heads, config.head_dim]), [0, 2, 1, 3]);
          const tables = ropeTables([0, 1, 2], config.head_dim, config.rope_theta);
          const r = applyRope(heads, tables);
          tf.dispose([tables.cos, tables.sin]);
          return r;
        });
      const cached = await take(cache.keys(0));
      const k1 = await take(expectKeys(1));
      const k0 = await take(expectKeys(0));
      const Dh = config.head_dim;
      const pick = (a: Float32Array, pos: number) =>
        Array.from({ length: config.num_key_value_heads }, (_, h) =>
          Array.from(a.subarray((h * 3 + pos) * Dh, (h * 3 + pos + 1) * Dh)),
        ).flat();
      for (const pos of [0, 1]) {
        expect(maxDiff(pick(cached, pos), pick(k1, pos))).toBeLessThan(1e-5);
        expect(maxDiff(pick(cached, pos), pick(k0, pos))).toBeGreaterThan(1e-2);
      }
      expect(maxDiff(pick(cached, 2), pick(k0, 2))).toBeLessThan(1e-5);
      cache.dispose();
      x.dispose();
    });
    model.dispose();
  });

  it('bad input leaves the cache unchanged', async () => {
    const { model } = build();
    const cache = new KVCache(2);
    const x = randTensor([1, 4, 16], 14);
    const o = model.forward({ inputs_embeds: x, past_key_values: cache });
    tf.dispose([o.logits, o.last_hidden_state]);
    const tensors = tf.memory().numTensors;
    expect(() =>
      model.forward({ inputs_embeds: x, modality_indicators: [[0, 2, 0, 0]], past_key_values: cache }),
    ).toThrow(OwletError);
    expect(() => model.forward({ inputs_embeds: x, attention_mask: [[1, 1, 1, 1]], past_key_values: cache })).toThrow(
      /expected \[1, 8\]/,
    );
    const x2 = randTensor([2, 4, 16], 15);
    expect(() => model.forward({ inputs_embeds: x2, past_key_values: cache })).toThrow(/cache holds batch 1/);
    expect(() => model.forward({ input_ids: [[1, 99]], past_key_values: cache })).toThrow(/id 99 at \[0, 1\]/);
    expect(() => model.forward({ input_ids: [[1, -200]] })).toThrow(/inputs_embeds/);
    expect(() =>
      new LlamaForCausalLM(tinyConfig({ num_hidden_layers: 3 })).forward({ inputs_embeds: x, past_key_values: cache }),
    ).toThrow(/3/);
    expect(cache.length).toBe(4);
    expect(tf.memory().numTensors - tensors).toBe(1); // only x2
    tf.dispose([x, x2]);
    cache.dispose();
    model.dispose();
  });

  it('padding mask: masked keys are ignored, as dropping them', async () => {
    const { model } = build(9);
    await expectNoLeaks(async () => {
      const x = randTensor([1, 5, 16], 16);
      // Mask key 1; compare the last position with a sequence without token 1 at the same positions.
      const o = model.forward({
        inputs_embeds: x,
        attention_mask: [[1, 0, 1, 1, 1]],
        position_ids: [[0, 1, 2, 3, 4]],
        logits_to_keep: 1,
      });
      o.last_hidden_state.dispose();
      const kept = tf.tidy(() =>
        tf.concat([tf.slice(x, [0, 0, 0], [1, 1, -1]), tf.slice(x, [0, 2, 0], [1, 3, -1])], 1),
      );
      const r = model.forward({ inputs_embeds: kept, position_ids: [[0, 2, 3, 4]], logits_to_keep: 1 });
      r.last_hidden_state.dispose();
      expect(maxDiff(await take(o.logits), await take(r.logits))).toBeLessThan(2e-5);
      tf.dispose([x, kept]);
    });
    model.dispose();
  });
});
