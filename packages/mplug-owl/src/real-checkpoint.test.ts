/**
 * The slow tier: the real released checkpoint, only when OWLET_CHECKPOINT_DIR points at it (a
 * folder as downloaded from MAGAer13/mplug-owl2-llama2-7b or MAGAer13/mplug-owl-llama-7b, .bin
 * shards or converted safetensors). Not run in CI: the weights cannot be downloaded there.
 *
 *   OWLET_CHECKPOINT_DIR=~/models/mplug-owl2-llama2-7b OWLET_TEST_BACKENDS=wasm pnpm vitest run packages/mplug-owl/src/real-checkpoint.test.ts
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { openCheckpoint } from '@owlet/checkpoint';
import { REPO_ROOT, selectedBackends } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { fromPretrained } from './pretrained.js';

const dir = process.env.OWLET_CHECKPOINT_DIR;

describe.runIf(Boolean(dir))('the released checkpoint (OWLET_CHECKPOINT_DIR)', () => {
  it('has the released keys, loads strictly and answers about the owl picture', async () => {
    const ckpt = await openCheckpoint(dir!);
    const keys = ckpt.entries().map((e) => e.key);
    await ckpt.close();
    expect(keys.some((k) => k.startsWith('model.vision_model.') || k.startsWith('vision_model.'))).toBe(true);
    const model = await fromPretrained(dir!, { backend: selectedBackends()[0] ?? 'auto' });
    try {
      expect(model.numParameters()).toBeGreaterThan(7e9);
      const stream = model.chat({
        messages: [
          {
            role: 'user',
            content: [{ type: 'image' }, { type: 'text', text: 'What animal is in the picture? Answer in one word.' }],
          },
        ],
        images: [readFileSync(join(REPO_ROOT, 'apps/cli/assets/owl.png'))],
        max_new_tokens: 8,
      });
      for await (const _ of stream) {
        // drain
      }
      const r = await stream.result;
      expect(r.text.toLowerCase()).toMatch(/owl|bird/);
    } finally {
      model.dispose();
    }
  }, 3_600_000);
});
