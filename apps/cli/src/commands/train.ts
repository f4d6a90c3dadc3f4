/**
 * `owlet train`: a recipe of @owlet/trainer on a training file (mPLUG-Owl2 LLaVA JSON or mPLUG-Owl
 * v1 jsonl). Checkpoints go to OUT/checkpoint-<step> (crash-safe, resumable with --resume); the
 * trained model is exported to OUT as a Hugging Face folder (plus OUT/adapter for LoRA recipes).
 * Metrics are JSON lines on stdout; a progress bar with ETA on a TTY stderr; Ctrl-C writes a
 * checkpoint and exits 130.
 */
import { copyFileSync, existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { getBackendInfo, isOwletError, savePeftAdapter } from '@owlet/core';
import {
  RECIPE_NAMES,
  Trainer,
  exportPretrained,
  loadOwlTrainingData,
  type RecipeName,
  type TrainerOptions,
} from '@owlet/trainer';

import { intFlag, numFlag } from '../args.js';
import { EXIT, UsageError } from '../errors.js';
import { loadModel, parseBackend } from '../model.js';

export const TRAIN_HELP = `owlet train --recipe NAME --data FILE --out DIR [options]

  --recipe NAME          ${RECIPE_NAMES.join(' | ')}
  --data FILE            .json (mPLUG-Owl2, LLaVA format) or .jsonl (mPLUG-Owl v1)
  --out DIR              checkpoints (DIR/checkpoint-N) and the trained model (DIR, DIR/adapter for LoRA)
  --model DIR_OR_URL     the model to train (default: the bundled random-weights model)
  --image-folder DIR     image paths are relative to it (default: the data file's folder)
  --resume               continue from the newest complete checkpoint in DIR
  --steps N              max_steps (default: the recipe's epochs over the data)
  --lr X                 learning_rate (default: the recipe's)
  --batch-size N         per_device_train_batch_size (default 8)
  --grad-accum N         gradient_accumulation_steps (default 1)
  --warmup-steps N       warmup_steps (default: the recipe's)
  --save-steps N         checkpoint every N steps (default 500; 0: only at the end)
  --save-total-limit N   keep the newest N checkpoints
  --logging-steps N      a metrics line every N steps (default 10)
  --seed N               data order, LoRA init and dropout (default 42)
  --freeze-vision-model  mplug_owl2_stage2: the repository's finetune.sh variant
  --template NAME        mPLUG-Owl2 conversation template: vicuna_v1 (default, as the repo) | mplug_owl2
  --backend NAME         wasm (default) | cpu | webgpu | tensorflow | auto
  --quiet                no progress bar or notices on stderr`;

function bar(step: number, total: number, eta: number): string {
  const width = 24;
  const filled = Math.round((width * step) / Math.max(1, total));
  const m = Math.floor(eta / 60);
  const s = Math.round(eta % 60);
  return `step ${step}/${total} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ETA ${m}:${String(s).padStart(2, '0')}`;
}

export async function trainCommand(argv: string[], signal: AbortSignal): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      recipe: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      model: { type: 'string' },
      'image-folder': { type: 'string' },
      resume: { type: 'boolean' },
      steps: { type: 'string' },
      lr: { type: 'string' },
      'batch-size': { type: 'string' },
      'grad-accum': { type: 'string' },
      'warmup-steps': { type: 'string' },
      'save-steps': { type: 'string' },
      'save-total-limit': { type: 'string' },
      'logging-steps': { type: 'string' },
      seed: { type: 'string' },
      'freeze-vision-model': { type: 'boolean' },
      template: { type: 'string' },
      backend: { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${TRAIN_HELP}\n`);
    return EXIT.OK;
  }
  const usage = TRAIN_HELP.split('\n')[0];
  if (!values.recipe) throw new UsageError('--recipe is required', `one of ${RECIPE_NAMES.join(', ')}`);
  if (!(RECIPE_NAMES as string[]).includes(values.recipe))
    throw new UsageError(`unknown recipe ${JSON.stringify(values.recipe)}`, `use one of ${RECIPE_NAMES.join(', ')}`);
  if (!values.data) throw new UsageError('--data is required', usage);
  if (!values.out) throw new UsageError('--out is required', usage);
  const data = resolve(values.data);
  if (!existsSync(data) || !statSync(data).isFile()) throw new UsageError(`data file not found: ${values.data}`);
  if (!/\.jsonl?$/.test(data))
    throw new UsageError(`--data must be a .json (LLaVA) or .jsonl (mPLUG-Owl v1) file, got ${values.data}`);
  const template = values.template ?? 'vicuna_v1';
  if (template !== 'vicuna_v1' && template !== 'mplug_owl2')
    throw new UsageError(`unknown template ${JSON.stringify(template)}`, 'use vicuna_v1 or mplug_owl2');
  const out = resolve(values.out);
  const args: TrainerOptions = {
    recipe: values.recipe as RecipeName,
    output_dir: out,
    logging_steps: intFlag('logging-steps', values['logging-steps'], 1) ?? 10,
  };
  const set = <K extends keyof TrainerOptions>(k: K, v: TrainerOptions[K] | undefined) => {
    if (v !== undefined) args[k] = v;
  };
  set('max_steps', intFlag('steps', values.steps, 1));
  set(
    'learning_rate',
    numFlag('lr', values.lr, (n) => n > 0, 'a number > 0'),
  );
  set('per_device_train_batch_size', intFlag('batch-size', values['batch-size'], 1));
  set('gradient_accumulation_steps', intFlag('grad-accum', values['grad-accum'], 1));
  set('warmup_steps', intFlag('warmup-steps', values['warmup-steps'], 0));
  set('save_steps', intFlag('save-steps', values['save-steps'], 0));
  set('save_total_limit', intFlag('save-total-limit', values['save-total-limit'], 1));
  set('seed', intFlag('seed', values.seed, 0));
  if (values['freeze-vision-model']) args.recipe_options = { freeze_vision_model: true };
  const backend = parseBackend(values.backend ?? 'wasm');
  const quiet = values.quiet === true;
  const tty = !quiet && Boolean(process.stderr.isTTY);

  const loaded = await loadModel(values.model, { backend, quiet, signal });
  const { model } = loaded;
  try {
    if (!model.tokenizer) throw new UsageError('the model folder has no tokenizer');
    const dataset = await loadOwlTrainingData(data, {
      tokenizer: model.tokenizer,
      image_processor: model.imageProcessor,
      template,
      media_tokens_per_image: model.config.image_tokens,
      ...(values['image-folder'] ? { image_folder: resolve(values['image-folder']) } : {}),
    });
    const trainer = new Trainer(model, args);
    if (!quiet) {
      const info = getBackendInfo();
      process.stderr.write(
        `training ${trainer.trainableKeys.length} tensors (${trainer.recipe?.name}) on ${dataset.length} samples, backend ${info?.name ?? '?'}\n`,
      );
    }
    try {
      const result = await trainer
        .train(dataset, {
          signal,
          resume_from_checkpoint: values.resume === true,
          on_step: (r) => {
            if (tty)
              process.stderr.write(
                `\r\x1b[2K${bar(r.step, trainer.state.max_steps, r.eta_s)} loss ${r.loss.toFixed(4)}`,
              );
          },
          on_log: (e) => {
            if (tty) process.stderr.write('\r\x1b[2K');
            process.stdout.write(
              `${JSON.stringify({ step: e.step, epoch: Number(e.epoch.toFixed(4)), loss: e.loss, learning_rate: e.learning_rate, grad_norm: e.grad_norm, tokens_per_s: Number(e.tokens_per_s.toFixed(1)) })}\n`,
            );
          },
          on_save: (dir) => {
            if (!quiet) process.stderr.write(`${tty ? '\r\x1b[2K' : ''}saved ${dir}\n`);
          },
        })
        .catch((e: unknown) => {
          if (isOwletError(e, 'CHECKPOINT_NOT_FOUND'))
            throw new UsageError(
              (e as Error).message,
              'drop --resume to start from the model, or point --out at the earlier run',
            );
          throw e;
        });
      if (tty) process.stderr.write('\r\x1b[2K');
      const exported = await exportPretrained(model, out);
      for (const f of ['tokenizer.model', 'tokenizer.json', 'preprocessor_config.json', 'generation_config.json']) {
        const src = join(loaded.source, f);
        if (existsSync(src)) copyFileSync(src, join(out, f));
      }
      if (trainer.lora) await savePeftAdapter(model, join(out, 'adapter'), trainer.lora);
      process.stdout.write(
        `${JSON.stringify({ done: true, global_step: result.global_step, training_loss: result.training_loss, train_runtime: Number(result.metrics.train_runtime.toFixed(2)), train_tokens_per_second: Number(result.metrics.train_tokens_per_second.toFixed(1)), model_dir: out, files: exported.files, checkpoint: result.checkpoint ?? null })}\n`,
      );
    } finally {
      trainer.dispose();
    }
  } finally {
    model.dispose();
  }
  return EXIT.OK;
}
