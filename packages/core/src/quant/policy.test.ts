import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectNoLeaks } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { Module, ModuleList } from '../module.js';
import { Embedding } from '../nn/Embedding.js';
import { Linear } from '../nn/Linear.js';
import { RMSNorm } from '../nn/RMSNorm.js';
import { packedWeightStats } from './packed.js';
import { resolveDTypeRequest, weightGroupOf } from './policy.js';

/** A module tree with the key layout of mPLUG-Owl2 (model.layers.*, model.vision_model.*, …). */
class Node extends Module {
  constructor(children: Record<string, Module>) {
    super();
    for (const [k, m] of Object.entries(children)) this.registerModule(k, m);
  }
}
function owl2Like(): Module {
  const layer = new Node({
    self_attn: new Node({ q_proj: new Linear(64, 64, { bias: false }) }),
    mlp: new Node({ down_proj: new Linear(96, 64, { bias: false }) }),
    input_layernorm: new RMSNorm(64, 1e-6),
  });
  return new Node({
    model: new Node({
      embed_tokens: new Embedding(50, 64),
      layers: new ModuleList([layer]),
      norm: new RMSNorm(64, 1e-6),
      vision_model: new Node({ fc1: new Linear(32, 64) }),
      visual_abstractor: new Node({ w1: new Linear(64, 40) }),
    }),
    lm_head: new Linear(64, 50, { bias: false }),
  });
}

describe('dtype policy', () => {
  it('groups mPLUG-Owl2, mPLUG-Owl v1 and LLaMA keys', () => {
    expect(weightGroupOf('model.layers.3.mlp.up_proj.weight')).toBe('decoder');
    expect(weightGroupOf('language_model.model.layers.3.self_attn.q_proj.weight')).toBe('decoder');
    expect(weightGroupOf('lm_head.weight')).toBe('lm_head');
    expect(weightGroupOf('model.embed_tokens.weight')).toBe('embed_tokens');
    expect(weightGroupOf('language_model.model.embed_tokens.weight')).toBe('embed_tokens');
    expect(weightGroupOf('language_model.lm_head.weight')).toBe('lm_head');
    expect(weightGroupOf('model.vision_model.encoder.layers.0.mlp.fc1.weight')).toBe('vision_encoder');
    expect(weightGroupOf('vision_model.encoder.layers.0.mlp.fc1.weight')).toBe('vision_encoder');
    expect(weightGroupOf('model.visual_abstractor.visual_fc.weight')).toBe('visual_abstractor');
    expect(weightGroupOf('abstractor.encoder.layers.0.crossattention.output.mlp.w1.weight')).toBe('visual_abstractor');
  });

  it('a string applies to the decoder and lm_head; a map sets groups; unknown names are typed errors', () => {
    expect(resolveDTypeRequest('q4')).toEqual({
      decoder: 'q4',
      lm_head: 'q4',
      embed_tokens: null,
      vision_encoder: null,
      visual_abstractor: null,
    });
    expect(resolveDTypeRequest('auto')).toEqual({
      decoder: null,
      lm_head: null,
      embed_tokens: null,
      vision_encoder: null,
      visual_abstractor: null,
    });
    expect(resolveDTypeRequest({ vision_encoder: 'fp16', decoder: 'q8' })).toEqual({
      decoder: 'q8',
      lm_head: null,
      embed_tokens: null,
      vision_encoder: 'fp16',
      visual_abstractor: null,
    });
    expect(() => resolveDTypeRequest('int4' as never)).toThrow(/unknown dtype "int4"/);
    expect(() => resolveDTypeRequest({ text: 'q4' } as never)).toThrow(/unknown module "text"/);
    expect(() => resolveDTypeRequest({ decoder: 'q3' } as never)).toThrow(/dtype.decoder: unknown dtype/);
  });
});

describeBackends('setWeightDTypes', ({ it }) => {
  it('q4: decoder Linears and lm_head packed; norms, embeddings and the vision side stay tfjs tensors', async () => {
    await expectNoLeaks(async () => {
      const m = owl2Like();
      const report = m.setWeightDTypes('q4');
      expect([...report.packed.entries()].sort()).toEqual([
        ['lm_head.weight', 'q4'],
        ['model.layers.0.mlp.down_proj.weight', 'q4'],
        ['model.layers.0.self_attn.q_proj.weight', 'q4'],
      ]);
      // loading streams each value straight into q4: no tfjs variable is ever made for them
      const before = tf.memory().numTensors;
      for (const [key, p] of m.namedParameters()) {
        const t = tf.randomNormal([...p.shape], 0, 0.1, 'float32', key.length);
        m.loadParameter(key, t);
        t.dispose();
      }
      const tensorParams = [...m.namedParameters()].filter(([, p]) => p.packed === null).length;
      expect(tf.memory().numTensors - before).toBe(tensorParams);
      expect(m.getParameter('model.layers.0.self_attn.q_proj.weight')?.weightDType).toBe('q4');
      expect(m.getParameter('model.embed_tokens.weight')?.packed).toBeNull();
      expect(m.getParameter('model.vision_model.fc1.weight')?.packed).toBeNull();
      expect(m.getParameter('model.layers.0.input_layernorm.weight')?.packed).toBeNull();
      const bytes = m.weightBytes();
      expect(bytes.packed).toBe(64 * 36 + 64 * 54 + 50 * 36); // 18 bytes per 32 values
      // packed weights are not trainable variables; stateDict decodes them
      expect(m.trainableVariables().length).toBe(tensorParams);
      const sd = m.stateDict();
      expect(sd.get('lm_head.weight')?.shape).toEqual([50, 64]);
      tf.dispose([...sd.values()]);
      m.dispose();
    }, 'setWeightDTypes');
    expect(packedWeightStats().count).toBe(0);
  });

  it('a map packs the vision side too; rows that are not whole blocks stay float32 and are reported', async () => {
    await expectNoLeaks(async () => {
      const m = owl2Like();
      m.initialize({ seed: 1 });
      // already-materialised weights are re-encoded at once
      const report = m.setWeightDTypes({ decoder: 'q8', vision_encoder: 'fp16', visual_abstractor: 'q4' });
      expect(report.packed.get('model.vision_model.fc1.weight')).toBe('fp16');
      expect(report.packed.get('model.layers.0.mlp.down_proj.weight')).toBe('q8');
      expect(report.packed.has('lm_head.weight')).toBe(false);
      expect(report.partialBlocks).toEqual([]);
      expect(m.getParameter('model.vision_model.fc1.weight')?.weightDType).toBe('fp16');
      const m2 = owl2Like();
      const r2 = m2.setWeightDTypes({ vision_encoder: 'q4' }); // fc1 has 32 inputs: fine
      expect(r2.partialBlocks).toEqual([]);
      const odd = new Node({ model: new Node({ layers: new Node({ x: new Linear(40, 8) }) }) });
      const r3 = odd.setWeightDTypes('q8');
      expect(r3.partialBlocks).toEqual([{ key: 'model.layers.x.weight', wanted: 'q8', shape: [8, 40] }]);
      expect(r3.packed.size).toBe(0);
      const r4 = odd.setWeightDTypes('fp16'); // no blocks: packs
      expect(r4.packed.get('model.layers.x.weight')).toBe('fp16');
      for (const x of [m, m2, odd]) x.dispose();
    }, 'map');
    expect(packedWeightStats().count).toBe(0);
  });

  it('embed_tokens in a map packs the embedding table; lookups decode exactly the stored rows', async () => {
    await expectNoLeaks(async () => {
      const module = new Embedding(50, 64);
      const m = new Node({ model: new Node({ embed_tokens: module }), lm_head: new Linear(64, 50, { bias: false }) });
      m.initialize({ seed: 2 });
      const emb = m.getParameter('model.embed_tokens.weight');
      if (!emb) throw new Error('no embedding');
      const table = emb.canonical();
      const values = (await table.data()) as Float32Array;
      table.dispose();
      for (const dtype of ['fp32', 'q8', 'q4'] as const) {
        const report = m.setWeightDTypes({ embed_tokens: dtype });
        expect([...report.packed.entries()]).toEqual([['model.embed_tokens.weight', dtype]]);
        expect(emb.packed?.dtype).toBe(dtype);
        const decoded = emb.packed?.dequantize() as Float32Array;
        if (dtype === 'fp32') expect(decoded).toEqual(values);
        const ids = [3, 0, 49, 3];
        const fromNumbers = module.forward(ids);
        const idTensor = tf.tensor2d([3, 0, 49, 3], [2, 2], 'int32');
        const fromTensor = module.forward(idTensor);
        expect(fromNumbers.shape).toEqual([4, 64]);
        expect(fromTensor.shape).toEqual([2, 2, 64]);
        const want = ids.flatMap((id) => Array.from(decoded.subarray(id * 64, (id + 1) * 64)));
        expect(Array.from(await fromNumbers.data())).toEqual(want);
        expect(Array.from(await fromTensor.data())).toEqual(want);
        expect(() => module.forward([50])).toThrow(/id 50 at position 0 is outside the vocabulary/);
        tf.dispose([fromNumbers, fromTensor, idTensor]);
      }
      // a string dtype still leaves the table a float32 tfjs tensor
      const m2 = owl2Like();
      m2.setWeightDTypes('q4');
      m2.initialize({ seed: 2 });
      expect(m2.getParameter('model.embed_tokens.weight')?.packed).toBeNull();
      m.dispose();
      m2.dispose();
    }, 'embed_tokens');
    expect(packedWeightStats().count).toBe(0);
  });
});
