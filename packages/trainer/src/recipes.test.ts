import { MPLUGOwl2LlamaForCausalLM, MplugOwlForConditionalGeneration } from '@owlet/mplug-owl';
import { loadFixtureJson, useBackend } from '@owlet/test-utils';
import { beforeAll, describe, expect, it } from 'vitest';

import { RECIPES, RECIPE_NAMES, Trainer, applyTrainable, resolveRecipe } from './index.js';
import { fixtureModel } from './testing.testutil.js';

// Expected trainable keys per recipe, written as plain string rules (independent of the recipes' regexes).
const owl2Visual = (k: string) =>
  /^model\.layers\.\d+\./.test(k) &&
  (k.endsWith('input_layernorm.multiway.1.weight') ||
    k.endsWith('post_attention_layernorm.multiway.1.weight') ||
    k.endsWith('k_proj.multiway.1.weight') ||
    k.endsWith('v_proj.multiway.1.weight'));
const EXPECTED: Record<string, (k: string) => boolean> = {
  mplug_owl2_stage1: (k) =>
    k.startsWith('model.vision_model.') || k.startsWith('model.visual_abstractor.') || owl2Visual(k),
  mplug_owl2_stage2: () => true,
  mplug_owl2_finetune_lora: (k) =>
    k.includes('.lora_') && k.startsWith('model.layers.') && !k.includes('layernorm') && !k.startsWith('lm_head'),
  mplug_owl_stage1: (k) => k.startsWith('vision_model.') || k === 'query_tokens' || k.startsWith('abstractor.'),
  mplug_owl_stage2: (k) =>
    k.startsWith('language_model.') &&
    (k.endsWith('q_proj.lora_A.weight') ||
      k.endsWith('q_proj.lora_B.weight') ||
      k.endsWith('v_proj.lora_A.weight') ||
      k.endsWith('v_proj.lora_B.weight')),
};

// Which keys train does not depend on the backend: cpu only.
describe('recipes', () => {
  beforeAll(() => useBackend('cpu'));
  it('each recipe trains exactly its keys on the tiny fixture models', () => {
    for (const name of RECIPE_NAMES) {
      const r = RECIPES[name];
      const model = fixtureModel(r.model_type === 'mplug_owl2' ? 'owl2_tiny' : 'owl1_tiny');
      const trainer = new Trainer(model, { recipe: name, max_steps: 10 });
      const all = [...model.namedParameters()].map(([k]) => k);
      const expected = all.filter(EXPECTED[name] as (k: string) => boolean);
      expect(trainer.trainableKeys, name).toEqual(expected);
      expect(expected.length).toBeGreaterThan(0);
      expect(all.filter((k) => !expected.includes(k)).every((k) => model.getParameter(k)?.trainable === false)).toBe(
        true,
      );
      if (name === 'mplug_owl2_finetune_lora') {
        // both multiway copies of k/v, q/o and the MLP get adapters; lm_head and the towers none
        const adapters = new Set(expected.map((k) => k.replace(/\.lora_[AB]\.weight$/, '')));
        expect(adapters.size).toBe(2 * (1 + 2 + 2 + 1 + 3));
        expect([...adapters].some((k) => k.endsWith('k_proj.multiway.0'))).toBe(true);
      }
      expect(r.source).toMatch(/§[AB]\.\d+/);
      trainer.dispose();
      model.dispose();
    }
  });

  it('stage 1 / 2 on the released 7B key trees (shape-only): counts of the released checkpoint', () => {
    // the released configurations are the code defaults (see the fixture files' `config` field)
    const owl2 = new MPLUGOwl2LlamaForCausalLM({ model_type: 'mplug_owl2' });
    const keys = [...owl2.namedParameters()].map(([k]) => k);
    const stage1 = applyTrainable(owl2, RECIPES.mplug_owl2_stage1.trainable);
    expect(stage1).toEqual(keys.filter(EXPECTED.mplug_owl2_stage1 as (k: string) => boolean));
    expect(stage1.filter(owl2Visual)).toHaveLength(32 * 4);
    const frozenVit = resolveRecipe('mplug_owl2_stage2', { freeze_vision_model: true });
    const stage2 = applyTrainable(owl2, frozenVit.trainable, frozenVit.frozen);
    expect(stage2).toEqual(keys.filter((k) => !k.startsWith('model.vision_model.')));
    expect(frozenVit.args.layerwise_lr_decay).toBeNull();
    const owl1 = new MplugOwlForConditionalGeneration({
      model_type: 'mplug-owl',
      text_config: {},
      vision_config: {},
      visual_abstractor_config: {},
    });
    const released = loadFixtureJson<{ keys: { key: string }[] }>('released_keys_mplug_owl_7b.json');
    expect(released.keys.filter((k) => !k.key.endsWith('inv_freq')).length).toBe([...owl1.namedParameters()].length);
    const k1 = [...owl1.namedParameters()].map(([k]) => k);
    expect(applyTrainable(owl1, RECIPES.mplug_owl_stage1.trainable)).toEqual(
      k1.filter(EXPECTED.mplug_owl_stage1 as (k: string) => boolean),
    );
    expect(() => resolveRecipe('mplug_owl_stage1', { freeze_vision_model: true })).toThrow(/mPLUG-Owl2 recipes/);
    expect(() => resolveRecipe('nope' as never)).toThrow(/unknown recipe "nope"/);
  });

  it('a recipe for the other model is refused', () => {
    const model = fixtureModel('owl1_tiny');
    expect(() => new Trainer(model, { recipe: 'mplug_owl2_stage1' })).toThrow(/for mplug_owl2 models/);
    model.dispose();
  });
});
