import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectAllClose, expectNoLeaks, randn, toF32 } from '@owlet/test-utils';
import { afterAll, expect } from 'vitest';

import { readSafetensors } from '@owlet/checkpoint';

import { loadPeftAdapter, savePeftAdapter } from '../peft-adapter.js';
import { OwletError } from '../errors.js';
import { Module, ModuleList } from '../module.js';
import { withTraining } from '../training.js';
import {
  Linear,
  LoraLinear,
  RMSNorm,
  injectLora,
  isLoraTarget,
  loadPeftAdapterTensors,
  loraModules,
  mergeLora,
  peftAdapterConfigJson,
  peftAdapterTensors,
  removeLora,
  resolveLoraConfig,
  unmergeLora,
} from './index.js';

class Attn extends Module {
  readonly q_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  constructor(d: number) {
    super();
    this.q_proj = this.registerModule('q_proj', new Linear(d, d, { bias: false }));
    this.v_proj = this.registerModule('v_proj', new Linear(d, d));
    this.o_proj = this.registerModule('o_proj', new Linear(d, d, { bias: false }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => this.o_proj.forward(tf.add(this.q_proj.forward(x), this.v_proj.forward(x))));
  }
}

class Layer extends Module {
  readonly self_attn: Attn;
  readonly norm: RMSNorm;
  constructor(d: number) {
    super();
    this.self_attn = this.registerModule('self_attn', new Attn(d));
    this.norm = this.registerModule('norm', new RMSNorm(d, 1e-6));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => this.self_attn.forward(this.norm.forward(x)));
  }
}

class Decoder extends Module {
  readonly layers: ModuleList<Layer>;
  constructor(d: number) {
    super();
    this.layers = this.registerModule('layers', new ModuleList([new Layer(d), new Layer(d)]));
  }
}

class LanguageModel extends Module {
  readonly model: Decoder;
  constructor(d: number) {
    super();
    this.model = this.registerModule('model', new Decoder(d));
  }
}

/** language_model.model.layers.{0,1}.self_attn.{q,v,o}_proj + a vision Linear that must not be targeted. */
class Toy extends Module {
  readonly language_model: LanguageModel;
  readonly vision_proj: Linear;
  constructor(readonly d = 6) {
    super();
    this.language_model = this.registerModule('language_model', new LanguageModel(d));
    this.vision_proj = this.registerModule('vision_proj', new Linear(d, d));
  }
  get layers(): ModuleList<Layer> {
    return this.language_model.model.layers;
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.scope(() => {
      let h = x;
      for (const l of this.layers) h = l.forward(h);
      return this.vision_proj.forward(h);
    });
  }
}

const V1_TARGET = '.*language_model.*\\.(q_proj|v_proj)';
const rnd = (n: number, seed: number, std = 1): Float64Array => toF32(randn(n, seed, std));
const take = async (t: tf.Tensor): Promise<Float32Array> => {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
};

function randomizeB(root: Module, seed: number): void {
  let i = 0;
  for (const [, m] of loraModules(root)) {
    const b = tf.tensor(Float32Array.from(rnd(m.outFeatures * m.r, seed + i++, 0.3)), [m.outFeatures, m.r]);
    m.lora_B.weight.assign(b);
    b.dispose();
  }
}

const tmp = mkdtempSync(join(tmpdir(), 'owlet-lora-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describeBackends('LoRA', ({ it, backend }) => {
  it('targets follow PEFT: a string is a full-match regex, a list matches names or name suffixes', () => {
    const name = 'language_model.model.layers.0.self_attn.q_proj';
    expect(isLoraTarget(name, V1_TARGET)).toBe(true);
    expect(isLoraTarget('language_model.model.layers.0.self_attn.o_proj', V1_TARGET)).toBe(false);
    expect(isLoraTarget('vision.q_proj', V1_TARGET)).toBe(false);
    expect(isLoraTarget(name, ['q_proj'])).toBe(true);
    expect(isLoraTarget(name, ['proj'])).toBe(false); // suffix must follow a dot
    expect(isLoraTarget(name, [name])).toBe(true);
    expect(isLoraTarget(name, 'q_proj')).toBe(false); // regex must match the whole name
    expect(() => resolveLoraConfig({ r: 0, lora_alpha: 1, target_modules: 'x' })).toThrow(/r must be/);
    expect(() => resolveLoraConfig({ r: 2, lora_alpha: 1, target_modules: 'x', use_dora: true })).toThrow(/use_dora/);
    expect(() => resolveLoraConfig({ r: 2, lora_alpha: 1, target_modules: '(?P<x>a)' })).toThrow(OwletError);
  });

  it('wraps the targets, keeps the base keys, adds lora_A / lora_B, and a fresh adapter changes nothing', async () => {
    const m = new Toy().initialize({ seed: 1 });
    const x = tf.tensor(Float32Array.from(rnd(3 * 6, 2)), [3, 6]);
    const before = await m.forward(x).data();
    const keysBefore = [...m.namedParameters()].map(([k]) => k);
    const wrapped = injectLora(m, { r: 2, lora_alpha: 8, target_modules: V1_TARGET });
    expect([...wrapped.keys()]).toEqual([
      'language_model.model.layers.0.self_attn.q_proj',
      'language_model.model.layers.0.self_attn.v_proj',
      'language_model.model.layers.1.self_attn.q_proj',
      'language_model.model.layers.1.self_attn.v_proj',
    ]);
    expect(m.layers.at(0).self_attn.q_proj).toBeInstanceOf(LoraLinear);
    expect(m.layers.at(0).self_attn.o_proj).toBeInstanceOf(Linear);
    const keys = [...m.namedParameters()].map(([k]) => k);
    expect(keys.filter((k) => !k.includes('lora_'))).toEqual(keysBefore);
    expect(keys).toContain('language_model.model.layers.1.self_attn.v_proj.bias');
    expect(keys).toContain('language_model.model.layers.1.self_attn.v_proj.lora_A.weight');
    expect(keys).toContain('language_model.model.layers.1.self_attn.v_proj.lora_B.weight');
    const after = await m.forward(x).data();
    expectAllClose(after, before, { atol: 0, label: 'fresh adapter' });
    expect(() => injectLora(m, { r: 2, lora_alpha: 8, target_modules: V1_TARGET })).toThrow(/already has a LoRA/);
    expect(() => injectLora(new Toy(), { r: 2, lora_alpha: 8, target_modules: ['nothing_here'] })).toThrow(
      /matches no Linear/,
    );
    expect(() => injectLora(new Toy(), { r: 2, lora_alpha: 8, target_modules: ['self_attn'] })).toThrow(
      /is a Attn, not a Linear/,
    );
    tf.dispose([x]);
    m.dispose();
  });

  it('the adapted forward is W·x + b + (α/r)·B·A·x (float64), merge gives the same, unmerge and removeLora restore', async () => {
    const d = 6;
    const m = new Toy(d).initialize({ seed: 3 });
    const q0 = await take(m.layers.at(0).self_attn.q_proj.weight.canonical());
    injectLora(m, { r: 3, lora_alpha: 6, target_modules: ['q_proj', 'v_proj'] }, { seed: 5 });
    randomizeB(m, 40);
    const lora = m.layers.at(0).self_attn.v_proj as unknown as LoraLinear;
    const x = Float64Array.from(rnd(4 * d, 9));
    const xt = tf.tensor(Float32Array.from(x), [4, d]);
    await expectNoLeaks(async () => {
      const got = lora.forward(xt);
      const W = Float64Array.from(await take(lora.weight.canonical()));
      const b = Float64Array.from(await (lora.bias as NonNullable<typeof lora.bias>).value.data());
      const A = Float64Array.from(await take(lora.lora_A.weight.canonical()));
      const B = Float64Array.from(await take(lora.lora_B.weight.canonical()));
      const ref = new Float64Array(4 * d);
      for (let n = 0; n < 4; n++) {
        const ax = new Float64Array(3);
        const at = (a: ArrayLike<number>, i: number) => a[i] as number;
        for (let r = 0; r < 3; r++) for (let i = 0; i < d; i++) ax[r] = at(ax, r) + at(A, r * d + i) * at(x, n * d + i);
        for (let o = 0; o < d; o++) {
          let s = at(b, o);
          for (let i = 0; i < d; i++) s += at(W, o * d + i) * at(x, n * d + i);
          for (let r = 0; r < 3; r++) s += 2 * at(B, o * 3 + r) * at(ax, r); // α / r = 6 / 3
          ref[n * d + o] = s;
        }
      }
      expectAllClose(await got.data(), ref, { atol: 1e-5, label: 'adapted forward' });
      got.dispose();
    }, 'LoraLinear.forward');
    const adapted = await m.forward(xt).data();
    mergeLora(m);
    expect(lora.merged).toBe(true);
    expectAllClose(await m.forward(xt).data(), adapted, { atol: 1e-5, label: 'merged = adapted' });
    unmergeLora(m);
    expectAllClose(await m.forward(xt).data(), adapted, { atol: 1e-5, label: 'unmerged = adapted' });
    expect(removeLora(m)).toBe(4);
    expect(m.layers.at(0).self_attn.q_proj).toBeInstanceOf(Linear);
    expect([...m.namedParameters()].some(([k]) => k.includes('lora_'))).toBe(false);
    expectAllClose(await take(m.layers.at(0).self_attn.q_proj.weight.canonical()), q0, {
      atol: 1e-6,
      label: 'base weight after unload',
    });
    xt.dispose();
    m.dispose();
  });

  it('dropout acts on the adapter input only in training, and gradients reach A and B', async () => {
    const m = new Toy().initialize({ seed: 4 });
    injectLora(m, { r: 2, lora_alpha: 4, lora_dropout: 0.5, target_modules: ['q_proj'] });
    randomizeB(m, 60);
    const x = tf.tensor(Float32Array.from(rnd(5 * 6, 10)), [5, 6]);
    const evalA = await m.forward(x).data();
    const evalB = await m.forward(x).data();
    expect(Array.from(evalA)).toEqual(Array.from(evalB));
    const train1 = await withTraining(7, () => m.forward(x)).data();
    const train2 = await withTraining(7, () => m.forward(x)).data();
    expect(Array.from(train1)).toEqual(Array.from(train2));
    expect(Array.from(train1)).not.toEqual(Array.from(evalA));
    const lora = m.layers.at(1).self_attn.q_proj as unknown as LoraLinear;
    const vars = [lora.lora_A.weight.value, lora.lora_B.weight.value];
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(m.forward(x))) as tf.Scalar, vars);
    for (const v of vars)
      expect(Math.max(...Array.from(await (grads[v.name] as tf.Tensor).abs().data()))).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads), x]);
    m.dispose();
  });

  it('adapter tensors use the PEFT names; loading checks every key and shape and changes nothing on error', async () => {
    const m = new Toy().initialize({ seed: 5 });
    injectLora(m, { r: 2, lora_alpha: 4, target_modules: V1_TARGET });
    randomizeB(m, 80);
    const tensors = peftAdapterTensors(m);
    expect([...tensors.keys()].slice(0, 2)).toEqual([
      'base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight',
      'base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_B.weight',
    ]);
    expect(tensors.get('base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight')?.shape).toEqual(
      [2, 6],
    );
    const other = new Toy().initialize({ seed: 5 });
    injectLora(other, { r: 2, lora_alpha: 4, target_modules: V1_TARGET });
    const before = await take((other.layers.at(0).self_attn.q_proj as unknown as LoraLinear).lora_B.weight.canonical());
    const missing = [...tensors].slice(1);
    expect(() => loadPeftAdapterTensors(other, missing)).toThrow(/missing base_model\.model\..*q_proj\.lora_A\.weight/);
    const wrongShape = [...tensors].map(([k, t]) => [k, k.endsWith('lora_A.weight') ? tf.zeros([3, 6]) : t] as const);
    expect(() => loadPeftAdapterTensors(other, wrongShape)).toThrow(/expected \[2, 6\], adapter has \[3, 6\]/);
    const extra = [...tensors, ['base_model.model.foo.lora_A.weight', tf.zeros([1])] as const];
    expect(() => loadPeftAdapterTensors(other, extra)).toThrow(/unexpected base_model\.model\.foo/);
    expectAllClose(
      await take((other.layers.at(0).self_attn.q_proj as unknown as LoraLinear).lora_B.weight.canonical()),
      before,
      { atol: 0, label: 'unchanged after a failed load' },
    );
    // PEFT's in-model names (`lora_A.default.weight`) are accepted too.
    const named = [...tensors].map(([k, t]) => [k.replace('.lora_A.weight', '.lora_A.default.weight'), t] as const);
    expect(loadPeftAdapterTensors(other, named)).toBe(4);
    const x = tf.ones([2, 6]);
    expectAllClose(await other.forward(x).data(), await m.forward(x).data(), { atol: 1e-5, label: 'same adapter' });
    tf.dispose([
      x,
      ...tensors.values(),
      ...wrongShape.map(([, t]) => t),
      (extra[extra.length - 1] as readonly [string, tf.Tensor])[1],
    ]);
    m.dispose();
    other.dispose();
  });

  it('saves and loads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)', async () => {
    const dir = join(tmp, `adapter-${backend}`);
    const m = new Toy().initialize({ seed: 7 });
    const config = { r: 2, lora_alpha: 16, lora_dropout: 0.05, target_modules: V1_TARGET };
    injectLora(m, config);
    randomizeB(m, 90);
    await savePeftAdapter(m, dir, config);
    const json = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    expect(json).toMatchObject({
      peft_type: 'LORA',
      r: 2,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: V1_TARGET,
    });
    expect(json).toEqual(peftAdapterConfigJson(config));
    const st = readSafetensors(readFileSync(join(dir, 'adapter_model.safetensors')));
    expect(st.keys().length).toBe(8);
    const base = new Toy().initialize({ seed: 7 });
    await loadPeftAdapter(base, dir);
    const x = tf.ones([2, 6]);
    expectAllClose(await base.forward(x).data(), await m.forward(x).data(), { atol: 1e-6, label: 'reloaded' });
    const merged = new Toy().initialize({ seed: 7 });
    await loadPeftAdapter(merged, dir, { merge: true });
    expect(loraModules(merged).every(([, l]) => l.merged)).toBe(true);
    expectAllClose(await merged.forward(x).data(), await m.forward(x).data(), { atol: 1e-5, label: 'merged reload' });
    await expect(loadPeftAdapter(new Toy(), join(tmp, 'nope'))).rejects.toThrow(OwletError);
    x.dispose();
    for (const t of [m, base, merged]) t.dispose();
  });
});
