/**
 * `pnpm train:tiny`: trains owlet-tiny with the two-stage recipe on the generated shapes VQA set
 * and exports it to apps/cli/models/owlet-tiny. Fixed seeds; resumable (re-run the command after a
 * kill: each stage resumes from its latest complete checkpoint under OWLET_TINY_RUN, default
 * .scratch/owlet-tiny). Progress on stdout, one JSON line per event in <run>/log.jsonl.
 *
 *   stage 1: captions ("Describe the image." → "There are 2 shapes: a red circle and a blue square.")
 *   stage 2: the four question types (one-word answers) with 20 % captions mixed in
 *
 * Every module trains in both stages (the LLM starts random, so freezing it as the paper's stage 1
 * does would leave it unable to read the visual tokens); held-out accuracy every `eval_every`
 * steps, early stop once it clears the recipe's bar.
 */
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

import { initBackend, OwletError } from '@owlet/core';
import { ShapesVqaSamples } from '@owlet/datasets';
import { listCheckpoints, Trainer } from '@owlet/trainer';

import { RECIPE, TRAIN_SEED, VALIDATION_SEED } from './config.js';
import { writeCard } from './card.js';
import { exportTiny } from './export.js';
import { buildModel, CLI_ROOT, evaluateSync, formatAccuracy, MODEL_DIR, preprocessor, type Accuracy } from './lib.js';

const runDir = process.env.OWLET_TINY_RUN ?? join(CLI_ROOT, '..', '..', '.scratch', 'owlet-tiny');
mkdirSync(runDir, { recursive: true });
const logFile = join(runDir, 'log.jsonl');
const log = (e: Record<string, unknown>) => appendFileSync(logFile, `${JSON.stringify({ t: Date.now(), ...e })}\n`);

const backend = await initBackend('wasm');
const model = buildModel();
const tokenizer = model.tokenizer as NonNullable<typeof model.tokenizer>;
const prep = preprocessor(model.imageProcessor as NonNullable<typeof model.imageProcessor>);
process.stdout.write(
  `owlet-tiny: ${model.numParameters()} parameters, backend ${backend.name}, ${cpus().length} cpu(s) (${cpus()[0]?.model ?? '?'}), run dir ${runDir}\n`,
);
log({
  event: 'start',
  parameters: model.numParameters(),
  backend: backend.name,
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
});

const VISUAL = ['^model\\.vision_model\\..*', '^model\\.visual_abstractor\\..*'];
const OPTIM = {
  adam_beta1: 0.9,
  adam_beta2: 0.98,
  adam_epsilon: 1e-6,
  lr_scheduler_type: 'cosine',
  weight_decay: 0.01,
  max_grad_norm: 1,
} as const;

type StageName = 'stage1' | 'stage2';
const donePath = join(runDir, 'done.json');

function passes(a: Accuracy): boolean {
  return a.overall >= RECIPE.stop_overall && Object.values(a.per_type).every((t) => t.accuracy >= RECIPE.stop_per_type);
}

async function runStage(
  name: StageName,
): Promise<{ steps: number; seconds: number; stopped_early: boolean; last_eval?: Accuracy }> {
  const s = RECIPE[name];
  const outDir = join(runDir, name);
  const trainer = new Trainer(model, {
    ...OPTIM,
    learning_rate: s.lr,
    warmup_steps: s.warmup_steps,
    max_steps: s.steps,
    per_device_train_batch_size: RECIPE.batch_size,
    seed: TRAIN_SEED + (name === 'stage1' ? 0 : 1),
    output_dir: outDir,
    save_steps: 100,
    save_total_limit: 2,
    logging_steps: 10,
    param_groups: [{ params: VISUAL, lr: s.vision_lr }],
  });
  const data = new ShapesVqaSamples({
    tokenizer,
    preprocess: prep,
    seed: TRAIN_SEED + (name === 'stage1' ? 100 : 200),
    length: 1_000_000,
    caption_fraction: s.caption_fraction,
  });
  const resume = (await listCheckpoints(outDir)).length > 0;
  const controller = new AbortController();
  let lastEval: Accuracy | undefined;
  let stoppedEarly = false;
  const t0 = Date.now();
  try {
    await trainer.train(data, {
      resume_from_checkpoint: resume,
      signal: controller.signal,
      on_log: (e) => {
        log({ event: 'log', stage: name, ...e });
        process.stdout.write(
          `[${name}] step ${e.step}/${s.steps} loss ${e.loss.toFixed(4)} lr ${e.learning_rate.toExponential(2)} grad ${e.grad_norm.toFixed(2)} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`,
        );
      },
      on_step: (r) => {
        if (name !== 'stage2' || r.step % RECIPE.eval_every !== 0) return;
        const e0 = Date.now();
        lastEval = evaluateSync(model, tokenizer, prep, VALIDATION_SEED, RECIPE.eval_items);
        log({ event: 'eval', stage: name, step: r.step, ...lastEval, seconds: (Date.now() - e0) / 1000 });
        process.stdout.write(
          `[${name}] step ${r.step} held-out ${formatAccuracy(lastEval)} (${((Date.now() - e0) / 1000).toFixed(0)} s)\n`,
        );
        if (passes(lastEval)) {
          stoppedEarly = true;
          controller.abort();
        }
      },
    });
  } catch (e) {
    if (!(e instanceof OwletError && e.code === 'ABORTED' && stoppedEarly)) throw e;
  }
  const seconds = (Date.now() - t0) / 1000;
  log({ event: 'stage_end', stage: name, step: trainer.state.global_step, seconds, stopped_early: stoppedEarly });
  return {
    steps: trainer.state.global_step,
    seconds,
    stopped_early: stoppedEarly,
    ...(lastEval ? { last_eval: lastEval } : {}),
  };
}

if (existsSync(donePath)) {
  process.stdout.write(`${donePath} exists: training finished; delete it (or the run dir) to train again\n`);
} else {
  const stage2Started = (await listCheckpoints(join(runDir, 'stage2'))).length > 0;
  const s1 = stage2Started ? null : await runStage('stage1');
  const s2 = await runStage('stage2');
  const summary = { stage1: s1, stage2: s2, finished: new Date().toISOString() };
  writeFileSync(donePath, `${JSON.stringify(summary, null, 2)}\n`);
  const r = await exportTiny(model, MODEL_DIR);
  log({ event: 'export', dir: MODEL_DIR, ...r });
  process.stdout.write(`exported ${MODEL_DIR}: ${r.parameters} parameters, ${(r.bytes / 1e6).toFixed(1)} MB F16\n`);
}
// The test accuracy (500 items of the test seed), the model card and the loss curve.
const report = await writeCard(runDir);
process.stdout.write(
  `test accuracy ${formatAccuracy({ ...report, n: report.n })}; card written to ${MODEL_DIR}/README.md\n`,
);
model.dispose();
