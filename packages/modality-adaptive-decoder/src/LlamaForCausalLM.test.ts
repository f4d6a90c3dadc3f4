import * as tf from '@tensorflow/tfjs-core';
import { decodeStepsFor, describeBackends, expectNoLeaks } from '@owlet/test-utils';
import { afterAll, beforeAll, expect } from 'vitest';

import { LlamaForCausalLM } from './LlamaForCausalLM.js';
import {
  type LoadedLlm,
  intRows,
  loadCase,
  loadTinyLlm,
  logParity,
  maxDiff,
  parityLog,
  slow,
  take,
} from './test-helpers.js';

const TOL = 1e-4;

afterAll(() => {
  if (process.env.OWLET_PRINT_PARITY) console.log(`\n${parityLog.join('\n')}`);
});

/**
 * Greedy generation from a case's prompt; checks ids, sequences and every step's logits — all 16
 * fixture steps, or the first few on a software WebGPU adapter (see decodeStepsFor).
 */
async function checkGreedy(
  llm: LoadedLlm,
  which: 'owl2_tiny' | 'owl1_tiny',
  name: string,
  fromEmbeds: boolean,
  label: string,
) {
  const c = loadCase(which, name);
  const allIds = Array.from(c.archive.array('generated_ids'));
  const steps = decodeStepsFor(allIds.length);
  const expectedIds = allIds.slice(0, steps);
  const stepLogits = c.archive.array('generation_step_logits');
  const V = llm.config.vocab_size;
  const embeds = fromEmbeds ? c.archive.tensor('inputs_embeds') : null;
  const res = await llm.model.generate({
    ...(fromEmbeds
      ? {
          inputs_embeds: embeds!,
          modality_indicators: c.archive.has('modality_indicators') ? intRows(c.archive, 'modality_indicators') : null,
        }
      : { input_ids: intRows(c.archive, 'input_ids') }),
    max_new_tokens: expectedIds.length,
    eos_token_id: null,
    output_logits: true,
  });
  embeds?.dispose();
  expect(res.generated_ids).toEqual(expectedIds);
  expect(res.finish_reason).toBe('length');
  let worst = 0;
  res.logits!.forEach((row, k) => {
    const d = maxDiff(row, stepLogits.subarray(k * V, (k + 1) * V));
    worst = Math.max(worst, d);
    expect(d, `${label} step ${k}`).toBeLessThanOrEqual(TOL);
  });
  expect(res.logits).toHaveLength(steps);
  logParity(`${label} generation_step_logits (${steps} steps, max)`, worst);
  if (!fromEmbeds) {
    const full = Array.from(c.archive.array('generate_output_sequences'));
    expect(res.sequences[0]).toEqual(full.slice(0, full.length - allIds.length + steps));
  }
}

describeBackends('LlamaForCausalLM parity (owl2_tiny, MAM)', ({ backend, it: matrixIt }) => {
  const it = slow(matrixIt);
  let llm: LoadedLlm;
  beforeAll(() => {
    llm = loadTinyLlm('owl2_tiny');
  });
  afterAll(() => llm.root.dispose());

  it('mam_decoder: hidden states, last hidden state, logits, all-modality-0/1 logits', async () => {
    const c = loadCase('owl2_tiny', 'mam_decoder');
    const modality = intRows(c.archive, 'modality_indicators');
    await expectNoLeaks(async () => {
      const x = c.archive.tensor('inputs_embeds');
      const L = x.shape[1] as number;
      const out = llm.model.forward({ inputs_embeds: x, modality_indicators: modality, output_hidden_states: true });
      expect(out.hidden_states).toHaveLength(3);
      const hs = tf.concat(out.hidden_states!, 0);
      tf.dispose(out.hidden_states!);
      const dh = maxDiff(await take(hs), c.archive.array('llm_hidden_states'));
      const dl = maxDiff(await take(out.last_hidden_state), c.archive.array('last_hidden_state'));
      const dg = maxDiff(await take(out.logits), c.archive.array('logits'));
      for (const m of [0, 1]) {
        const o = llm.model.forward({ inputs_embeds: x, modality_indicators: [new Array<number>(L).fill(m)] });
        o.last_hidden_state.dispose();
        const d = maxDiff(await take(o.logits), c.archive.array(`logits_all_modality_${m}`));
        logParity(`[${backend}] mam_decoder logits_all_modality_${m}`, d);
        expect(d).toBeLessThanOrEqual(TOL);
      }
      x.dispose();
      logParity(`[${backend}] mam_decoder llm_hidden_states`, dh);
      logParity(`[${backend}] mam_decoder last_hidden_state`, dl);
      logParity(`[${backend}] mam_decoder logits`, dg);
      expect(dh).toBeLessThanOrEqual(TOL);
      expect(dl).toBeLessThanOrEqual(TOL);
      expect(dg).toBeLessThanOrEqual(TOL);
    }, 'mam_decoder');
  });

  it('mam_decoder: the mask routing strategy gives the same logits as gather', async () => {
    const c = loadCase('owl2_tiny', 'mam_decoder');
    llm.model.model.multiwayStrategy = 'mask';
    try {
      await expectNoLeaks(async () => {
        const x = c.archive.tensor('inputs_embeds');
        const o = llm.model.forward({
          inputs_embeds: x,
          modality_indicators: intRows(c.archive, 'modality_indicators'),
        });
        x.dispose();
        o.last_hidden_state.dispose();
        const d = maxDiff(await take(o.logits), c.archive.array('logits'));
        logParity(`[${backend}] mam_decoder logits (mask strategy)`, d);
        expect(d).toBeLessThanOrEqual(TOL);
      });
    } finally {
      llm.model.model.multiwayStrategy = 'gather';
    }
  });

  it('text_only: logits and hidden states from input_ids', async () => {
    const c = loadCase('owl2_tiny', 'text_only');
    await expectNoLeaks(async () => {
      const out = llm.model.forward({ input_ids: intRows(c.archive, 'input_ids'), output_hidden_states: true });
      const hs = tf.concat(out.hidden_states!, 0);
      tf.dispose(out.hidden_states!);
      out.last_hidden_state.dispose();
      const dh = maxDiff(await take(hs), c.archive.array('llm_hidden_states'));
      const dg = maxDiff(await take(out.logits), c.archive.array('logits'));
      logParity(`[${backend}] text_only logits`, dg);
      expect(dh).toBeLessThanOrEqual(TOL);
      expect(dg).toBeLessThanOrEqual(TOL);
    });
  });

  it('text_only: greedy tokens with the cache, every step logit', async () => {
    await expectNoLeaks(() => checkGreedy(llm, 'owl2_tiny', 'text_only', false, `[${backend}] text_only`));
  });

  for (const name of ['one_image', 'two_images']) {
    it(`${name}: logits from inputs_embeds + modality_indicators`, async () => {
      const c = loadCase('owl2_tiny', name);
      await expectNoLeaks(async () => {
        const x = c.archive.tensor('inputs_embeds');
        const out = llm.model.forward({
          inputs_embeds: x,
          modality_indicators: intRows(c.archive, 'modality_indicators'),
          output_hidden_states: true,
        });
        x.dispose();
        const hs = tf.concat(out.hidden_states!, 0);
        tf.dispose(out.hidden_states!);
        out.last_hidden_state.dispose();
        const dh = maxDiff(await take(hs), c.archive.array('llm_hidden_states'));
        const dg = maxDiff(await take(out.logits), c.archive.array('logits'));
        logParity(`[${backend}] ${name} logits`, dg);
        expect(dh).toBeLessThanOrEqual(TOL);
        expect(dg).toBeLessThanOrEqual(TOL);
      });
    });

    it(`${name}: greedy tokens from inputs_embeds with the cache`, async () => {
      await expectNoLeaks(() => checkGreedy(llm, 'owl2_tiny', name, true, `[${backend}] ${name}`));
    });
  }

  it('the fixture would catch swapped multiway copies (k_proj, v_proj, both norms)', async () => {
    const c = loadCase('owl2_tiny', 'one_image');
    const run = async () => {
      const x = c.archive.tensor('inputs_embeds');
      const o = llm.model.forward({ inputs_embeds: x, modality_indicators: intRows(c.archive, 'modality_indicators') });
      x.dispose();
      o.last_hidden_state.dispose();
      return take(o.logits);
    };
    const expected = c.archive.array('logits');
    expect(maxDiff(await run(), expected)).toBeLessThanOrEqual(TOL);
    for (const part of ['self_attn.k_proj', 'self_attn.v_proj', 'input_layernorm', 'post_attention_layernorm']) {
      const swap = () => {
        for (let i = 0; i < llm.config.num_hidden_layers; i++) {
          const p0 = llm.model.getParameter(`model.layers.${i}.${part}.multiway.0.weight`)!;
          const p1 = llm.model.getParameter(`model.layers.${i}.${part}.multiway.1.weight`)!;
          const [a, b] = [p0.canonical(), p1.canonical()]; // declared [out, in] layout
          p0.assign(b);
          p1.assign(a);
          tf.dispose([a, b]);
        }
      };
      swap();
      const d = maxDiff(await run(), expected);
      swap();
      logParity(`[${backend}] swapped ${part} copies: logits diff`, d);
      expect(d, part).toBeGreaterThan(100 * TOL);
    }
    expect(maxDiff(await run(), expected)).toBeLessThanOrEqual(TOL);
  });

  it('the fixture would catch RMSNorm eps 1e-5', async () => {
    const wrong = loadTinyLlm('owl2_tiny', { configOverride: { rms_norm_eps: 1e-5 } });
    try {
      const c = loadCase('owl2_tiny', 'one_image');
      const x = c.archive.tensor('inputs_embeds');
      const o = wrong.model.forward({
        inputs_embeds: x,
        modality_indicators: intRows(c.archive, 'modality_indicators'),
      });
      x.dispose();
      o.last_hidden_state.dispose();
      const d = maxDiff(await take(o.logits), c.archive.array('logits'));
      logParity(`[${backend}] rms_norm_eps 1e-5: logits diff`, d);
      expect(d).toBeGreaterThan(100 * TOL);
    } finally {
      wrong.root.dispose();
    }
  });
});

describeBackends('LlamaForCausalLM parity (owl1_tiny, plain LLaMA)', ({ backend, it: matrixIt }) => {
  const it = slow(matrixIt);
  let llm: LoadedLlm;
  beforeAll(() => {
    llm = loadTinyLlm('owl1_tiny');
  });
  afterAll(() => llm.root.dispose());

  it('has the plain LLaMA keys under language_model. (no multiway)', () => {
    expect(llm.config.multiway).toBe(false);
    const keys = [...llm.root.namedParameters()].map(([k]) => k);
    expect(keys).toContain('language_model.model.layers.0.self_attn.k_proj.weight');
    expect(keys).toContain('language_model.model.layers.1.input_layernorm.weight');
    expect(keys.some((k) => k.includes('multiway'))).toBe(false);
    expect(llm.model).toBeInstanceOf(LlamaForCausalLM);
  });

  it('one_image: logits and hidden states from inputs_embeds', async () => {
    const c = loadCase('owl1_tiny', 'one_image');
    await expectNoLeaks(async () => {
      const x = c.archive.tensor('inputs_embeds');
      const out = llm.model.forward({ inputs_embeds: x, output_hidden_states: true });
      x.dispose();
      const hs = tf.concat(out.hidden_states!, 0);
      tf.dispose(out.hidden_states!);
      out.last_hidden_state.dispose();
      const dh = maxDiff(await take(hs), c.archive.array('llm_hidden_states'));
      const dg = maxDiff(await take(out.logits), c.archive.array('logits'));
      logParity(`[${backend}] owl1 one_image logits`, dg);
      expect(dh).toBeLessThanOrEqual(TOL);
      expect(dg).toBeLessThanOrEqual(TOL);
    });
  });

  it('one_image: greedy tokens (positions 0…L−1, then L, L+1, …)', async () => {
    await expectNoLeaks(() => checkGreedy(llm, 'owl1_tiny', 'one_image', true, `[${backend}] owl1 one_image`));
  });

  it('rejects image modality indicators (no modality-adaptive module)', () => {
    const x = tf.zeros([1, 2, llm.config.hidden_size]);
    try {
      expect(() => llm.model.forward({ inputs_embeds: x, modality_indicators: [[0, 1]] })).toThrow(
        /value 1 at position 1.*no modality-adaptive module/,
      );
    } finally {
      x.dispose();
    }
  });
});
