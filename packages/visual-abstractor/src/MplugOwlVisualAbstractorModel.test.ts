import * as tf from '@tensorflow/tfjs-core';
import { type ErrorCode, StateDictError, isOwletError } from '@owlet/core';
import type { SafetensorsArchive } from '@owlet/checkpoint';
import {
  describeBackends,
  expectAllClose,
  expectNoLeaks,
  loadFixture,
  loadFixtureJson,
  maxAbsDiff,
  randn,
} from '@owlet/test-utils';
import { expect } from 'vitest';

import {
  MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG,
  MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG,
  resolveMplugOwlVisualAbstractorConfig,
  type MplugOwlVisualAbstractorConfig,
} from './config.js';
import { ABSTRACTOR_POSITION_BUFFER_KEYS, MplugOwlVisualAbstractorModel } from './MplugOwlVisualAbstractorModel.js';
import { abstractorReference64, type Reference64Options } from './reference64.testutil.js';
import { sincos1d, sincos2d } from './sincos.js';

/** fixtures/README.md: abstractor_* max abs ≤ 1e-5. */
const TOL = 1e-5;
const V2_PREFIX = 'model.visual_abstractor.';
const V1_PREFIX = 'abstractor.';

function report(label: string, value: number): void {
  if (process.env.OWLET_REPORT_DIFFS) process.stdout.write(`[diff] ${label}: ${value.toExponential(3)}\n`);
}

/** The abstractor's tensors of a fixture checkpoint, keys relative to the abstractor root. */
function abstractorStateDict(archive: SafetensorsArchive, prefix: string): Map<string, tf.Tensor> {
  return new Map(
    archive
      .keys()
      .filter((k) => k.startsWith(prefix))
      .map((k) => [k.slice(prefix.length), archive.tensor(k)]),
  );
}

function disposeAll(m: Map<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
}

interface Loaded {
  model: MplugOwlVisualAbstractorModel;
  archive: SafetensorsArchive;
  config: MplugOwlVisualAbstractorConfig;
  /** v1: the top-level query_tokens (caller disposes). */
  queryTokens: tf.Tensor | null;
}

function loadTiny(variant: 'v2' | 'v1'): Loaded {
  const dir = variant === 'v2' ? 'owl2_tiny' : 'owl1_tiny';
  const archive = loadFixture(`${dir}/model.safetensors`);
  const config = resolveMplugOwlVisualAbstractorConfig(loadFixtureJson(`${dir}/config.json`));
  const model = new MplugOwlVisualAbstractorModel(config);
  const sd = abstractorStateDict(archive, variant === 'v2' ? V2_PREFIX : V1_PREFIX);
  model.loadStateDict(sd);
  disposeAll(sd);
  return { model, archive, config, queryTokens: variant === 'v1' ? archive.tensor('query_tokens') : null };
}

async function values(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

/** Swaps the two halves of every row of a [rows, d] table (the "row first" orientation bug). */
function swapHalves(table: Float32Array, d: number): Float32Array {
  const out = new Float32Array(table.length);
  for (let r = 0; r < table.length / d; r++) {
    out.set(table.subarray(r * d + d / 2, (r + 1) * d), r * d);
    out.set(table.subarray(r * d, r * d + d / 2), r * d + d / 2);
  }
  return out;
}

/** Swaps sines and cosines inside each E1 block of width `block` (cosines first: the sin/cos bug). */
function swapSinCos(table: Float32Array, block: number): Float32Array {
  return swapHalves(table, block);
}

describeBackends('MplugOwlVisualAbstractorModel', ({ backend, it }) => {
  it('computes q_pos_embed / k_pos_embed equal to the official buffers, in every layer', async () => {
    const { model } = loadTiny('v2');
    const c = loadFixture('owl2_tiny/case_one_image.safetensors');
    const expQ = c.array('abstractor_q_pos_embed');
    const expK = c.array('abstractor_k_pos_embed');
    for (const layer of model.encoder.layers) {
      const q = layer.crossattention.attention.qPosEmbed();
      const k = layer.crossattention.attention.kPosEmbed();
      expect(q?.shape).toEqual([8, 32]);
      expect(k?.shape).toEqual([17, 32]);
      const dq = expectAllClose(await values(q!), expQ, { atol: 1e-6, label: 'q_pos_embed' });
      const dk = expectAllClose(await values(k!), expK, { atol: 1e-6, label: 'k_pos_embed' });
      report(`${backend} q_pos_embed`, dq.maxAbs);
      report(`${backend} k_pos_embed`, dk.maxAbs);
      q?.dispose();
      k?.dispose();
    }
    // Buffers are not parameters and are not checkpoint keys.
    for (const [key] of model.namedParameters()) expect(key).not.toMatch(/pos_embed/);
    model.dispose();
  });

  for (const caseName of ['one_image', 'two_images'] as const) {
    it(`v2 ${caseName}: queries before visual_fc and output match the fixture`, async () => {
      const { model } = loadTiny('v2');
      const c = loadFixture(`owl2_tiny/case_${caseName}.safetensors`);
      const image = c.tensor('vision_last_hidden_state');
      const out = model.forwardWithQueries(image);
      expect(out.queries_before_visual_fc.shape).toEqual(c.info('abstractor_queries_before_visual_fc').shape);
      expect(out.last_hidden_state.shape).toEqual(c.info('abstractor_output').shape);
      const dq = expectAllClose(
        await values(out.queries_before_visual_fc),
        c.array('abstractor_queries_before_visual_fc'),
        {
          atol: TOL,
          label: 'abstractor_queries_before_visual_fc',
        },
      );
      const dout = expectAllClose(await values(out.last_hidden_state), c.array('abstractor_output'), {
        atol: TOL,
        label: 'abstractor_output',
      });
      report(`${backend} v2 ${caseName} queries_before_visual_fc`, dq.maxAbs);
      report(`${backend} v2 ${caseName} output`, dout.maxAbs);
      // forward() gives the same output as forwardWithQueries().
      const plain = model.forward(image);
      expect(maxAbsDiff(await values(plain), await values(out.last_hidden_state)).maxAbs).toBe(0);
      tf.dispose([image, plain, out.last_hidden_state, out.queries_before_visual_fc]);
      model.dispose();
    });
  }

  it('v1 one_image: query_tokens through the abstractor match the fixture', async () => {
    const { model, queryTokens } = loadTiny('v1');
    expect(model.query_embeds).toBeNull();
    const c = loadFixture('owl1_tiny/case_one_image.safetensors');
    const image = c.tensor('vision_last_hidden_state');
    const out = model.forwardWithQueries(image, { query_embeds: queryTokens! });
    const dq = expectAllClose(
      await values(out.queries_before_visual_fc),
      c.array('abstractor_queries_before_visual_fc'),
      {
        atol: TOL,
        label: 'v1 abstractor_queries_before_visual_fc',
      },
    );
    const dout = expectAllClose(await values(out.last_hidden_state), c.array('abstractor_output'), {
      atol: TOL,
      label: 'v1 abstractor_output',
    });
    report(`${backend} v1 one_image queries_before_visual_fc`, dq.maxAbs);
    report(`${backend} v1 one_image output`, dout.maxAbs);
    tf.dispose([image, queryTokens!, out.last_hidden_state, out.queries_before_visual_fc]);
    model.dispose();
  });

  it('wrong position tables in the real model (halves swapped, sin/cos swapped, none) fail the tolerance', async () => {
    const c = loadFixture('owl2_tiny/case_one_image.safetensors');
    const expected = c.array('abstractor_output');
    const d = 32;
    const qOk = sincos1d(d, [0, 1, 2, 3, 4, 5, 6, 7]);
    const kOk = sincos2d(d, 4, true);
    const variants: [string, Float32Array, Float32Array][] = [
      ['k_pos halves swapped (row first)', qOk, swapHalves(kOk, d)],
      ['k_pos sin/cos swapped', qOk, swapSinCos(kOk, d / 2)],
      ['q_pos sin/cos swapped', swapSinCos(qOk, d), kOk],
      ['no position embeddings', new Float32Array(qOk.length), new Float32Array(kOk.length)],
      ['correct tables (control)', qOk, kOk],
    ];
    for (const [label, q, k] of variants) {
      const { model } = loadTiny('v2');
      for (const layer of model.encoder.layers) layer.crossattention.attention.setPositionEmbeddings(q, k);
      const image = c.tensor('vision_last_hidden_state');
      const out = model.forward(image);
      const diff = maxAbsDiff(await values(out), expected).maxAbs;
      report(`${backend} mutation "${label}" Δoutput`, diff);
      if (label.startsWith('correct')) expect(diff).toBeLessThanOrEqual(TOL);
      else expect(diff, label).toBeGreaterThan(10 * TOL);
      tf.dispose([image, out]);
      model.dispose();
    }
  });

  it('a residual on the un-normalised queries (composed from the real blocks) fails the tolerance', async () => {
    const { model } = loadTiny('v2');
    const c = loadFixture('owl2_tiny/case_one_image.safetensors');
    const image = c.tensor('vision_last_hidden_state');
    const run = (raw: boolean) =>
      tf.tidy(() => {
        let x: tf.Tensor = model.query_embeds!.value;
        for (const layer of model.encoder.layers) {
          const ca = layer.crossattention;
          const xn = ca.norm1.forward(x);
          const ctx = ca.attention.forward(xn, tf.concat([xn, ca.normk.forward(image)], 1));
          x = ca.output.forward(ctx, raw ? x : xn);
        }
        return x;
      });
    const expected = c.array('abstractor_queries_before_visual_fc');
    const good = run(false);
    const bad = run(true);
    const dGood = maxAbsDiff(await values(good), expected).maxAbs;
    const dBad = maxAbsDiff(await values(bad), expected).maxAbs;
    report(`${backend} mutation "residual on raw queries" Δqueries`, dBad);
    expect(dGood).toBeLessThanOrEqual(TOL);
    expect(dBad).toBeGreaterThan(10 * TOL);
    tf.dispose([image, good, bad]);
    model.dispose();
  });

  it('a float64 reference from the spec matches the fixture, and each known bug moves it past the tolerance', async () => {
    const archive = loadFixture('owl2_tiny/model.safetensors');
    const config = resolveMplugOwlVisualAbstractorConfig(loadFixtureJson('owl2_tiny/config.json'));
    const w = (k: string) => Float64Array.from(archive.array(V2_PREFIX + k));
    const c = loadFixture('owl2_tiny/case_one_image.safetensors');
    const image = c.array('vision_last_hidden_state');
    const queries = w('query_embeds');
    const expected = c.array('abstractor_output');
    const run = (o: Reference64Options) =>
      maxAbsDiff(abstractorReference64(config, w, image, 1, queries, o).output, expected).maxAbs;
    const ok = run({});
    report(`${backend} float64 reference vs fixture`, ok);
    expect(ok).toBeLessThanOrEqual(TOL);
    const bugs: [string, Reference64Options][] = [
      ['k_pos halves swapped', { posEmbed: 'halves_swapped' }],
      ['sin/cos swapped', { posEmbed: 'sincos_swapped' }],
      ['no position embeddings', { posEmbed: 'none' }],
      ['residual on raw queries', { residual: 'raw' }],
      ['norm1/normk/norm2 eps 1e-6', { normEps: 1e-6 }],
      ['ffn_ln eps 1e-5', { ffnEps: 1e-5 }],
    ];
    for (const [label, o] of bugs) {
      const d = run(o);
      report(`${backend} float64 reference bug "${label}"`, d);
      expect(d, label).toBeGreaterThan(TOL);
    }
  });

  for (const variant of ['mplug_owl2', 'mplug_owl'] as const) {
    it(`${variant}: other shapes (grid 3, no CLS, 3 queries, 3 layers, batch 2) match the float64 reference`, async () => {
      const config = resolveMplugOwlVisualAbstractorConfig(
        {
          hidden_size: 16,
          encoder_hidden_size: 16,
          num_attention_heads: 2,
          num_hidden_layers: 3,
          intermediate_size: 20,
          num_learnable_queries: 3,
          grid_size: 3,
          use_cls_token: false,
        },
        { variant, language_hidden_size: 12 },
      );
      const model = new MplugOwlVisualAbstractorModel(config);
      // Every parameter random (norm weights around 1, biases non-zero) so no term can hide.
      const sd = new Map<string, tf.Tensor>();
      let seed = 11;
      for (const [key, p] of model.namedParameters()) {
        const isNormWeight = /norm[12k]\.weight$|ffn_ln\.weight$/.test(key);
        const data = Float32Array.from(randn(p.size, seed++, isNormWeight ? 0.2 : 0.3), (v) =>
          isNormWeight ? 1 + v : v,
        );
        sd.set(key, tf.tensor(data, [...p.shape]));
      }
      if (variant === 'mplug_owl') expect(sd.has('query_embeds')).toBe(false);
      model.loadStateDict(sd);
      const n = 2;
      const k = variant === 'mplug_owl2' ? 9 : 7; // v1 accepts any number of image tokens
      const imageData = Float32Array.from(randn(n * k * 16, 99));
      const queryData = Float32Array.from(randn(3 * 16, 98));
      const weights = (key: string) => {
        if (key === 'query_embeds' && variant === 'mplug_owl') return Float64Array.from(queryData);
        return Float64Array.from(sd.get(key)!.dataSync());
      };
      const ref = abstractorReference64(
        config,
        weights,
        imageData,
        n,
        variant === 'mplug_owl2' ? weights('query_embeds') : Float64Array.from(queryData),
      );
      const image = tf.tensor3d(imageData, [n, k, 16]);
      const q = variant === 'mplug_owl' ? tf.tensor3d(queryData, [1, 3, 16]) : undefined;
      const out = model.forwardWithQueries(image, q ? { query_embeds: q } : {});
      expect(out.last_hidden_state.shape).toEqual([n, 4, 12]);
      const dq = expectAllClose(await values(out.queries_before_visual_fc), ref.queries, {
        atol: 2e-5,
        label: 'queries',
      });
      const dout = expectAllClose(await values(out.last_hidden_state), ref.output, { atol: 2e-5, label: 'output' });
      report(`${backend} ${variant} random shapes vs float64: queries`, dq.maxAbs);
      report(`${backend} ${variant} random shapes vs float64: output`, dout.maxAbs);
      tf.dispose([image, out.last_hidden_state, out.queries_before_visual_fc]);
      if (q) q.dispose();
      disposeAll(sd);
      model.dispose();
    });
  }

  it('released mPLUG-Owl2 config, shape only: keys and shapes equal the released checkpoint, 81,473,536 parameters', async () => {
    const released = loadFixtureJson<{ keys: { key: string; shape: number[] }[] }>('released_keys_mplug_owl2_7b.json');
    const expected = released.keys
      .filter((e) => e.key.startsWith(V2_PREFIX))
      .map((e) => `${e.key.slice(V2_PREFIX.length)} ${JSON.stringify(e.shape)}`)
      .sort();
    await expectNoLeaks(() => {
      const model = new MplugOwlVisualAbstractorModel(MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG);
      const actual = [...model.namedParameters()].map(([k, p]) => `${k} ${JSON.stringify(p.shape)}`).sort();
      expect(actual).toEqual(expected);
      expect(actual.length).toBe(136);
      expect(model.numParameters()).toBe(81_473_536);
      expect(model.unmaterializedKeys().length).toBe(136);
      expect(model.encoder.layers.at(0).crossattention.attention.numImageTokens).toBe(1025);
      model.dispose();
    }, 'released v2 build');
  });

  it('released mPLUG-Owl v1 config, shape only: keys and shapes equal the released checkpoint (queries at the top level)', async () => {
    const released = loadFixtureJson<{ keys: { key: string; shape: number[] }[] }>('released_keys_mplug_owl_7b.json');
    const expected = released.keys
      .filter((e) => e.key.startsWith(V1_PREFIX))
      .map((e) => `${e.key.slice(V1_PREFIX.length)} ${JSON.stringify(e.shape)}`)
      .sort();
    const queryTokens = released.keys.find((e) => e.key === 'query_tokens');
    expect(queryTokens?.shape).toEqual([
      1,
      MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG.num_learnable_queries,
      MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG.hidden_size,
    ]);
    await expectNoLeaks(() => {
      const model = new MplugOwlVisualAbstractorModel(MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG);
      const actual = [...model.namedParameters()].map(([k, p]) => `${k} ${JSON.stringify(p.shape)}`).sort();
      expect(actual).toEqual(expected);
      expect(model.numParameters()).toBe(81_408_000);
      expect(model.encoder.layers.at(0).crossattention.attention.numImageTokens).toBeNull();
      model.dispose();
    }, 'released v1 build');
  });

  it('strict loading: missing, unexpected and mis-shaped keys are reported together and nothing is assigned', async () => {
    const archive = loadFixture('owl2_tiny/model.safetensors');
    const config = resolveMplugOwlVisualAbstractorConfig(loadFixtureJson('owl2_tiny/config.json'));
    const good = abstractorStateDict(archive, V2_PREFIX);
    await expectNoLeaks(() => {
      const model = new MplugOwlVisualAbstractorModel(config);
      const bad = new Map(good);
      bad.delete('vit_eos');
      const w1 = 'encoder.layers.1.crossattention.output.mlp.w1.weight';
      const wrong = tf.zeros([32, 48]);
      bad.set(w1, wrong); // transposed: checkpoint [48, 32]
      const extra = tf.zeros([8, 32]);
      bad.set('encoder.layers.0.crossattention.attention.q_pos_embed', extra);
      let err: unknown;
      try {
        model.loadStateDict(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StateDictError);
      const r = (err as StateDictError).report;
      expect(isOwletError(err, 'STATE_DICT_MISMATCH')).toBe(true);
      expect(r.missing).toEqual(['vit_eos']);
      expect(r.unexpected).toEqual(['encoder.layers.0.crossattention.attention.q_pos_embed']);
      expect(r.mismatched).toEqual([{ key: w1, expected: [48, 32], actual: [32, 48] }]);
      expect((err as Error).message).toContain(`expected [48, 32], checkpoint has [32, 48] for ${w1}`);
      expect(model.unmaterializedKeys().length).toBe([...model.namedParameters()].length);
      // The position buffers a checkpoint might carry can be ignored by pattern.
      const withBuffers = new Map(good);
      withBuffers.set('encoder.layers.0.crossattention.attention.q_pos_embed', extra);
      const rep = model.loadStateDict(withBuffers, { ignore: [ABSTRACTOR_POSITION_BUFFER_KEYS] });
      expect(rep.ignored).toEqual(['encoder.layers.0.crossattention.attention.q_pos_embed']);
      expect(model.unmaterializedKeys()).toEqual([]);
      // A v1 abstractor has no query_embeds: the v2 state dict is rejected.
      const v1 = new MplugOwlVisualAbstractorModel(
        resolveMplugOwlVisualAbstractorConfig(loadFixtureJson('owl1_tiny/config.json')),
      );
      expect(() => v1.loadStateDict(good)).toThrow(/unexpected keys \(1\): query_embeds/);
      tf.dispose([wrong, extra]);
      v1.dispose();
      model.dispose();
    }, 'strict loading');
    disposeAll(good);
  });

  it('bad inputs give typed errors naming both sides', async () => {
    const { model } = loadTiny('v2');
    const { model: v1, queryTokens } = loadTiny('v1');
    await expectNoLeaks(() => {
      const code = (fn: () => unknown, c: ErrorCode, ...parts: string[]) => {
        let err: unknown;
        try {
          fn();
        } catch (e) {
          err = e;
        }
        expect(isOwletError(err, c), String(err)).toBe(true);
        for (const p of parts) expect((err as Error).message).toContain(p);
      };
      const wrongK = tf.zeros([1, 16, 32]);
      const wrongD = tf.zeros([1, 17, 31]);
      const rank2 = tf.zeros([17, 32]);
      const ints = tf.zeros([1, 17, 32], 'int32');
      const ok = tf.zeros([2, 17, 32]);
      const q9 = tf.zeros([1, 9, 32]);
      const q3batch = tf.zeros([3, 8, 32]);
      code(() => model.forward(wrongK), 'SHAPE_MISMATCH', '[N, 17, 32]', '[1, 16, 32]');
      code(() => model.forward(wrongD), 'SHAPE_MISMATCH', '[1, 17, 31]');
      code(() => model.forward(rank2), 'SHAPE_MISMATCH', '[17, 32]');
      code(() => model.forward(ints), 'SHAPE_MISMATCH', 'int32');
      code(() => model.forward(ok, { query_embeds: queryTokens! }), 'INVALID_ARGUMENT', 'owns its query_embeds');
      code(() => v1.forward(ok), 'INVALID_ARGUMENT', 'query_tokens');
      code(() => v1.forward(ok, { query_embeds: q9 }), 'SHAPE_MISMATCH', '[1 or 2, 8, 32]', '[1, 9, 32]');
      code(() => v1.forward(ok, { query_embeds: q3batch }), 'SHAPE_MISMATCH', '[3, 8, 32]');
      code(
        () =>
          model.encoder.layers
            .at(0)
            .crossattention.attention.setPositionEmbeddings(new Float32Array(8 * 32), new Float32Array(16 * 32)),
        'SHAPE_MISMATCH',
        'k_pos_embed',
        '[17, 32]',
      );
      code(
        () =>
          v1.encoder.layers
            .at(0)
            .crossattention.attention.setPositionEmbeddings(new Float32Array(1), new Float32Array(1)),
        'INVALID_ARGUMENT',
      );
      tf.dispose([wrongK, wrongD, rank2, ints, ok, q9, q3batch]);
    }, 'bad inputs');
    model.dispose();
    v1.dispose();
    expect(() => model.forward(tf.zeros([1, 17, 32]))).toThrow(/after dispose/);
    queryTokens!.dispose();
  });

  it('leak-free: every module forward, forwardWithQueries, construction and dispose', async () => {
    const before = tf.memory().numTensors;
    const { model } = loadTiny('v2');
    const { model: v1, queryTokens } = loadTiny('v1');
    const image = tf.randomNormal([2, 17, 32], 0, 1, 'float32', 3);
    const q = tf.randomNormal([2, 8, 32], 0, 1, 'float32', 4);
    const kv = tf.randomNormal([2, 25, 32], 0, 1, 'float32', 5);
    const layer = model.encoder.layers.at(1);
    const ca = layer.crossattention;
    // The sin-cos buffers are module state created on first use; create them before measuring.
    tf.dispose(model.forward(image));
    const cases: [string, () => tf.Tensor | tf.Tensor[]][] = [
      ['MplugOwlVisualAbstractorMultiHeadAttention', () => ca.attention.forward(q, kv)],
      ['MplugOwlVisualAbstractorMLP', () => ca.output.mlp.forward(q)],
      ['MplugOwlVisualAbstractorCrossOutput', () => ca.output.forward(q, q)],
      ['MplugOwlVisualAbstractorAttention', () => ca.forward(q, image)],
      ['MplugOwlVisualAbstractorLayer', () => layer.forward(q, image)],
      ['MplugOwlVisualAbstractorEncoder', () => model.encoder.forward(q, image)],
      ['MplugOwlVisualAbstractorModel.forward', () => model.forward(image)],
      [
        'MplugOwlVisualAbstractorModel.forwardWithQueries',
        () => {
          const o = model.forwardWithQueries(image);
          return [o.last_hidden_state, o.queries_before_visual_fc];
        },
      ],
      ['v1 MplugOwlVisualAbstractorModel.forward', () => v1.forward(image, { query_embeds: queryTokens! })],
      ['position buffer copies', () => [ca.attention.qPosEmbed()!, ca.attention.kPosEmbed()!]],
    ];
    for (const [label, fn] of cases) {
      await expectNoLeaks(() => {
        tf.dispose(fn());
      }, label);
    }
    await expectNoLeaks(() => {
      const m = new MplugOwlVisualAbstractorModel(model.config);
      m.initialize({ seed: 1 });
      const a = m.encoder.layers.at(0).crossattention.attention;
      a.setPositionEmbeddings(sincos1d(32, [0, 1, 2, 3, 4, 5, 6, 7]), sincos2d(32, 4, true));
      m.dispose();
    }, 'construct + initialize + replace buffers + dispose');
    tf.dispose([image, q, kv, queryTokens!]);
    model.dispose();
    v1.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
