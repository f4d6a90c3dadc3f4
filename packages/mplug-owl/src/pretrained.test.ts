import { copyFileSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import {
  injectLora,
  isOwletError,
  lastKernel,
  loraModules,
  packedWeightStats,
  savePeftAdapter,
  withoutKernels,
  getCpuEngine,
} from '@owlet/core';
import { expectNoLeaks, fixturePath, loadFixture, maxAbsDiff, REPO_ROOT } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
import { fromPretrained, weightDTypeReport, type LoadProgress } from './pretrained.js';

// A checkpoint folder in the released layout: config.json, the official .bin shards with their
// index, tokenizer.model (the real LLaMA one; the tiny model's ids are fixture ids anyway).
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'owlet-pretrained-'));
  cpSync(fixturePath('torch_bin/owl2_tiny_f32'), dir, { recursive: true });
  copyFileSync(fixturePath('owl2_tiny/config.json'), join(dir, 'config.json'));
  copyFileSync(join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random/tokenizer.model'), join(dir, 'tokenizer.model'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fromPretrained', () => {
  it('loads the official .bin shards from a folder, reports progress per file, and matches the fixture logits', async () => {
    const events: LoadProgress[] = [];
    const model = await fromPretrained(dir, { backend: 'cpu', onProgress: (e) => events.push(e) });
    expect(model).toBeInstanceOf(MPLUGOwl2LlamaForCausalLM);
    expect(model.tokenizer).not.toBeNull();
    expect(model.imageProcessor?.entryPoint).toBe('pad');
    const files = new Set(events.filter((e) => e.status === 'done').map((e) => (e as { file: string }).file));
    for (const f of ['config.json', 'tokenizer.model', 'pytorch_model-1-of-3.bin', 'pytorch_model-3-of-3.bin'])
      expect(files).toContain(f);
    expect(events.at(-1)?.status).toBe('ready');
    const fx = loadFixture('owl2_tiny/case_one_image.safetensors');
    const warmPixels = fx.tensor('pixel_values');
    tf.dispose([warmPixels, model.encodeImages(warmPixels)]); // creates the abstractor's position tables (module state)
    await expectNoLeaks(async () => {
      const pixels = fx.tensor('pixel_values');
      const out = model.forward({ input_ids: Array.from(fx.array('input_ids')), pixel_values: pixels });
      expect(maxAbsDiff(await out.logits.data(), fx.array('logits')).maxAbs).toBeLessThanOrEqual(1e-4);
      tf.dispose([pixels, out.logits, out.last_hidden_state]);
    });
    model.dispose();
  });

  it("dtype 'q8' / 'q4': language-model Linears quantized at load, the vision side float32, same logits as float32 on the decoded weights", async () => {
    const fx = loadFixture('owl2_tiny/case_one_image.safetensors');
    const ids = Array.from(fx.array('input_ids'));
    const ref = await fromPretrained(dir, { backend: 'cpu' });
    for (const dtype of ['q8', 'q4'] as const) {
      const before = packedWeightStats();
      const model = await fromPretrained(dir, { backend: 'cpu', dtype });
      const report = weightDTypeReport(model);
      if (!report) throw new Error('no dtype report');
      expect(report.packed.get('model.layers.0.mlp.down_proj.weight')).toBe(dtype);
      expect(report.packed.get('model.layers.1.self_attn.k_proj.multiway.1.weight')).toBe(dtype);
      expect(report.packed.get('lm_head.weight')).toBe(dtype);
      expect([...report.packed.keys()].some((k) => /vision_model|visual_abstractor|norm|embed/.test(k))).toBe(false);
      expect(model.getParameter('model.vision_model.encoder.layers.0.mlp.fc1.weight')?.packed).toBeNull();
      // the float32 model given the decoded weights computes the same logits
      for (const [key, p] of model.namedParameters()) {
        if (!p.packed) continue;
        const t = p.canonical();
        ref.loadParameter(key, t);
        t.dispose();
      }
      const run = (m: typeof model) => {
        const pixels = fx.tensor('pixel_values');
        const out = m.forward({ input_ids: ids, pixel_values: pixels });
        pixels.dispose();
        out.last_hidden_state.dispose();
        return out.logits;
      };
      tf.dispose([run(model), run(ref)]); // creates the abstractor's position tables (module state)
      await expectNoLeaks(async () => {
        // through the composite (decoded weights, float32 activations): the float32 model's logits
        const a = withoutKernels(() => run(model));
        const b = run(ref);
        expect(maxAbsDiff(await a.data(), await b.data()).maxAbs).toBeLessThanOrEqual(1e-4);
        // on cpu/wasm the CPU engine's kernels run (int16 activations): close to it
        const k = run(model);
        expect(lastKernel('linear')).toBe(`owlet-cpu-${getCpuEngine()?.kind}:${dtype}`);
        expect(maxAbsDiff(await k.data(), await a.data()).maxAbs).toBeLessThanOrEqual(1e-2);
        tf.dispose([a, b, k]);
      });
      model.dispose();
      expect(packedWeightStats()).toEqual(before);
    }
    ref.dispose();
    await expect(fromPretrained(dir, { backend: 'cpu', dtype: 'int4' as never })).rejects.toThrow(
      /unknown dtype "int4"/,
    );
  });

  it('loads from a map of Blobs (the browser path) the same weights', async () => {
    const files = new Map<string, Blob>();
    for (const name of readdirSync(dir)) files.set(name, new Blob([readFileSync(join(dir, name))]));
    const model = await fromPretrained(files, { backend: 'cpu' });
    const w = model.getParameter('model.norm.weight')!.canonical();
    expect(Array.from(await w.data())).toEqual(
      Array.from(loadFixture('owl2_tiny/model.safetensors').array('model.norm.weight')),
    );
    w.dispose();
    model.dispose();
  });

  it('is cancellable and leaves nothing behind', async () => {
    const before = tf.memory().numTensors;
    const ac = new AbortController();
    let n = 0;
    const err = await fromPretrained(dir, {
      backend: 'cpu',
      signal: ac.signal,
      onProgress: (e) => {
        if (e.status === 'progress' && ++n === 1) ac.abort();
      },
    }).catch((e: unknown) => e);
    expect(isOwletError(err, 'ABORTED')).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses a folder without config.json, and a config of another model, with typed errors', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'owlet-empty-'));
    try {
      const e1 = await fromPretrained(empty, { backend: 'cpu' }).catch((e: unknown) => e);
      expect(isOwletError(e1, 'CHECKPOINT_NOT_FOUND')).toBe(true);
      expect((e1 as Error).message).toMatch(/no config\.json/);
      const { writeFileSync } = await import('node:fs');
      writeFileSync(join(empty, 'config.json'), JSON.stringify({ model_type: 'mplug_owl2_1' }));
      const e2 = await fromPretrained(empty, { backend: 'cpu' }).catch((e: unknown) => e);
      expect(isOwletError(e2, 'UNSUPPORTED_MODEL')).toBe(true);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('applies a PEFT LoRA adapter folder (adapter: dir), unmerged or merged, with the adapted logits', async () => {
    const base = await fromPretrained(dir, { backend: 'cpu' });
    const config = {
      r: 4,
      lora_alpha: 8,
      target_modules: 'model\\.layers\\.\\d+\\.self_attn\\.(q_proj|k_proj\\.multiway\\.1)',
    };
    injectLora(base, config, { seed: 3 });
    for (const [i, [, m]] of loraModules(base).entries()) {
      const b = tf.randomNormal([m.outFeatures, m.r], 0, 0.2, 'float32', 100 + i);
      m.lora_B.weight.assign(b);
      b.dispose();
    }
    const adapterDir = join(dir, '..', `${dir.split('/').pop()}-adapter`);
    await savePeftAdapter(base, adapterDir, config);
    const fx = loadFixture('owl2_tiny/case_one_image.safetensors');
    const ids = Array.from(fx.array('input_ids'));
    const logitsOf = async (m: typeof base) => {
      const pixels = fx.tensor('pixel_values');
      const out = m.forward({ input_ids: ids, pixel_values: pixels });
      const d = await out.logits.data();
      tf.dispose([pixels, out.logits, out.last_hidden_state]);
      return d;
    };
    const expected = await logitsOf(base);
    const plain = await logitsOf(await fromPretrained(dir, { backend: 'cpu' }));
    expect(maxAbsDiff(plain, expected).maxAbs).toBeGreaterThan(1e-3); // the adapter matters
    const adapted = await fromPretrained(dir, { backend: 'cpu', adapter: adapterDir });
    expect(loraModules(adapted).length).toBe(loraModules(base).length);
    expect(maxAbsDiff(await logitsOf(adapted), expected).maxAbs).toBeLessThanOrEqual(1e-5);
    const merged = await fromPretrained(dir, { backend: 'cpu', adapter: adapterDir, merge_adapter: true });
    expect(loraModules(merged).every(([, m]) => m.merged)).toBe(true);
    expect(maxAbsDiff(await logitsOf(merged), expected).maxAbs).toBeLessThanOrEqual(1e-4);
    await expect(fromPretrained(dir, { backend: 'cpu', adapter: join(dir, 'missing') })).rejects.toSatisfy((e) =>
      isOwletError(e, 'CHECKPOINT_NOT_FOUND'),
    );
    for (const m of [base, adapted, merged]) m.dispose();
    rmSync(adapterDir, { recursive: true, force: true });
  });
});
