import * as tf from '@tensorflow/tfjs-core';
import { ErrorCode, Module, StateDictError, isOwletError } from '@owlet/core';
import type { SafetensorsArchive } from '@owlet/checkpoint';
import {
  describeBackends,
  expectAllClose,
  expectNoLeaks,
  loadFixture,
  loadFixtureJson,
  maxAbsDiff,
} from '@owlet/test-utils';
import { expect } from 'vitest';

import { resolveMplugOwlVisionConfig, type MplugOwlVisionConfig } from './config.js';
import { MplugOwlVisionModel } from './MplugOwlVisionModel.js';

/** fixtures/README.md: vision_embeddings / vision_last_hidden_state max abs ≤ 1e-5. */
const TOL = 1e-5;

function report(label: string, value: number): void {
  if (process.env.OWLET_REPORT_DIFFS) process.stdout.write(`[diff] ${label}: ${value.toExponential(3)}\n`);
}

/** A bare parent module, to mount the vision model under its checkpoint prefix. */
class Holder extends Module {
  add<M extends Module>(name: string, m: M): M {
    return this.registerModule(name, m);
  }
}

interface Variant {
  name: 'v2' | 'v1';
  dir: string;
  prefix: string;
}

const V2: Variant = { name: 'v2', dir: 'owl2_tiny', prefix: 'model.vision_model.' };
const V1: Variant = { name: 'v1', dir: 'owl1_tiny', prefix: 'vision_model.' };

interface Mounted {
  root: Holder;
  vision: MplugOwlVisionModel;
}

/** The vision model registered as `model.vision_model` (v2) or `vision_model` (v1) under a root. */
function mount(v: Variant, config: MplugOwlVisionConfig): Mounted {
  const root = new Holder();
  const parent = v.name === 'v2' ? root.add('model', new Holder()) : root;
  const vision = parent.add('vision_model', new MplugOwlVisionModel(config));
  return { root, vision };
}

/** The vision tensors of a checkpoint (full keys), optionally transformed. Caller disposes. */
function visionTensors(
  archive: SafetensorsArchive,
  prefix: string,
  transform: (key: string, t: tf.Tensor) => tf.Tensor = (_k, t) => t,
): Map<string, tf.Tensor> {
  return new Map(
    archive
      .keys()
      .filter((k) => k.startsWith(prefix))
      .map((k) => [k, transform(k, archive.tensor(k))]),
  );
}

function disposeAll(m: Map<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
}

function loadTiny(
  v: Variant,
  transform?: (key: string, t: tf.Tensor) => tf.Tensor,
): Mounted & { config: MplugOwlVisionConfig } {
  const config = resolveMplugOwlVisionConfig(loadFixtureJson(`${v.dir}/config.json`));
  const m = mount(v, config);
  const sd = visionTensors(loadFixture(`${v.dir}/model.safetensors`), v.prefix, transform);
  try {
    m.root.loadStateDict(sd);
  } finally {
    disposeAll(sd);
  }
  return { ...m, config };
}

/**
 * What a reader of `query_key_value` as stacked [Q; K; V] blocks would compute, expressed as the
 * head-interleaved tensor our (correct) reader sees: row h·3Dh + t·Dh + d ← row t·D + h·Dh + d.
 */
function qkvBlocksAsInterleaved(t: tf.Tensor, heads: number): tf.Tensor {
  const rows = t.shape[0] as number;
  const cols = t.rank === 2 ? (t.shape[1] as number) : 1;
  const d = rows / 3;
  const dh = d / heads;
  const src = t.dataSync();
  const dst = new Float32Array(src.length);
  for (let h = 0; h < heads; h++) {
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < dh; i++) {
        const to = h * 3 * dh + s * dh + i;
        const from = s * d + h * dh + i;
        dst.set(src.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  const out = tf.tensor(dst, t.shape);
  t.dispose();
  return out;
}

async function runCase(v: Variant, caseName: string, backend: string): Promise<void> {
  const { root, vision } = loadTiny(v);
  const c = loadFixture(`${v.dir}/${caseName}.safetensors`);
  const pixels = c.tensor('pixel_values');
  try {
    const out = vision.forward(pixels, { output_embeddings: true });
    const emb = await out.embeddings!.data();
    const last = await out.last_hidden_state.data();
    expect(out.last_hidden_state.shape).toEqual(c.info('vision_last_hidden_state').shape);
    expect(out.embeddings!.shape).toEqual(c.info('vision_embeddings').shape);
    const e = expectAllClose(emb, c.array('vision_embeddings'), {
      atol: TOL,
      label: `${v.name} ${caseName} vision_embeddings`,
    });
    const l = expectAllClose(last, c.array('vision_last_hidden_state'), {
      atol: TOL,
      label: `${v.name} ${caseName} vision_last_hidden_state`,
    });
    report(`${backend} ${v.name} ${caseName} vision_embeddings`, e.maxAbs);
    report(`${backend} ${v.name} ${caseName} vision_last_hidden_state`, l.maxAbs);
    tf.dispose([out.last_hidden_state, out.embeddings!]);
  } finally {
    pixels.dispose();
    root.dispose();
  }
}

describeBackends('MplugOwlVisionModel', ({ backend, it }) => {
  it('matches owl2_tiny/case_one_image (vision_embeddings, vision_last_hidden_state) under model.vision_model', async () => {
    await runCase(V2, 'case_one_image', backend);
  });

  it('matches owl2_tiny/case_two_images (batch of 2)', async () => {
    await runCase(V2, 'case_two_images', backend);
  });

  it('matches owl1_tiny/case_one_image under vision_model', async () => {
    await runCase(V1, 'case_one_image', backend);
  });

  it('hidden_states: embeddings first, then each layer; the last is the pre-post_layernorm output', async () => {
    const { root, vision, config } = loadTiny(V2);
    const c = loadFixture('owl2_tiny/case_one_image.safetensors');
    const pixels = c.tensor('pixel_values');
    try {
      const out = vision.forward(pixels, { output_hidden_states: true, output_embeddings: true });
      const hs = out.hidden_states!;
      expect(hs).toHaveLength(config.num_hidden_layers + 1);
      expect(maxAbsDiff(await hs[0]!.data(), c.array('vision_embeddings')).maxAbs).toBeLessThanOrEqual(TOL);
      // post_layernorm(hidden_states[-1]) is the fixture's last_hidden_state.
      const normed = vision.post_layernorm!.forward(hs[hs.length - 1]!);
      expect(maxAbsDiff(await normed.data(), c.array('vision_last_hidden_state')).maxAbs).toBeLessThanOrEqual(TOL);
      // Every returned tensor is a distinct handle the caller can dispose.
      const all = [out.last_hidden_state, out.embeddings!, ...hs, normed];
      expect(new Set(all).size).toBe(all.length);
      tf.dispose(all);
    } finally {
      pixels.dispose();
      root.dispose();
    }
  });

  it('reading query_key_value as [Q; K; V] blocks misses the fixture by far more than the tolerance', async () => {
    const heads = resolveMplugOwlVisionConfig(loadFixtureJson('owl2_tiny/config.json')).num_attention_heads;
    const wrong = loadTiny(V2, (k, t) =>
      /\.self_attn\.query_key_value\.(weight|bias)$/.test(k) ? qkvBlocksAsInterleaved(t, heads) : t,
    );
    const right = loadTiny(V2);
    const c = loadFixture('owl2_tiny/case_one_image.safetensors');
    const pixels = c.tensor('pixel_values');
    try {
      const expected = c.array('vision_last_hidden_state');
      const good = right.vision.forward(pixels).last_hidden_state;
      const bad = wrong.vision.forward(pixels).last_hidden_state;
      const dGood = maxAbsDiff(await good.data(), expected).maxAbs;
      const dBad = maxAbsDiff(await bad.data(), expected).maxAbs;
      report(`${backend} mutation qkv-as-blocks (correct ${dGood.toExponential(2)})`, dBad);
      expect(dGood).toBeLessThanOrEqual(TOL);
      expect(dBad).toBeGreaterThan(1e-2); // fixtures/README.md: 0.35
      tf.dispose([good, bad]);
    } finally {
      pixels.dispose();
      wrong.root.dispose();
      right.root.dispose();
    }
  });

  it('post_layernorm on the CLS token only misses the fixture by far more than the tolerance', async () => {
    const { root, vision } = loadTiny(V2);
    const c = loadFixture('owl2_tiny/case_one_image.safetensors');
    const pixels = c.tensor('pixel_values');
    try {
      const out = vision.forward(pixels, { output_hidden_states: true });
      const hs = out.hidden_states!;
      const pre = hs[hs.length - 1]!; // encoder output before post_layernorm [1, 17, D]
      const l = pre.shape[1] as number;
      // CLS-only: normed CLS row, raw patch rows.
      const clsOnly = tf.concat(
        [tf.slice(out.last_hidden_state, [0, 0, 0], [-1, 1, -1]), tf.slice(pre, [0, 1, 0], [-1, l - 1, -1])],
        1,
      );
      const expected = c.array('vision_last_hidden_state');
      const dGood = maxAbsDiff(await out.last_hidden_state.data(), expected).maxAbs;
      const dBad = maxAbsDiff(await clsOnly.data(), expected).maxAbs;
      report(`${backend} mutation post-LN-on-CLS-only (correct ${dGood.toExponential(2)})`, dBad);
      expect(dGood).toBeLessThanOrEqual(TOL);
      expect(dBad).toBeGreaterThan(1e-2); // fixtures/README.md: 0.61
      tf.dispose([out.last_hidden_state, ...hs, clsOnly]);
    } finally {
      pixels.dispose();
      root.dispose();
    }
  });

  it('strict loading: a missing key, a mis-shaped key and an unexpected key are all reported; nothing is assigned', async () => {
    const config = resolveMplugOwlVisionConfig(loadFixtureJson('owl2_tiny/config.json'));
    const archive = loadFixture('owl2_tiny/model.safetensors');
    const { root, vision } = mount(V2, config);
    const missingKey = 'model.vision_model.encoder.layers.1.mlp.fc2.bias';
    const badKey = 'model.vision_model.encoder.layers.0.self_attn.query_key_value.weight';
    const sd = visionTensors(archive, V2.prefix, (k, t) => {
      if (k !== badKey) return t;
      const tt = tf.transpose(t); // [96, 32] -> [32, 96]
      t.dispose();
      return tt;
    });
    sd.get(missingKey)!.dispose();
    sd.delete(missingKey);
    const extra = archive.tensor('model.visual_abstractor.vit_eos');
    sd.set('model.visual_abstractor.vit_eos', extra);
    try {
      let err: unknown;
      try {
        root.loadStateDict(sd);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StateDictError);
      expect(isOwletError(err, ErrorCode.STATE_DICT_MISMATCH)).toBe(true);
      const r = (err as StateDictError).report;
      expect(r.missing).toEqual([missingKey]);
      expect(r.unexpected).toEqual(['model.visual_abstractor.vit_eos']);
      expect(r.mismatched).toEqual([{ key: badKey, expected: [96, 32], actual: [32, 96] }]);
      expect((err as Error).message).toContain(`expected [96, 32], checkpoint has [32, 96] for ${badKey}`);
      // Nothing was assigned.
      expect(vision.unmaterializedKeys()).toHaveLength([...vision.namedParameters()].length);
      // A shape mismatch fails even when not strict.
      expect(() => root.loadStateDict(sd, { strict: false })).toThrow(StateDictError);
    } finally {
      disposeAll(sd);
      root.dispose();
    }
  });

  it('rejects bad pixel_values with a typed error naming both shapes and computes nothing', async () => {
    const config = resolveMplugOwlVisionConfig(loadFixtureJson('owl2_tiny/config.json'));
    const model = new MplugOwlVisionModel(config).initialize({ seed: 1 });
    const cases: tf.Tensor[] = [
      tf.zeros([1, 3, 56, 42]),
      tf.zeros([1, 1, 56, 56]),
      tf.zeros([3, 56, 56]),
      tf.zeros([0, 3, 56, 56]),
      tf.zeros([1, 3, 56, 56], 'int32'),
    ];
    try {
      await expectNoLeaks(() => {
        for (const x of cases) {
          let err: unknown;
          try {
            model.forward(x);
          } catch (e) {
            err = e;
          }
          expect(isOwletError(err, ErrorCode.SHAPE_MISMATCH)).toBe(true);
          if (x.dtype === 'float32') {
            expect((err as Error).message).toContain('[N, 3, 56, 56]');
            expect((err as Error).message).toContain(`[${x.shape.join(', ')}]`);
          }
        }
      }, 'rejected forwards');
    } finally {
      tf.dispose(cases);
      model.dispose();
    }
    const ok = tf.zeros([1, 3, 56, 56]);
    expect(() => model.forward(ok)).toThrow(/after dispose/);
    ok.dispose();
  });

  it('leaves no tensors behind: load, forward with every output, dispose', async () => {
    await expectNoLeaks(async () => {
      const { root, vision } = loadTiny(V2);
      const c = loadFixture('owl2_tiny/case_two_images.safetensors');
      const pixels = c.tensor('pixel_values');
      const out = vision.forward(pixels, { output_embeddings: true, output_hidden_states: true });
      await out.last_hidden_state.data();
      tf.dispose([out.last_hidden_state, out.embeddings!, ...out.hidden_states!]);
      const plain = vision.forward(pixels);
      plain.last_hidden_state.dispose();
      pixels.dispose();
      root.dispose();
    }, 'MplugOwlVisionModel');
  });
});
