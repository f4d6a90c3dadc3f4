import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '@owlet/core';
import { describeBackends, expectAllClose, expectNoLeaks, randn, toF32 } from '@owlet/test-utils';
import { expect } from 'vitest';

import { resolveMplugOwlVisionConfig, type MplugOwlVisionConfig } from './config.js';
import { MplugOwlMLP } from './MplugOwlMLP.js';
import { MplugOwlVisionAttention } from './MplugOwlVisionAttention.js';
import { MplugOwlVisionEmbeddings } from './MplugOwlVisionEmbeddings.js';
import { MplugOwlVisionEncoder } from './MplugOwlVisionEncoder.js';
import { MplugOwlVisionEncoderLayer } from './MplugOwlVisionEncoderLayer.js';
import { MplugOwlVisionModel } from './MplugOwlVisionModel.js';
import { PatchConv2d } from './PatchConv2d.js';
import { visionReference64, type Params } from './reference64.testutil.js';

const TOL = 2e-5;

function report(label: string, value: number): void {
  if (process.env.OWLET_REPORT_DIFFS) process.stdout.write(`[diff] ${label}: ${value.toExponential(3)}\n`);
}

/**
 * Fills every parameter with seeded values: norm weights 1 ± 0.2, everything else N(0, 0.3²) (all
 * biases non-zero), so a dropped bias or a wrong layout shows. Returns the float32 values by key.
 */
function randomize(m: Module, seed: number): Params {
  const out: Params = new Map();
  let i = 0;
  for (const [key, p] of m.namedParameters()) {
    const vals = toF32(randn(p.size, seed * 7919 + ++i, /layernorm\.weight$/.test(key) ? 0.2 : 0.3));
    if (/layernorm\.weight$/.test(key)) for (let j = 0; j < vals.length; j++) vals[j] = Math.fround(1 + vals[j]!);
    const t = tf.tensor(Float32Array.from(vals), [...p.shape]);
    p.assign(t);
    t.dispose();
    out.set(key, vals);
  }
  return out;
}

function tiny(
  extra: Record<string, unknown>,
  variant: 'mplug_owl2' | 'mplug_owl' = 'mplug_owl2',
): MplugOwlVisionConfig {
  return resolveMplugOwlVisionConfig(
    {
      hidden_size: 8,
      intermediate_size: 12,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      image_size: 12,
      patch_size: 4,
      ...extra,
    },
    { variant },
  );
}

describeBackends('vision modules', ({ backend, it }) => {
  const variants: [string, Record<string, unknown>, number][] = [
    ['CLS, post-LN, quick_gelu (released layout)', {}, 2],
    ['gelu, no post_layernorm', { hidden_act: 'gelu', use_post_layernorm: false }, 1],
    ['no CLS token: [256, D] positions on a 16×16 grid', { use_cls_token: false, image_size: 32, patch_size: 2 }, 1],
    ['v1 variant', { image_size: 8, patch_size: 4, num_hidden_layers: 1 }, 3],
  ];
  for (const [name, extra, n] of variants) {
    it(`MplugOwlVisionModel equals the float64 reference: ${name}`, async () => {
      const config = tiny(extra, name === 'v1 variant' ? 'mplug_owl' : 'mplug_owl2');
      expect(config.hidden_size).toBe(8);
      const model = new MplugOwlVisionModel(config);
      const params = randomize(model, 11);
      const s = config.image_size;
      const px = toF32(randn(n * 3 * s * s, 5));
      const pixels = tf.tensor(Float32Array.from(px), [n, 3, s, s]);
      try {
        const out = model.forward(pixels, { output_embeddings: true });
        const ref = visionReference64(config, params, px, n);
        expect(out.last_hidden_state.shape).toEqual(ref.shape);
        const e = expectAllClose(await out.embeddings!.data(), ref.embeddings, { atol: TOL, label: 'embeddings' });
        const l = expectAllClose(await out.last_hidden_state.data(), ref.last_hidden_state, {
          atol: TOL,
          label: 'last_hidden_state',
        });
        report(`${backend} reference64 ${name}: embeddings`, e.maxAbs);
        report(`${backend} reference64 ${name}: last_hidden_state`, l.maxAbs);
        tf.dispose([out.last_hidden_state, out.embeddings!]);
      } finally {
        pixels.dispose();
        model.dispose();
      }
    });
  }

  for (const impl of ['matmul', 'conv2d'] as const) {
    it(`PatchConv2d (${impl}): row-major patches, (c, kh, kw) weight order, trailing pixels dropped like a strided conv`, async () => {
      const conv = new PatchConv2d(3, 5, 4, { impl });
      expect(conv.resolvedImpl()).toBe(impl);
      const w = randomize(conv, 3).get('weight')!;
      const [n, h, wd, p] = [2, 13, 10, 4];
      const px = toF32(randn(n * 3 * h * wd, 9));
      const x = tf.tensor(Float32Array.from(px), [n, 3, h, wd]);
      const gh = Math.floor(h / p);
      const gw = Math.floor(wd / p);
      const ref = new Float64Array(n * gh * gw * 5);
      for (let b = 0; b < n; b++)
        for (let r = 0; r < gh; r++)
          for (let c = 0; c < gw; c++)
            for (let o = 0; o < 5; o++) {
              let s = 0;
              for (let ch = 0; ch < 3; ch++)
                for (let kh = 0; kh < p; kh++)
                  for (let kw = 0; kw < p; kw++)
                    s +=
                      Number(w[((o * 3 + ch) * p + kh) * p + kw]) *
                      px[((b * 3 + ch) * h + r * p + kh) * wd + c * p + kw]!;
              ref[((b * gh + r) * gw + c) * 5 + o] = s;
            }
      try {
        const y = conv.forward(x);
        expect(y.shape).toEqual([n, gh * gw, 5]);
        expectAllClose(await y.data(), ref, { atol: 1e-5, label: 'patch conv' });
        y.dispose();
        const small = tf.zeros([1, 3, 3, 8]);
        expect(() => conv.forward(small)).toThrow(/expected pixels \[N, 3, H ≥ 4, W ≥ 4\], got \[1, 3, 3, 8\]/);
        small.dispose();
      } finally {
        x.dispose();
        conv.dispose();
      }
    });
  }

  it('every module leaves no tensors behind', async () => {
    const config = tiny({});
    const x = tf.tensor(Float32Array.from(randn(2 * 10 * 8, 1)), [2, 10, 8]);
    const pixels = tf.tensor(Float32Array.from(randn(2 * 3 * 12 * 12, 2)), [2, 3, 12, 12]);
    try {
      const cases: [string, () => Module, (m: Module) => tf.Tensor[]][] = [
        [
          'PatchConv2d (matmul)',
          () => new PatchConv2d(3, 8, 4, { impl: 'matmul' }),
          (m) => [(m as PatchConv2d).forward(pixels)],
        ],
        [
          'PatchConv2d (conv2d)',
          () => new PatchConv2d(3, 8, 4, { impl: 'conv2d' }),
          (m) => [(m as PatchConv2d).forward(pixels)],
        ],
        [
          'MplugOwlVisionEmbeddings',
          () => new MplugOwlVisionEmbeddings(config),
          (m) => [(m as MplugOwlVisionEmbeddings).forward(pixels)],
        ],
        [
          'MplugOwlVisionAttention',
          () => new MplugOwlVisionAttention(config),
          (m) => [(m as MplugOwlVisionAttention).forward(x)],
        ],
        ['MplugOwlMLP', () => new MplugOwlMLP(config), (m) => [(m as MplugOwlMLP).forward(x)]],
        [
          'MplugOwlVisionEncoderLayer',
          () => new MplugOwlVisionEncoderLayer(config),
          (m) => [(m as MplugOwlVisionEncoderLayer).forward(x)],
        ],
        [
          'MplugOwlVisionEncoder',
          () => new MplugOwlVisionEncoder(config),
          (m) => {
            const a = (m as MplugOwlVisionEncoder).forward(x);
            const b = (m as MplugOwlVisionEncoder).forward(x, { output_hidden_states: true });
            expect(b.hidden_states).toHaveLength(3);
            return [a.last_hidden_state, b.last_hidden_state, ...b.hidden_states!];
          },
        ],
      ];
      for (const [name, make, run] of cases) {
        await expectNoLeaks(async () => {
          const m = make();
          m.initialize({ seed: 4 });
          const outs = run(m);
          for (const o of outs) {
            expect(o.isDisposed).toBe(false);
            await o.data();
          }
          tf.dispose(outs);
          m.dispose();
        }, name);
      }
    } finally {
      x.dispose();
      pixels.dispose();
    }
  });

  it('the encoder never returns or disposes its input', async () => {
    const enc = new MplugOwlVisionEncoder(tiny({})).initialize({ seed: 2 });
    const x = tf.tensor(Float32Array.from(randn(10 * 8, 3)), [1, 10, 8]);
    try {
      for (const opts of [{}, { output_hidden_states: true }]) {
        const out = enc.forward(x, opts);
        const all = [out.last_hidden_state, ...(out.hidden_states ?? [])];
        expect(all.includes(x as tf.Tensor3D)).toBe(false);
        expect(x.isDisposed).toBe(false);
        tf.dispose(all);
      }
    } finally {
      x.dispose();
      enc.dispose();
    }
  });
});
