import * as tf from '@tensorflow/tfjs-core';
import { type DTypeRequest, enableWebGPUEngine, uploadWebGPUWeights } from '@owlet/core';
import { loadFixture, loadFixtureJson, selectedBackends, useBackend } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
import { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
import { planMemory } from './plan.js';

const ALL_Q4: DTypeRequest = {
  decoder: 'q4',
  lm_head: 'q4',
  embed_tokens: 'q4',
  vision_encoder: 'q4',
  visual_abstractor: 'q4',
};

describe('planMemory', () => {
  const released = loadFixtureJson<{ parameter_count_excluding_inv_freq: number; keys: { shape: number[] }[] }>(
    'released_keys_mplug_owl2_7b.json',
  );

  it('covers every parameter of the released mPLUG-Owl2 and prices float32 at 4 bytes each', () => {
    const p = planMemory({ model_type: 'mplug_owl2' });
    const params = Object.values(p.weights.groups).reduce((n, g) => n + g.parameters, 0);
    expect(params).toBe(released.parameter_count_excluding_inv_freq);
    expect(p.weights.bytes).toBe(4 * params);
    expect(p.kv_cache.context_length).toBe(2048);
    // 32 layers × (K + V) × 32 heads × 128 × 4 bytes per position
    expect(p.kv_cache.bytes).toBe(32 * 2 * 4096 * 4 * 2048);
  });

  it('the released mPLUG-Owl2 with every Linear (and the embedding) in q4 plans ≤ 6 GB at 1024 tokens of context', () => {
    const p = planMemory({ model_type: 'mplug_owl2' }, { dtype: ALL_Q4, contextLength: 1024 });
    expect(p.total_bytes).toBeLessThanOrEqual(6e9);
    // Q4_0 is 18 bytes per 32 weights on the GPU too (plus a scale word's padding per chunk)
    // (the 2-D tensors of the checkpoint are its Linear weights and the embedding, which stays on the host)
    let linear = -32000 * 4096;
    for (const k of released.keys) if (k.shape.length === 2) linear += (k.shape[0] as number) * (k.shape[1] as number);
    const q4 = Object.values(p.weights.groups).reduce((n, g) => n + (g.packed.q4 ?? 0), 0);
    expect(q4).toBeGreaterThanOrEqual((linear * 18) / 32);
    expect(q4).toBeLessThan((linear * 18) / 32 + 1e5);
    expect(p.weights.groups.embed_tokens.bytes).toBe(0);
    expect(p.weights.groups.embed_tokens.host).toBe((32000 * 4096 * 18) / 32);
    // the language model alone in q4 (a string dtype) leaves the vision side float32
    const lm = planMemory({ model_type: 'mplug_owl2' }, { dtype: 'q4', contextLength: 1024 });
    expect(lm.weights.groups.vision_encoder.packed).toEqual({});
    expect(lm.total_bytes).toBeGreaterThan(p.total_bytes);
    expect(() => planMemory({ model_type: 'mplug_owl2' }, { contextLength: 0 })).toThrow(/contextLength/);
  });
});

describe.runIf(selectedBackends().includes('webgpu'))('planMemory against the GPU [webgpu]', () => {
  it('the tiny model: planned weight bytes and KV-cache bytes are the bytes actually allocated', async () => {
    await useBackend('webgpu');
    enableWebGPUEngine();
    const config = loadFixtureJson<Record<string, unknown>>('owl2_tiny/config.json');
    const weights = loadFixture('owl2_tiny/model.safetensors');
    const fx = loadFixture('owl2_tiny/case_text_only.safetensors');
    const ids = Array.from(fx.array('input_ids'));
    // tfjs releases disposed buffers and upload staging buffers when it submits its commands
    const gpuBytes = async () => {
      const b = tf.backend() as unknown as { ensureCommandEncoderReady(): void; submitQueue(): void };
      b.ensureCommandEncoderReady();
      b.submitQueue();
      return (tf.memory() as tf.MemoryInfo & { numBytesInGPU: number }).numBytesInGPU;
    };
    for (const dtype of [undefined, 'q4', { ...ALL_Q4, embed_tokens: 'fp32' }] as (DTypeRequest | undefined)[]) {
      const before = await gpuBytes();
      const model = new MPLUGOwl2LlamaForCausalLM(config);
      if (dtype !== undefined) model.setWeightDTypes(dtype);
      const sd = new Map(weights.keys().map((k) => [k, weights.tensor(k)] as const));
      model.loadStateDict(sd, { ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD });
      tf.dispose([...sd.values()]);
      await uploadWebGPUWeights(model);
      const plan = planMemory(config, { ...(dtype !== undefined ? { dtype } : {}), contextLength: ids.length + 3 });
      const after = await gpuBytes();
      expect(after - before, `weights, dtype ${JSON.stringify(dtype)}`).toBe(plan.weights.bytes);
      const gen = await model.generate({
        input_ids: ids,
        max_new_tokens: 4,
        eos_token_id: null,
        return_past_key_values: true,
      });
      const cache = gen.past_key_values;
      if (!cache) throw new Error('no cache returned');
      expect(cache.length).toBe(ids.length + 3);
      expect(cache.byteLength).toBe(plan.kv_cache.bytes);
      cache.dispose();
      model.dispose();
    }
  });
});
