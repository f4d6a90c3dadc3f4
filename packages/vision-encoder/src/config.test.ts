import { ErrorCode, type OwletError, isOwletError } from '@owlet/core';
import { loadFixtureJson } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import {
  MPLUG_OWL2_VISION_CONFIG,
  MPLUG_OWL_VISION_CONFIG,
  mplugOwlVisionDims,
  resolveMplugOwlVisionConfig,
  type MplugOwlVisionConfig,
} from './config.js';

function configError(fn: () => unknown): OwletError {
  try {
    fn();
  } catch (e) {
    expect(isOwletError(e, ErrorCode.INVALID_CONFIG)).toBe(true);
    return e as OwletError;
  }
  throw new Error('expected an INVALID_CONFIG error, nothing was thrown');
}

describe('resolveMplugOwlVisionConfig', () => {
  it('released v2 config: ViT-L/14 at 448 px, 1025 tokens, eps 1e-6, quick_gelu, CLS and post-LN on', () => {
    const c = MPLUG_OWL2_VISION_CONFIG;
    expect(c).toMatchObject({
      variant: 'mplug_owl2',
      hidden_size: 1024,
      intermediate_size: 4096,
      num_hidden_layers: 24,
      num_attention_heads: 16,
      image_size: 448,
      patch_size: 14,
      hidden_act: 'quick_gelu',
      layer_norm_eps: 1e-6,
      use_cls_token: true,
      use_post_layernorm: true,
      attention_dropout: 0,
    });
    expect(mplugOwlVisionDims(c)).toMatchObject({ head_dim: 64, grid_size: 32, num_patches: 1024, seq_length: 1025 });
    expect(mplugOwlVisionDims(c).position_embedding_shape).toEqual([1, 1025, 1024]);
    // The whole released config.json (MPLUGOwl2Config() with DEFAULT_VISUAL_CONFIG) resolves the same.
    expect(resolveMplugOwlVisionConfig({ model_type: 'mplug_owl2' })).toEqual(c);
  });

  it('released v1 config: 224 px, 257 tokens', () => {
    const c = MPLUG_OWL_VISION_CONFIG;
    expect(c.variant).toBe('mplug_owl');
    expect(c.image_size).toBe(224);
    expect(mplugOwlVisionDims(c)).toMatchObject({ grid_size: 16, num_patches: 256, seq_length: 257 });
    expect(resolveMplugOwlVisionConfig({ model_type: 'mplug-owl' })).toEqual(c);
  });

  it('reads visual_config.visual_model of the owl2_tiny config.json (no use_cls_token / use_post_layernorm keys → true)', () => {
    const json = loadFixtureJson<{ visual_config: { visual_model: Record<string, unknown> } }>('owl2_tiny/config.json');
    expect('use_cls_token' in json.visual_config.visual_model).toBe(false);
    const c = resolveMplugOwlVisionConfig(json);
    expect(c).toMatchObject({
      variant: 'mplug_owl2',
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      image_size: 56,
      patch_size: 14,
      layer_norm_eps: 1e-6,
      hidden_act: 'quick_gelu',
      use_cls_token: true,
      use_post_layernorm: true,
    });
    expect(mplugOwlVisionDims(c).seq_length).toBe(17);
    // The nested dict on its own gives the same config.
    expect(resolveMplugOwlVisionConfig(json.visual_config.visual_model)).toEqual(c);
  });

  it('reads vision_config of the owl1_tiny config.json', () => {
    const json = loadFixtureJson<{ vision_config: Record<string, unknown> }>('owl1_tiny/config.json');
    const c = resolveMplugOwlVisionConfig(json);
    expect(c).toMatchObject({ variant: 'mplug_owl', hidden_size: 32, num_hidden_layers: 2, image_size: 56 });
    expect(resolveMplugOwlVisionConfig(json.vision_config, { variant: 'mplug_owl' })).toEqual(c);
  });

  it('returns a frozen object', () => {
    const c = resolveMplugOwlVisionConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as { hidden_size: number }).hidden_size = 8;
    }).toThrow(TypeError);
  });

  it('honours use_cls_token / use_post_layernorm in v2 configs; v1 has no switches', () => {
    const c = resolveMplugOwlVisionConfig({ use_post_layernorm: false, use_cls_token: false, image_size: 224 });
    expect(c.use_post_layernorm).toBe(false);
    expect(c.use_cls_token).toBe(false);
    expect(mplugOwlVisionDims(c).position_embedding_shape).toEqual([256, 1024]);
    const v1 = resolveMplugOwlVisionConfig({ use_post_layernorm: false }, { variant: 'mplug_owl' });
    expect(v1.use_post_layernorm).toBe(true);
  });

  it('v1 always uses QuickGELU (hard-coded in the reference); v2 accepts gelu', () => {
    expect(resolveMplugOwlVisionConfig({ hidden_act: 'gelu' }, { variant: 'mplug_owl' }).hidden_act).toBe('quick_gelu');
    expect(resolveMplugOwlVisionConfig({ hidden_act: 'gelu' }).hidden_act).toBe('gelu');
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['hidden_size not an integer', { hidden_size: 10.5 }, /hidden_size must be a positive integer, got 10.5/],
    ['hidden_size a string', { hidden_size: '1024' }, /hidden_size must be a positive integer, got "1024"/],
    ['num_hidden_layers 0', { num_hidden_layers: 0 }, /num_hidden_layers must be a positive integer, got 0/],
    [
      'heads do not divide',
      { hidden_size: 100, num_attention_heads: 16 },
      /hidden_size 100 is not a multiple of num_attention_heads 16/,
    ],
    ['eps 0', { layer_norm_eps: 0 }, /layer_norm_eps must be a finite number > 0, got 0/],
    ['eps NaN', { layer_norm_eps: Number.NaN }, /layer_norm_eps must be a finite number > 0, got NaN/],
    ['unknown activation', { hidden_act: 'relu' }, /hidden_act must be one of "quick_gelu", "gelu", got "relu"/],
    ['four channels', { num_channels: 4 }, /num_channels must be 3 .*got 4/],
    ['patch larger than image', { image_size: 10, patch_size: 14 }, /patch_size 14 is larger than image_size 10/],
    [
      'no CLS with a 32×32 grid',
      { use_cls_token: false },
      /use_cls_token false needs a 16×16 patch grid.*448 \/ patch_size 14 = 32×32/,
    ],
    ['boolean as string', { use_post_layernorm: 'yes' }, /use_post_layernorm must be a boolean, got "yes"/],
    ['dropout 1', { attention_dropout: 1 }, /attention_dropout must be a number in \[0, 1\), got 1/],
    ['foreign model_type', { model_type: 'clip_vision_model' }, /model_type must be/],
  ];
  for (const [name, json, message] of bad) {
    it(`rejects ${name}`, () => {
      const e = configError(() => resolveMplugOwlVisionConfig(json));
      expect(e.message).toMatch(message);
    });
  }

  it('rejects a malformed nesting and names the field', () => {
    expect(configError(() => resolveMplugOwlVisionConfig({ visual_config: [] })).message).toMatch(
      /visual_config must be an object/,
    );
    expect(configError(() => resolveMplugOwlVisionConfig({ visual_config: { visual_model: 3 } })).message).toMatch(
      /visual_config.visual_model must be an object, got 3/,
    );
    expect(configError(() => resolveMplugOwlVisionConfig({ vision_config: 'x' })).message).toMatch(
      /vision_config must be an object/,
    );
    expect(configError(() => resolveMplugOwlVisionConfig(null)).message).toMatch(/config must be an object/);
    expect(configError(() => resolveMplugOwlVisionConfig({ visual_config: {}, vision_config: {} })).message).toMatch(
      /one model/,
    );
  });

  it('rejects a variant that contradicts the config.json, naming both', () => {
    const e = configError(() => resolveMplugOwlVisionConfig({ model_type: 'mplug_owl2' }, { variant: 'mplug_owl' }));
    expect(e.message).toMatch(/options.variant is mplug_owl but the config.json is a mplug_owl2 config/);
  });

  it('the error carries the field and value', () => {
    const e = configError(() => resolveMplugOwlVisionConfig({ patch_size: -14 }));
    expect(e.details).toMatchObject({ field: 'patch_size', value: -14 });
  });

  it('does not modify its input', () => {
    const json = { visual_config: { visual_model: { hidden_size: 64, num_attention_heads: 4 } } };
    const before = JSON.stringify(json);
    const c: MplugOwlVisionConfig = resolveMplugOwlVisionConfig(json);
    expect(c.hidden_size).toBe(64);
    expect(JSON.stringify(json)).toBe(before);
  });
});
