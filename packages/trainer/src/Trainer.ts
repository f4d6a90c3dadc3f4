import * as tf from '@tensorflow/tfjs-core';
import {
  type CausalLmLoss,
  type LoraConfig,
  type Module,
  OwletError,
  type Parameter,
  injectLora,
  loraModules,
  withTraining,
} from '@owlet/core';

import { resolveTrainingArguments, warmupSteps, type TrainingArguments } from './args.js';
import { checkTrainingBackend } from './backend.js';
import { BatchSampler, collateCausalLm, mixSeed, type DataPosition, type Dataset } from './data/dataset.js';
import { TrainerErrorCode } from './errors.js';
import { AdamW, clipGradNorm } from './optim/AdamW.js';
import { lrLambda } from './optim/schedule.js';
import { applyTrainable, buildParamGroups, trainableParameters, type KeyPattern } from './params.js';
import { checkRecipeFits, resolveRecipe, type Recipe, type RecipeName, type RecipeOptions } from './recipes.js';
import type { CheckpointFs } from './checkpoint/atomic-folder.js';

/** What a loss function returns: the scalar, and how many tokens it averages over. */
export type LossOutput = CausalLmLoss | tf.Scalar;

/** A batch as the official collators make it (tensors in it are disposed after the step). */
export interface TrainingBatch {
  input_ids: readonly (readonly number[])[];
  labels: readonly (readonly number[])[];
  attention_mask?: readonly (readonly number[])[] | null;
  pixel_values?: tf.Tensor | null;
  [extra: string]: unknown;
}

export interface TrainerOptions extends Partial<TrainingArguments> {
  /** A recipe (name or object): trainable keys, LoRA and training arguments from the papers / repo. */
  recipe?: RecipeName | Recipe;
  recipe_options?: RecipeOptions;
  /** LoRA to add before training (overrides the recipe's). */
  lora?: LoraConfig | null;
  /** Trainable key patterns (override the recipe's); default: every parameter. */
  trainable?: readonly KeyPattern[];
  /** Keys to freeze even when `trainable` matches them. */
  frozen?: readonly KeyPattern[];
  /** Loss of a batch; default `model.computeLoss(batch)` (the mPLUG-Owl models have it). Synchronous. */
  compute_loss?: (model: Module, batch: TrainingBatch) => LossOutput;
  /** Samples → batch; default: the causal-LM collator (right padding, pad id 0, labels −100). */
  data_collator?: (samples: unknown[]) => TrainingBatch | Promise<TrainingBatch>;
  /** File-system access for checkpoints (fault-injection tests). */
  checkpoint_fs?: CheckpointFs;
}

export interface StepResult {
  /** Mean loss of the step's micro-batches (before the update). */
  loss: number;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  /** Learning rate of the step (the default group's, after the schedule). */
  learning_rate: number;
  /** Labelled tokens in the step. */
  num_tokens: number;
  /** Input tokens (attention mask ones) in the step. */
  input_tokens: number;
  /** Optimizer steps done after this one. */
  step: number;
}

export interface LogEntry {
  step: number;
  epoch: number;
  loss: number;
  learning_rate: number;
  grad_norm: number;
  num_tokens: number;
}

export interface TrainerState {
  global_step: number;
  /** Fractional epoch, as transformers logs it. */
  epoch: number;
  max_steps: number;
  data_position: DataPosition;
  log_history: LogEntry[];
}

export interface TrainOptions {
  signal?: AbortSignal;
  /** true: the latest complete checkpoint in output_dir; a path: that checkpoint. */
  resume_from_checkpoint?: boolean | string;
  /** Called after every optimizer step with the step's figures and timing. */
  on_step?: (r: StepResult & { epoch: number; elapsed_s: number; eta_s: number; tokens_per_s: number }) => void;
  /** Called every `logging_steps` with the averaged log entry. */
  on_log?: (entry: LogEntry & { tokens_per_s: number }) => void;
  /** Called after each checkpoint is written. */
  on_save?: (dir: string) => void;
}

export interface TrainOutput {
  global_step: number;
  /** Mean loss over the steps of this run. */
  training_loss: number;
  metrics: { train_runtime: number; train_steps_per_second: number; train_tokens_per_second: number };
  /** The last checkpoint written, if any. */
  checkpoint?: string;
}

function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => unknown };
  return new Promise((r) => (g.setImmediate ? g.setImmediate(r) : setTimeout(r, 0)));
}

function isScalar(x: LossOutput): x is tf.Scalar {
  return x instanceof tf.Tensor;
}

function defaultLoss(model: Module, batch: TrainingBatch): LossOutput {
  const m = model as unknown as { computeLoss?: (b: TrainingBatch) => LossOutput };
  if (typeof m.computeLoss !== 'function') {
    throw new OwletError(
      TrainerErrorCode.INVALID_TRAINING_ARGS,
      `${model.constructor.name} has no computeLoss(batch); pass compute_loss to the Trainer`,
    );
  }
  return m.computeLoss(batch);
}

function disposeBatch(batch: TrainingBatch): void {
  for (const v of Object.values(batch)) if (v instanceof tf.Tensor) v.dispose();
}

/**
 * The training loop, model-agnostic: any owlet `Module` whose loss a function can compute.
 *
 * Mirrors transformers' `Trainer` (4.31) where it matters for results: loss / GA per micro-batch,
 * gradients summed over the accumulation, global-norm clipping, AdamW (decoupled decay,
 * bias-corrected), the LambdaLR schedule advanced once per optimizer step, `max_steps` /
 * `num_train_epochs`, checkpoints every `save_steps`, `save_total_limit`, resume.
 */
export class Trainer<M extends Module = Module> {
  readonly model: M;
  readonly args: Readonly<TrainingArguments>;
  readonly recipe: Recipe | null;
  readonly lora: LoraConfig | null;
  readonly optimizer: AdamW;
  /** Trainable parameters by key, model order. */
  readonly params: ReadonlyMap<string, Parameter>;
  state: TrainerState;
  private readonly lossFn: (model: Module, batch: TrainingBatch) => LossOutput;
  private readonly collator: (samples: unknown[]) => TrainingBatch | Promise<TrainingBatch>;
  readonly checkpointFs: CheckpointFs | undefined;
  private disposed = false;

  constructor(model: M, options: TrainerOptions = {}) {
    checkTrainingBackend();
    const {
      recipe: recipeOpt,
      recipe_options,
      lora,
      trainable,
      frozen,
      compute_loss,
      data_collator,
      checkpoint_fs,
      ...argLayer
    } = options;
    const recipe = recipeOpt === undefined ? null : resolveRecipe(recipeOpt, recipe_options);
    const modelType = (model as unknown as { config?: { model_type?: unknown } }).config?.model_type;
    if (recipe && modelType !== undefined) checkRecipeFits(recipe, modelType);
    this.model = model;
    this.recipe = recipe;
    this.args = resolveTrainingArguments(recipe?.args ?? {}, argLayer);
    this.lossFn = compute_loss ?? defaultLoss;
    this.collator = data_collator ?? ((s) => collateCausalLm(s as never) as unknown as TrainingBatch);
    this.checkpointFs = checkpoint_fs;
    this.lora = lora === undefined ? (recipe?.lora ?? null) : lora;
    if (this.lora && loraModules(model).length === 0) injectLora(model, this.lora, { seed: this.args.seed });
    const trainPatterns: KeyPattern[] = [...(trainable ?? recipe?.trainable ?? ['.*'])];
    if (this.lora) trainPatterns.push('.*\\.lora_[AB]\\.weight');
    const keys = applyTrainable(model, trainPatterns, [...(frozen ?? []), ...(recipe?.frozen ?? [])]);
    if (keys.length === 0) {
      throw new OwletError(
        TrainerErrorCode.NO_TRAINABLE_PARAMETERS,
        `no parameter of ${model.constructor.name} matches the trainable patterns ${JSON.stringify(trainPatterns.map(String))}`,
      );
    }
    const params = trainableParameters(model);
    for (const [k, p] of params) {
      if (p.packed) {
        throw new OwletError(
          TrainerErrorCode.INVALID_TRAINING_ARGS,
          `trainable parameter ${k} is stored as ${p.packed.dtype} outside the tfjs heap and cannot be updated: load the model without dtype, or freeze it (LoRA adapters train beside packed weights)`,
        );
      }
      if (!p.isMaterialized) {
        throw new OwletError(
          TrainerErrorCode.INVALID_TRAINING_ARGS,
          `trainable parameter ${k} has no value: load the weights or initialize() before training`,
        );
      }
    }
    this.params = params;
    const a = this.args;
    this.optimizer = new AdamW(
      buildParamGroups(model, keys, {
        defaults: {
          lr: a.learning_rate,
          lr_scale: 1,
          weight_decay: a.weight_decay,
          betas: [a.adam_beta1, a.adam_beta2],
          eps: a.adam_epsilon,
        },
        weight_decay_exclude: a.weight_decay_exclude,
        param_groups: a.param_groups,
        layerwise_lr_decay: a.layerwise_lr_decay,
      }),
    );
    this.state = {
      global_step: 0,
      epoch: 0,
      max_steps: a.max_steps,
      data_position: { epoch: 0, index: 0 },
      log_history: [],
    };
  }

  /** Keys of the trainable parameters. */
  get trainableKeys(): string[] {
    return [...this.params.keys()];
  }

  /** The schedule multiplier for optimizer step `step` (default: the next one). */
  lrMultiplier(step = this.state.global_step): number {
    const total = this.state.max_steps;
    const type = this.args.lr_scheduler_type;
    if (total <= 0 && (type === 'linear' || type === 'cosine')) {
      throw new OwletError(
        TrainerErrorCode.INVALID_TRAINING_ARGS,
        `the ${type} schedule needs max_steps (or train() with num_train_epochs)`,
      );
    }
    return lrLambda({ type, warmup_steps: warmupSteps(this.args, Math.max(total, 0)), total_steps: total }, step);
  }

  /** The learning rate of the default group at the next step. */
  get learningRate(): number {
    return this.args.learning_rate * this.lrMultiplier();
  }

  private assertUsable(): void {
    if (this.disposed) throw new OwletError('DISPOSED', 'the Trainer was disposed');
  }

  /** Forward + backward over micro-batches: summed gradients (stored layout) and the loss sum. */
  private async accumulate(list: readonly TrainingBatch[]): Promise<{
    acc: Map<string, tf.Tensor>;
    lossSum: number;
    tokens: number;
    inputTokens: number;
  }> {
    const ga = list.length;
    const vars = [...this.params.values()].map((p) => p.value);
    const keyOf = new Map<string, string>();
    for (const [k, p] of this.params) keyOf.set(p.value.name, k);
    const acc = new Map<string, tf.Tensor>();
    let lossSum = 0;
    let tokens = 0;
    let inputTokens = 0;
    try {
      for (const [i, batch] of list.entries()) {
        let numTokens = 0;
        const seed = mixSeed(this.args.seed, this.state.global_step, i);
        const { value, grads } = withTraining(seed, () =>
          tf.variableGrads(() => {
            const out = this.lossFn(this.model, batch);
            const loss = isScalar(out) ? out : out.loss;
            numTokens = isScalar(out) ? 0 : out.num_tokens;
            return (ga === 1 ? loss : tf.div(loss, ga)) as tf.Scalar;
          }, vars),
        );
        lossSum += ((await value.data())[0] as number) * ga;
        value.dispose();
        tokens += numTokens;
        const mask = batch.attention_mask;
        inputTokens += mask
          ? mask.reduce((a, r) => a + r.reduce((x, y) => x + y, 0), 0)
          : batch.input_ids.reduce((a, r) => a + r.length, 0);
        for (const [name, g] of Object.entries(grads)) {
          const key = keyOf.get(name);
          if (!key || !g) {
            g?.dispose();
            continue;
          }
          const prev = acc.get(key);
          if (prev) {
            acc.set(key, tf.add(prev, g));
            prev.dispose();
            g.dispose();
          } else acc.set(key, g);
        }
      }
    } catch (e) {
      for (const g of acc.values()) g.dispose();
      throw e;
    }
    return { acc, lossSum, tokens, inputTokens };
  }

  /**
   * The loss and the gradients of every trainable parameter for one batch (or micro-batches, as
   * `step` would sum them), without updating anything. Gradients are in the checkpoint layout;
   * the caller owns them. Batch tensors are disposed.
   */
  async gradients(
    batches: TrainingBatch | readonly TrainingBatch[],
  ): Promise<{ loss: number; grads: Map<string, tf.Tensor> }> {
    this.assertUsable();
    const list = Array.isArray(batches) ? (batches as readonly TrainingBatch[]) : [batches as TrainingBatch];
    try {
      const { acc, lossSum } = await this.accumulate(list);
      const out = new Map<string, tf.Tensor>();
      for (const [k, g] of acc) {
        out.set(k, this.params.get(k)?.storedTransposed ? tf.transpose(g) : g);
        if (this.params.get(k)?.storedTransposed) g.dispose();
      }
      return { loss: lossSum / list.length, grads: out };
    } finally {
      for (const b of list) disposeBatch(b);
    }
  }

  /**
   * One optimizer step over one batch, or over `gradient_accumulation_steps` micro-batches given
   * as an array (each one's loss divided by their number, gradients summed). Clips, updates,
   * advances the schedule. Batch tensors are disposed. Nothing is updated when the loss or the
   * gradient norm is not finite (NON_FINITE_LOSS).
   */
  async step(batches: TrainingBatch | readonly TrainingBatch[]): Promise<StepResult> {
    this.assertUsable();
    const list = Array.isArray(batches) ? (batches as readonly TrainingBatch[]) : [batches as TrainingBatch];
    const ga = this.args.gradient_accumulation_steps;
    try {
      if (list.length !== ga) {
        throw new OwletError(
          TrainerErrorCode.INVALID_TRAINING_ARGS,
          `step() got ${list.length} micro-batch(es); gradient_accumulation_steps is ${ga}`,
        );
      }
      const multiplier = this.lrMultiplier();
      const { acc, lossSum, tokens, inputTokens } = await this.accumulate(list);
      try {
        const loss = lossSum / list.length;
        const clip = await clipGradNorm(acc, this.args.max_grad_norm);
        if (!Number.isFinite(loss) || !Number.isFinite(clip.total_norm)) {
          throw new OwletError(
            TrainerErrorCode.NON_FINITE_LOSS,
            `step ${this.state.global_step + 1}: loss ${loss}, gradient norm ${clip.total_norm}; no parameter was updated`,
            { details: { step: this.state.global_step + 1, loss, grad_norm: clip.total_norm } },
          );
        }
        this.optimizer.step(this.params, acc, multiplier);
        this.state.global_step++;
        return {
          loss,
          grad_norm: clip.total_norm,
          learning_rate: this.args.learning_rate * multiplier,
          num_tokens: tokens,
          input_tokens: inputTokens,
          step: this.state.global_step,
        };
      } finally {
        for (const g of acc.values()) g.dispose();
      }
    } finally {
      for (const b of list) disposeBatch(b);
    }
  }

  /**
   * Runs the training loop over `dataset` until `max_steps` (or `num_train_epochs`), saving
   * checkpoints every `save_steps` and at the end when `output_dir` is set. An aborted signal
   * stops after the current step: a checkpoint is written, then OwletError('ABORTED') is thrown.
   */
  async train(dataset: Dataset, options: TrainOptions = {}): Promise<TrainOutput> {
    this.assertUsable();
    checkTrainingBackend();
    const a = this.args;
    const ckpt = a.output_dir ? await import('./checkpoint/trainer-checkpoint.js') : null;
    if (ckpt && a.output_dir) await ckpt.sweepOutputDir(a.output_dir, this.checkpointFs);
    if (options.resume_from_checkpoint) {
      if (!ckpt) {
        throw new OwletError(
          TrainerErrorCode.INVALID_TRAINING_ARGS,
          'resume_from_checkpoint needs output_dir or a path',
        );
      }
      const dir =
        typeof options.resume_from_checkpoint === 'string'
          ? options.resume_from_checkpoint
          : await ckpt.latestCheckpoint(a.output_dir as string, this.checkpointFs);
      await ckpt.loadTrainerCheckpoint(this, dir);
    }
    const sampler = new BatchSampler(
      dataset.length,
      a.per_device_train_batch_size,
      a.seed,
      a.dataloader_drop_last,
      this.state.data_position,
    );
    const maxSteps =
      a.max_steps > 0
        ? a.max_steps
        : Math.ceil((a.num_train_epochs * sampler.batchesPerEpoch) / a.gradient_accumulation_steps);
    this.state.max_steps = maxSteps;
    const t0 = performance.now();
    const startStep = this.state.global_step;
    let lossTotal = 0;
    let stepsRun = 0;
    let tokensRun = 0;
    let lastSaved: string | undefined;
    let savedAt = -1;
    const window: LogEntry[] = [];
    let windowTokens = 0;
    let windowStart = performance.now();
    const save = async (): Promise<void> => {
      if (!ckpt || !a.output_dir || savedAt === this.state.global_step) return;
      lastSaved = await ckpt.saveTrainerCheckpoint(this, a.output_dir);
      savedAt = this.state.global_step;
      options.on_save?.(lastSaved);
    };
    while (this.state.global_step < maxSteps) {
      // Let timers, I/O and signal handlers run (device reads on cpu/wasm resolve as microtasks
      // only, so without this a SIGINT would never be seen until the run ends).
      await yieldToEventLoop();
      if (options.signal?.aborted) {
        await save();
        throw new OwletError(TrainerErrorCode.ABORTED, `training stopped at step ${this.state.global_step}`, {
          details: { step: this.state.global_step, checkpoint: lastSaved },
        });
      }
      const micro: TrainingBatch[] = [];
      for (let i = 0; i < a.gradient_accumulation_steps; i++) {
        const idx = sampler.next();
        const samples = await Promise.all(idx.map((j) => dataset.get(j)));
        micro.push(await this.collator(samples));
      }
      const r = await this.step(micro);
      this.state.data_position = sampler.position;
      this.state.epoch = this.state.data_position.epoch + this.state.data_position.index / dataset.length;
      lossTotal += r.loss;
      stepsRun++;
      tokensRun += r.input_tokens;
      windowTokens += r.input_tokens;
      const elapsed = (performance.now() - t0) / 1000;
      const perStep = elapsed / stepsRun;
      options.on_step?.({
        ...r,
        epoch: this.state.epoch,
        elapsed_s: elapsed,
        eta_s: perStep * (maxSteps - this.state.global_step),
        tokens_per_s: tokensRun / Math.max(elapsed, 1e-9),
      });
      window.push({
        step: r.step,
        epoch: this.state.epoch,
        loss: r.loss,
        learning_rate: r.learning_rate,
        grad_norm: r.grad_norm,
        num_tokens: r.num_tokens,
      });
      const logNow = a.logging_steps > 0 && r.step % a.logging_steps === 0;
      if (logNow || this.state.global_step === maxSteps) {
        const entry: LogEntry = {
          step: r.step,
          epoch: this.state.epoch,
          loss: window.reduce((x, e) => x + e.loss, 0) / window.length,
          learning_rate: r.learning_rate,
          grad_norm: r.grad_norm,
          num_tokens: window.reduce((x, e) => x + e.num_tokens, 0),
        };
        this.state.log_history.push(entry);
        const secs = (performance.now() - windowStart) / 1000;
        options.on_log?.({ ...entry, tokens_per_s: windowTokens / Math.max(secs, 1e-9) });
        window.length = 0;
        windowTokens = 0;
        windowStart = performance.now();
      }
      if (a.save_steps > 0 && this.state.global_step % a.save_steps === 0) await save();
    }
    await save();
    const runtime = (performance.now() - t0) / 1000;
    return {
      global_step: this.state.global_step,
      training_loss: stepsRun ? lossTotal / stepsRun : 0,
      metrics: {
        train_runtime: runtime,
        train_steps_per_second: (this.state.global_step - startStep) / Math.max(runtime, 1e-9),
        train_tokens_per_second: tokensRun / Math.max(runtime, 1e-9),
      },
      ...(lastSaved ? { checkpoint: lastSaved } : {}),
    };
  }

  /** Writes `output_dir/checkpoint-<step>` now (crash-safe); returns its path. */
  async saveCheckpoint(outputDir = this.args.output_dir): Promise<string> {
    this.assertUsable();
    if (!outputDir) throw new OwletError(TrainerErrorCode.INVALID_TRAINING_ARGS, 'saveCheckpoint needs output_dir');
    const ckpt = await import('./checkpoint/trainer-checkpoint.js');
    return ckpt.saveTrainerCheckpoint(this, outputDir);
  }

  /** Restores model, optimizer, schedule and data position from a checkpoint folder. */
  async loadCheckpoint(dir: string): Promise<void> {
    this.assertUsable();
    const ckpt = await import('./checkpoint/trainer-checkpoint.js');
    await ckpt.loadTrainerCheckpoint(this, dir);
  }

  /** Frees the optimizer state (the model stays the caller's). */
  dispose(): void {
    if (this.disposed) return;
    this.optimizer.dispose();
    this.disposed = true;
  }
}
