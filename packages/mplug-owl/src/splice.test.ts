import * as tf from '@tensorflow/tfjs-core';
import { embedding, isOwletError } from '@owlet/core';
import { describeBackends, expectAllClose, expectNoLeaks, loadFixture } from '@owlet/test-utils';
import { expect } from 'vitest';

import { spliceOwl1, spliceOwl2, type EmbedFn } from './splice.js';

// Splicing checked on its own: the fixture's abstractor output + the fixture's embed_tokens must
// give exactly the official `inputs_embeds` and `modality_indicators`.
describeBackends('splice', ({ it }) => {
  const cases = [
    { dir: 'owl2_tiny', name: 'one_image', v: 2, embedKey: 'model.embed_tokens.weight' },
    { dir: 'owl2_tiny', name: 'two_images', v: 2, embedKey: 'model.embed_tokens.weight' },
    { dir: 'owl2_tiny', name: 'text_only', v: 2, embedKey: 'model.embed_tokens.weight' },
    { dir: 'owl1_tiny', name: 'one_image', v: 1, embedKey: 'language_model.model.embed_tokens.weight' },
  ] as const;

  for (const c of cases) {
    it(`${c.dir}/${c.name}: inputs_embeds and modality_indicators equal the official splice`, async () => {
      const model = loadFixture(`${c.dir}/model.safetensors`);
      const fx = loadFixture(`${c.dir}/case_${c.name}.safetensors`);
      await expectNoLeaks(async () => {
        const w = model.tensor(c.embedKey);
        const embed: EmbedFn = (ids) => embedding(w, ids) as tf.Tensor2D;
        const ids = fx.array('input_ids');
        const feats = fx.has('abstractor_output') ? (fx.tensor('abstractor_output') as tf.Tensor3D) : null;
        const out = c.v === 2 ? spliceOwl2(ids, feats, embed) : spliceOwl1(ids, feats, embed);
        const expected = fx.array('inputs_embeds');
        expect(out.inputs_embeds.shape).toEqual(fx.info('inputs_embeds').shape);
        expectAllClose(await out.inputs_embeds.data(), expected, { atol: 0, label: 'inputs_embeds' });
        if (c.v === 2) expect(Array.from(out.modality_indicators)).toEqual(Array.from(fx.array('modality_indicators')));
        tf.dispose([w, out.inputs_embeds, ...(feats ? [feats] : [])]);
      });
    });
  }

  it('refuses a slot/image count mismatch with a typed error and leaks nothing', async () => {
    await expectNoLeaks(() => {
      const w = tf.ones([8, 4]);
      const embed: EmbedFn = (ids) => embedding(w, ids) as tf.Tensor2D;
      const feats = tf.ones([1, 3, 4]) as tf.Tensor3D;
      const err = (f: () => unknown) => {
        try {
          f();
        } catch (e) {
          return e;
        }
        return undefined;
      };
      const e1 = err(() => spliceOwl2([1, -200, 2, -200], feats, embed));
      expect(isOwletError(e1, 'IMAGE_COUNT_MISMATCH')).toBe(true);
      expect((e1 as Error).message).toMatch(/2 image slot\(s\).*1 image\(s\)/);
      expect(
        isOwletError(
          err(() => spliceOwl2([1, 2], feats, embed)),
          'IMAGE_COUNT_MISMATCH',
        ),
      ).toBe(true);
      expect(
        isOwletError(
          err(() => spliceOwl1([1, -1, -1, 2], feats, embed)),
          'IMAGE_COUNT_MISMATCH',
        ),
      ).toBe(true);
      expect(
        isOwletError(
          err(() => spliceOwl2([1, -5], null, embed)),
          'INVALID_ARGUMENT',
        ),
      ).toBe(true);
      tf.dispose([w, feats]);
    });
  });
});
