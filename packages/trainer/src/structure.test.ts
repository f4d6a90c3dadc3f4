/**
 * The generic trainer (loop, optimizer, schedules, parameter groups, checkpoints, export) depends on
 * @owlet/core and @owlet/checkpoint only; the mPLUG-Owl data pipeline (src/owl) may use the
 * tokenizer and the image processor. No file of the package imports a model package.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { useBackend } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { Trainer, TrainerErrorCode, collateCausalLm, type TrainingBatch } from './index.js';
import { colourDataset, paramBits, tinyOwl2 } from './testing.testutil.js';

const src = dirname(fileURLToPath(import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.ts$/.test(n) && !/\.test\.ts$|testutil\.ts$/.test(n) ? [p] : [];
  });
}

describe('@owlet/trainer structure', () => {
  it('generic files import only @owlet/core and @owlet/checkpoint; src/owl adds the tokenizer and the image processor', () => {
    const bad: string[] = [];
    for (const file of sources(src)) {
      const rel = relative(src, file);
      const allowed = rel.startsWith('owl/')
        ? ['@owlet/core', '@owlet/checkpoint', '@owlet/tokenizer', '@owlet/vision-encoder']
        : ['@owlet/core', '@owlet/checkpoint'];
      for (const m of readFileSync(file, 'utf8').matchAll(/from '(@owlet\/[a-z-]+)'/g)) {
        if (!allowed.includes(m[1] as string)) bad.push(`${rel} imports ${m[1]}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('a trainable weight stored packed (q8) is refused before training, naming it', async () => {
    await useBackend('cpu');
    const model = tinyOwl2(1);
    model.setWeightDTypes('q8');
    let err: unknown;
    try {
      new Trainer(model, { max_steps: 1 });
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe(TrainerErrorCode.INVALID_TRAINING_ARGS);
    expect((err as Error).message).toMatch(/is stored as q8/);
    model.dispose();
  });

  it('LoRA trains beside a q8 base (the packed Linears stay frozen and untouched)', async () => {
    await useBackend('cpu');
    const model = tinyOwl2(2);
    model.setWeightDTypes('q8');
    const trainer = new Trainer(model, {
      recipe: 'mplug_owl2_finetune_lora',
      max_steps: 2,
      learning_rate: 1e-2,
      warmup_steps: 0,
    });
    expect(trainer.trainableKeys.every((k) => k.includes('.lora_'))).toBe(true);
    const batch = () => collateCausalLm(colourDataset(4, 1)) as unknown as TrainingBatch;
    const before = await paramBits(model);
    const r1 = await trainer.step(batch());
    const r2 = await trainer.step(batch());
    expect(Number.isFinite(r1.loss) && Number.isFinite(r2.loss)).toBe(true);
    const after = await paramBits(model);
    const changed = [...after.keys()].filter((k) => after.get(k)?.some((x, i) => x !== before.get(k)?.[i]));
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((k) => k.includes('lora_B') || k.includes('lora_A'))).toBe(true);
    trainer.dispose();
    model.dispose();
  });
});
