import { isOwletError } from '@owlet/core';
import { loadFixtureJson } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import {
  MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG,
  MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG,
  abstractorImageTokens,
  resolveMplugOwlVisualAbstractorConfig,
} from './config.js';

function expectConfigError(fn: () => unknown, ...fragments: string[]): void {
  try {
    fn();
  } catch (e) {
    expect(isOwletError(e, 'INVALID_CONFIG'), String(e)).toBe(true);
    for (const f of fragments) expect((e as Error).message).toContain(f);
    return;
  }
  throw new Error('expected an INVALID_CONFIG error');
}

describe('resolveMplugOwlVisualAbstractorConfig', () => {
  it('fills the released mPLUG-Owl2 values (64 queries, 1025 keys, 6 layers, SwiGLU 2816)', () => {
    const c = MPLUG_OWL2_VISUAL_ABSTRACTOR_CONFIG;
    expect(c).toMatchObject({
      variant: 'mplug_owl2',
      hidden_size: 1024,
      encoder_hidden_size: 1024,
      num_hidden_layers: 6,
      num_attention_heads: 16,
      intermediate_size: 2816,
      layer_norm_eps: 1e-6,
      num_learnable_queries: 64,
      grid_size: 32,
      use_cls_token: true,
      add_v2t_pos_emb: false,
      language_hidden_size: 4096,
      use_sincos_pos_embed: true,
      owns_query_embeds: true,
    });
    expect(abstractorImageTokens(c)).toBe(1025);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('fills the released mPLUG-Owl v1 values (2816 SwiGLU, no position embeddings, external queries)', () => {
    const c = MPLUG_OWL_VISUAL_ABSTRACTOR_CONFIG;
    expect(c).toMatchObject({
      variant: 'mplug_owl',
      hidden_size: 1024,
      num_hidden_layers: 6,
      num_attention_heads: 16,
      intermediate_size: 2816,
      layer_norm_eps: 1e-6,
      num_learnable_queries: 64,
      grid_size: null,
      language_hidden_size: 4096,
      use_sincos_pos_embed: false,
      owns_query_embeds: false,
    });
    expect(abstractorImageTokens(c)).toBeNull();
  });

  it('reads the owl2_tiny config.json (nested visual_config.visual_abstractor, LLM width)', () => {
    const c = resolveMplugOwlVisualAbstractorConfig(loadFixtureJson('owl2_tiny/config.json'));
    expect(c).toMatchObject({
      variant: 'mplug_owl2',
      hidden_size: 32,
      encoder_hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      intermediate_size: 48,
      layer_norm_eps: 1e-6,
      num_learnable_queries: 8,
      grid_size: 4,
      use_cls_token: true,
      language_hidden_size: 64,
    });
    expect(abstractorImageTokens(c)).toBe(17);
  });

  it('reads the owl1_tiny config.json (visual_abstractor_config, num_query_tokens, text_config)', () => {
    const json = loadFixtureJson<Record<string, unknown>>('owl1_tiny/config.json');
    const c = resolveMplugOwlVisualAbstractorConfig(json);
    expect(c).toMatchObject({
      variant: 'mplug_owl',
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      intermediate_size: 48,
      num_learnable_queries: 8,
      attention_probs_dropout_prob: 0.1,
      language_hidden_size: 64,
      owns_query_embeds: false,
    });
  });

  it('takes the nested dict alone, with the variant and LLM width as options', () => {
    const c = resolveMplugOwlVisualAbstractorConfig(
      { hidden_size: 16, encoder_hidden_size: 16, num_attention_heads: 2, grid_size: null, use_cls_token: false },
      { language_hidden_size: 24 },
    );
    expect(c).toMatchObject({
      variant: 'mplug_owl2',
      hidden_size: 16,
      grid_size: 32,
      use_cls_token: false,
      language_hidden_size: 24,
    });
    expect(abstractorImageTokens(c)).toBe(1024);
    expect(resolveMplugOwlVisualAbstractorConfig({}, { variant: 'mplug_owl' }).variant).toBe('mplug_owl');
  });

  it('rejects invalid values with INVALID_CONFIG naming the field and value', () => {
    expectConfigError(() => resolveMplugOwlVisualAbstractorConfig({ hidden_size: 0 }), 'hidden_size', '0');
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ num_hidden_layers: 2.5 }),
      'num_hidden_layers',
      '2.5',
    );
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ intermediate_size: '2816' }),
      'intermediate_size',
      '"2816"',
    );
    expectConfigError(() => resolveMplugOwlVisualAbstractorConfig({ layer_norm_eps: -1 }), 'layer_norm_eps', '-1');
    expectConfigError(() => resolveMplugOwlVisualAbstractorConfig({ use_cls_token: 'yes' }), 'use_cls_token');
    expectConfigError(() => resolveMplugOwlVisualAbstractorConfig({ add_v2t_pos_emb: true }), 'add_v2t_pos_emb');
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ attention_probs_dropout_prob: 1 }),
      'attention_probs_dropout_prob',
    );
    expectConfigError(
      () =>
        resolveMplugOwlVisualAbstractorConfig({
          hidden_size: 1000,
          encoder_hidden_size: 1000,
          num_attention_heads: 16,
        }),
      'hidden_size 1000',
      'num_attention_heads 16',
    );
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ encoder_hidden_size: 1664 }),
      'encoder_hidden_size 1664',
      'hidden_size 1024',
    );
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ hidden_size: 18, encoder_hidden_size: 18, num_attention_heads: 2 }),
      'multiple of 4',
    );
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ model_type: 'mplug_owl2', hidden_size: -3 }),
      'language model hidden_size',
      '-3',
    );
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ model_type: 'mplug-owl', num_query_tokens: 0 }),
      'num_query_tokens',
      '0',
    );
    expectConfigError(() => resolveMplugOwlVisualAbstractorConfig({ model_type: 'llama' }), 'model_type', 'llama');
    expectConfigError(() => resolveMplugOwlVisualAbstractorConfig([]), 'config');
    expectConfigError(
      () => resolveMplugOwlVisualAbstractorConfig({ model_type: 'mplug_owl2' }, { variant: 'mplug_owl' }),
      'mplug_owl',
      'mplug_owl2',
    );
  });

  it('an 18-wide v1 abstractor is fine (no 2-D sin-cos table to build)', () => {
    const c = resolveMplugOwlVisualAbstractorConfig(
      { hidden_size: 18, encoder_hidden_size: 18, num_attention_heads: 2 },
      { variant: 'mplug_owl' },
    );
    expect(c.hidden_size).toBe(18);
  });
});
