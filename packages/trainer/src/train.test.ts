import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { isOwletError } from '@owlet/core';
import { fromPretrained } from '@owlet/mplug-owl';
import { REPO_ROOT, expectNoLeaks, loadFixture, maxAbsDiff, useBackend } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  Trainer,
  TrainerErrorCode,
  collateCausalLm,
  exportPretrained,
  inMemoryDataset,
  latestCheckpoint,
  listCheckpoints,
  type TrainerOptions,
  type TrainingBatch,
} from './index.js';
import { colourDataset, fixtureModel, paramBits, take, tinyOwl2 } from './testing.testutil.js';

/** Full training runs with checkpoints: minutes on a loaded 2-core machine. */
const SLOW_TIMEOUT = 600_000;

const tmp = mkdtempSync(join(tmpdir(), 'owlet-train-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
beforeAll(() => useBackend('cpu'));

const data = inMemoryDataset(colourDataset(128, 5));
const batchOf = (idx: number[]): TrainingBatch =>
  collateCausalLm(idx.map((i) => colourDataset(128, 5)[i] as never)) as unknown as TrainingBatch;

/** HF test_resume_training settings: 128 samples, save_steps 5, lr 0.1, GA 2, frozen parameters, sharded checkpoints. */
const resumeOptions = (dir: string): TrainerOptions => ({
  recipe: 'mplug_owl2_stage1',
  learning_rate: 0.1,
  warmup_steps: 0,
  max_steps: 20,
  per_device_train_batch_size: 4,
  gradient_accumulation_steps: 2,
  save_steps: 5,
  logging_steps: 1,
  seed: 7,
  output_dir: dir,
  max_shard_size: 20_000,
});

function bitsEqual(a: Map<string, Uint32Array>, b: Map<string, Uint32Array>): string[] {
  const bad: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length || v.some((x, i) => x !== w[i])) bad.push(k);
  }
  return bad;
}

describe('Trainer loop [cpu]', () => {
  it('step: gradient accumulation sums micro-batch gradients of loss / GA; typed errors; no leaks', async () => {
    const m1 = tinyOwl2(3);
    const m2 = tinyOwl2(3);
    const t1 = new Trainer(m1, { max_steps: 5, learning_rate: 1e-2, gradient_accumulation_steps: 2 });
    const t2 = new Trainer(m2, { max_steps: 5, learning_rate: 1e-2 });
    // GA=2 over [a] and [b] == the mean of the two micro-batch gradients
    const ga = await t1.gradients([batchOf([0, 1]), batchOf([2, 3])]);
    const g1 = await t2.gradients(batchOf([0, 1]));
    const g2 = await t2.gradients(batchOf([2, 3]));
    let worst = 0;
    for (const [k, g] of ga.grads) {
      const expected = (await (g1.grads.get(k) as tf.Tensor).data()) as Float32Array;
      const e2 = await (g2.grads.get(k) as tf.Tensor).data();
      worst = Math.max(
        worst,
        maxAbsDiff(
          await g.data(),
          expected.map((x, i) => (x + (e2[i] as number)) / 2),
        ).maxAbs,
      );
    }
    expect(worst).toBeLessThan(1e-6);
    expect(ga.loss).toBeCloseTo((g1.loss + g2.loss) / 2, 5);
    tf.dispose([...ga.grads.values(), ...g1.grads.values(), ...g2.grads.values()]);
    await expect(t1.step(batchOf([0]))).rejects.toSatisfy((e) =>
      isOwletError(e, TrainerErrorCode.INVALID_TRAINING_ARGS),
    );
    // steady state: a step leaves exactly as many tensors as it found (optimizer state exists after step 1)
    await t2.step(batchOf([0, 1]));
    await expectNoLeaks(async () => {
      const r = await t2.step(batchOf([4, 5]));
      expect(r.step).toBe(2);
      expect(Number.isFinite(r.loss) && r.grad_norm > 0).toBe(true);
    }, 'Trainer.step');
    // a non-finite loss updates nothing
    const before = await paramBits(m2);
    const nan = new Trainer(m2, {
      max_steps: 5,
      compute_loss: (model, b) => tf.mul((model as typeof m2).computeLoss(b).loss, Number.NaN) as tf.Scalar,
    });
    await expect(nan.step(batchOf([0]))).rejects.toSatisfy((e) => isOwletError(e, TrainerErrorCode.NON_FINITE_LOSS));
    expect(bitsEqual(before, await paramBits(m2))).toEqual([]);
    for (const t of [t1, t2, nan]) t.dispose();
    m1.dispose();
    m2.dispose();
  });

  it(
    'F5: resume from checkpoint-5 and checkpoint-15 is bit-identical (GA 2, frozen LLM, sharded checkpoints)',
    async () => {
      const dirA = join(tmp, 'resume-a');
      const mA = tinyOwl2(11);
      const tA = new Trainer(mA, resumeOptions(dirA));
      const saved: string[] = [];
      const outA = await tA.train(data, { on_save: (d) => saved.push(d) });
      expect(outA.global_step).toBe(20);
      expect(saved.map((d) => d.split('/').pop())).toEqual([
        'checkpoint-5',
        'checkpoint-10',
        'checkpoint-15',
        'checkpoint-20',
      ]);
      const ck5 = readdirSync(join(dirA, 'checkpoint-5')).sort();
      expect(ck5.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(1); // sharded
      expect(ck5).toContain('model.safetensors.index.json');
      expect(ck5).toContain('optimizer.safetensors');
      const finalA = await paramBits(mA);
      const stateA = JSON.parse(JSON.stringify(tA.state));
      for (const from of [5, 15]) {
        const mB = tinyOwl2(11);
        const tB = new Trainer(mB, resumeOptions(join(tmp, `resume-b${from}`)));
        const outB = await tB.train(data, { resume_from_checkpoint: join(dirA, `checkpoint-${from}`) });
        expect(outB.global_step).toBe(20);
        expect(bitsEqual(finalA, await paramBits(mB)), `params after resuming from checkpoint-${from}`).toEqual([]);
        expect(JSON.parse(JSON.stringify(tB.state))).toEqual(stateA);
        const oA = tA.optimizer.stateDict(tA.params);
        const oB = tB.optimizer.stateDict(tB.params);
        expect(oB.steps).toEqual(oA.steps);
        for (const [k, t] of oA.tensors)
          expect(Array.from(await take(oB.tensors.get(k) as tf.Tensor)), k).toEqual(Array.from(await take(t)));
        tB.dispose();
        mB.dispose();
      }
      tA.dispose();
      mA.dispose();
    },
    SLOW_TIMEOUT,
  );

  it('F6 and F3: a bogus path, an empty folder and a folder without its completion marker are not valid checkpoints', async () => {
    const m = tinyOwl2(2);
    const empty = join(tmp, 'empty');
    mkdirSync(empty, { recursive: true });
    const t = new Trainer(m, { ...resumeOptions(empty), max_steps: 2 });
    await expect(t.train(data, { resume_from_checkpoint: join(tmp, 'no-such-dir') })).rejects.toThrow(
      /Can't find a valid checkpoint at .*no-such-dir/,
    );
    await expect(t.train(data, { resume_from_checkpoint: true })).rejects.toThrow(
      /No valid checkpoint found in output directory/,
    );
    // checkpoint-9 without a marker (a multi-file checkpoint cut between files) is ignored
    cpSync(join(tmp, 'resume-a', 'checkpoint-5'), join(empty, 'checkpoint-5'), { recursive: true });
    cpSync(join(tmp, 'resume-a', 'checkpoint-10'), join(empty, 'checkpoint-9'), { recursive: true });
    rmSync(join(empty, 'checkpoint-9', 'checkpoint_complete.json'));
    expect(await latestCheckpoint(empty)).toBe(join(empty, 'checkpoint-5'));
    // a truncated file under a complete marker is caught by the sizes / hashes
    const shard = readdirSync(join(empty, 'checkpoint-5')).find((f) => f.endsWith('.safetensors')) as string;
    const bytes = readFileSync(join(empty, 'checkpoint-5', shard));
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1;
    writeFileSync(join(empty, 'checkpoint-5', shard), bytes);
    await expect(t.loadCheckpoint(join(empty, 'checkpoint-5'))).rejects.toThrow(/does not match its SHA-256/);
    t.dispose();
    m.dispose();
  });

  it(
    'save_total_limit keeps the newest; F4: saving over the checkpoint it was resumed from replaces it whole',
    async () => {
      const dir = join(tmp, 'rotate');
      const m = tinyOwl2(4);
      const t = new Trainer(m, { ...resumeOptions(dir), max_steps: 12, save_steps: 3, save_total_limit: 2 });
      await t.train(data);
      expect((await listCheckpoints(dir)).map((c) => c.step)).toEqual([9, 12]);
      const m2 = tinyOwl2(4);
      const t2 = new Trainer(m2, { ...resumeOptions(dir), max_steps: 12, save_total_limit: 2 });
      await t2.loadCheckpoint(join(dir, 'checkpoint-12'));
      const again = await t2.saveCheckpoint();
      expect(again).toBe(join(dir, 'checkpoint-12'));
      expect(readdirSync(dir).filter((n) => n.startsWith('.'))).toEqual([]); // no temp or moved-aside folder left
      const m3 = tinyOwl2(4);
      const t3 = new Trainer(m3, { ...resumeOptions(dir), max_steps: 12 });
      await t3.loadCheckpoint(again);
      expect(bitsEqual(await paramBits(m2), await paramBits(m3))).toEqual([]);
      for (const x of [t, t2, t3]) x.dispose();
      for (const x of [m, m2, m3]) x.dispose();
    },
    SLOW_TIMEOUT,
  );

  it('an aborted signal writes a checkpoint, then throws ABORTED; training resumes from it', async () => {
    const dir = join(tmp, 'abort');
    const m = tinyOwl2(6);
    const t = new Trainer(m, { ...resumeOptions(dir), max_steps: 8, save_steps: 0 });
    const ac = new AbortController();
    await expect(t.train(data, { signal: ac.signal, on_step: (r) => r.step === 3 && ac.abort() })).rejects.toSatisfy(
      (e) => isOwletError(e, TrainerErrorCode.ABORTED),
    );
    expect(await latestCheckpoint(dir)).toBe(join(dir, 'checkpoint-3'));
    const m2 = tinyOwl2(6);
    const t2 = new Trainer(m2, { ...resumeOptions(dir), max_steps: 8, save_steps: 0 });
    expect((await t2.train(data, { resume_from_checkpoint: true })).global_step).toBe(8);
    t.dispose();
    t2.dispose();
    m.dispose();
    m2.dispose();
  });

  it('export: a Hugging Face folder with the released key set (LoRA folded in) that fromPretrained reloads with identical logits', async () => {
    const model = fixtureModel('owl2_tiny');
    const t = new Trainer(model, { recipe: 'mplug_owl2_finetune_lora', max_steps: 2, learning_rate: 5e-2 });
    const fx = loadFixture('owl2_tiny/case_train_step.safetensors');
    const ids = Array.from(fx.array('input_ids'));
    const b = () => ({
      input_ids: [ids],
      labels: [Array.from(fx.array('labels'))],
      pixel_values: fx.tensor('pixel_values'),
    });
    await t.step(b());
    await t.step(b());
    const dir = join(tmp, 'export');
    const r = await exportPretrained(model, dir, { max_shard_size: 400_000 });
    expect(r.files.filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(1);
    expect(existsSync(join(dir, 'model.safetensors.index.json'))).toBe(true);
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    const released = loadFixture('owl2_tiny/model.safetensors').keys();
    expect(Object.keys(index.weight_map).sort()).toEqual([...released].sort());
    cpSync(join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random/tokenizer.model'), join(dir, 'tokenizer.model'));
    const reloaded = await fromPretrained(dir, { backend: 'cpu' });
    const logits = async (m: typeof model | typeof reloaded) => {
      const pixels = fx.tensor('pixel_values');
      const out = m.forward({ input_ids: ids, pixel_values: pixels });
      const d = await out.logits.data();
      tf.dispose([pixels, out.logits, out.last_hidden_state]);
      return d;
    };
    // LoRA folded into W vs applied as x·W + s·B·A·x: equal up to float32 rounding
    expect(maxAbsDiff(await logits(reloaded), await logits(model)).maxAbs).toBeLessThanOrEqual(1e-5);
    // without adapters the exported weights are the trained ones, bit for bit: identical logits
    const plain = fixtureModel('owl2_tiny');
    const t2 = new Trainer(plain, { recipe: 'mplug_owl2_stage2', max_steps: 1, learning_rate: 1e-2, warmup_steps: 0 });
    await t2.step(b());
    const dir2 = join(tmp, 'export-plain');
    expect((await exportPretrained(plain, dir2)).files).toEqual(['model.safetensors', 'config.json']);
    cpSync(join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random/tokenizer.model'), join(dir2, 'tokenizer.model'));
    const reloaded2 = await fromPretrained(dir2, { backend: 'cpu' });
    expect(maxAbsDiff(await logits(reloaded2), await logits(plain)).maxAbs).toBe(0);
    for (const x of [t, t2]) x.dispose();
    for (const x of [model, reloaded, plain, reloaded2]) x.dispose();
  });
});
