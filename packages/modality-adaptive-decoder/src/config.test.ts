import { OwletError } from '@owlet/core';
import { loadFixtureJson } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { MPLUG_OWL2_7B_LLAMA_CONFIG, MPLUG_OWL_7B_LLAMA_CONFIG, eosIds, resolveLlamaConfig } from './config.js';
import { LlamaForCausalLM } from './LlamaForCausalLM.js';
import { LanguageModelRoot } from './test-helpers.js';

interface ReleasedKeys {
  parameter_count_excluding_inv_freq: number;
  keys: { key: string; shape: number[] }[];
}

describe('resolveLlamaConfig', () => {
  it('reads the owl2_tiny config.json (modality-adaptive on)', () => {
    const c = resolveLlamaConfig(loadFixtureJson('owl2_tiny/config.json'));
    expect(c).toMatchObject({
      vocab_size: 1024,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 4,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      max_position_embeddings: 256,
      bos_token_id: 1,
      eos_token_id: 2,
      pad_token_id: null,
      tie_word_embeddings: false,
      multiway: true,
      num_multiway: 2,
      head_dim: 16,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads the owl1_tiny text_config (plain LLaMA, 4.28: no rope_theta, no num_key_value_heads)', () => {
    const c = resolveLlamaConfig(loadFixtureJson('owl1_tiny/config.json'));
    expect(c).toMatchObject({
      hidden_size: 64,
      num_key_value_heads: 4,
      rope_theta: 10000,
      pad_token_id: 0,
      multiway: false,
      num_multiway: 1,
    });
  });

  it('released constants: v2 MAM LLaMA-2-7B with eps 1e-6; v1 LLaMA-7B', () => {
    expect(MPLUG_OWL2_7B_LLAMA_CONFIG).toMatchObject({
      hidden_size: 4096,
      intermediate_size: 11008,
      num_hidden_layers: 32,
      rms_norm_eps: 1e-6,
      multiway: true,
      vocab_size: 32000,
      max_position_embeddings: 2048,
    });
    expect(MPLUG_OWL_7B_LLAMA_CONFIG).toMatchObject({ hidden_size: 4096, multiway: false, pad_token_id: 0 });
    expect(eosIds(MPLUG_OWL2_7B_LLAMA_CONFIG)).toEqual([2]);
    expect(eosIds(resolveLlamaConfig({ eos_token_id: [2, 7] }))).toEqual([2, 7]);
    expect(resolveLlamaConfig({ model_type: 'mplug_owl2' }, { multiway: false }).multiway).toBe(false);
  });

  it('rejects invalid values with a typed error naming field and value', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ hidden_size: 65, num_attention_heads: 4 }, /hidden_size.*65/],
      [{ num_attention_heads: 32, num_key_value_heads: 5 }, /num_key_value_heads.*5/],
      [{ hidden_act: 'gelu' }, /hidden_act.*gelu/],
      [{ rope_scaling: { type: 'linear', factor: 2 } }, /rope_scaling/],
      [{ rms_norm_eps: -1 }, /rms_norm_eps.*-1/],
      [{ vocab_size: 1.5 }, /vocab_size.*1\.5/],
      [{ attention_bias: true }, /attention_bias/],
      [{ model_type: 'mplug_owl2', num_multiway: 3 }, /num_multiway.*3/],
      [{ model_type: 'mplug-owl', text_config: 5 }, /text_config/],
    ];
    for (const [json, re] of bad) {
      let err: unknown;
      try {
        resolveLlamaConfig(json);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(json)).toBeInstanceOf(OwletError);
      expect((err as OwletError).code).toBe('INVALID_CONFIG');
      expect((err as Error).message).toMatch(re);
    }
    expect(() => resolveLlamaConfig(null)).toThrow(OwletError);
  });
});

describe('released LLM shapes (shape-only build, no weights)', () => {
  it('mPLUG-Owl2 7B: keys and shapes equal the released LLM keys; 7,812,419,584 parameters', () => {
    const released = loadFixtureJson<ReleasedKeys>('released_keys_mplug_owl2_7b.json');
    const expected = released.keys
      .filter(
        ({ key }) =>
          ((key.startsWith('model.') &&
            !key.startsWith('model.vision_model.') &&
            !key.startsWith('model.visual_abstractor.')) ||
            key === 'lm_head.weight') &&
          !key.endsWith('rotary_emb.inv_freq'),
      )
      .map(({ key, shape }) => [key, shape] as const)
      .sort(([a], [b]) => a.localeCompare(b));
    const model = new LlamaForCausalLM(MPLUG_OWL2_7B_LLAMA_CONFIG);
    const got = [...model.namedParameters()]
      .map(([k, p]) => [k, [...p.shape]] as const)
      .sort(([a], [b]) => a.localeCompare(b));
    expect(got).toEqual(expected);
    expect(model.numParameters()).toBe(7_812_419_584);
    expect(model.unmaterializedKeys()).toHaveLength(got.length);
  });

  it('mPLUG-Owl v1 7B: keys and shapes equal the released language_model. keys', () => {
    const released = loadFixtureJson<ReleasedKeys>('released_keys_mplug_owl_7b.json');
    const expected = released.keys
      .filter(({ key }) => key.startsWith('language_model.') && !key.endsWith('rotary_emb.inv_freq'))
      .map(({ key, shape }) => [key, shape] as const)
      .sort(([a], [b]) => a.localeCompare(b));
    const root = new LanguageModelRoot(MPLUG_OWL_7B_LLAMA_CONFIG);
    const got = [...root.namedParameters()]
      .map(([k, p]) => [k, [...p.shape]] as const)
      .sort(([a], [b]) => a.localeCompare(b));
    expect(got).toEqual(expected);
    expect(root.numParameters()).toBe(6_738_415_616);
  });
});
