/**
 * Training arguments with the names of transformers' `TrainingArguments`, so configs carry over.
 * Defaults are transformers 4.31's; a recipe's settings sit between the defaults and the caller's.
 */
import { OwletError } from '@owlet/core';

import { TrainerErrorCode } from './errors.js';
import { LR_SCHEDULER_TYPES, type LrSchedulerType } from './optim/schedule.js';
import type { LayerwiseLrDecay, ParamGroupSpec } from './params.js';

export interface TrainingArguments {
  learning_rate: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  weight_decay: number;
  /** Global-norm clipping; ≤ 0 disables it. */
  max_grad_norm: number;
  lr_scheduler_type: LrSchedulerType;
  warmup_steps: number;
  /** Used when warmup_steps is 0: ceil(max_steps · warmup_ratio). */
  warmup_ratio: number;
  /** Optimizer steps to run; −1: derived from num_train_epochs and the dataset size. */
  max_steps: number;
  num_train_epochs: number;
  gradient_accumulation_steps: number;
  per_device_train_batch_size: number;
  dataloader_drop_last: boolean;
  seed: number;
  /** Where checkpoints (`checkpoint-<step>`) and the final model go; null: no checkpoints. */
  output_dir: string | null;
  /** Save a checkpoint every N optimizer steps (0: only at the end / on interruption). */
  save_steps: number;
  /** Keep at most this many checkpoints (oldest removed first); null keeps all. */
  save_total_limit: number | null;
  logging_steps: number;
  /** owlet: 'bias_and_layernorm' (transformers' no-decay rule) or 'none' (plain torch AdamW over every parameter). */
  weight_decay_exclude: 'bias_and_layernorm' | 'none';
  /** owlet: layer-wise learning-rate decay of a ViT. */
  layerwise_lr_decay: LayerwiseLrDecay | null;
  /** owlet: extra parameter groups by key pattern (first match wins). */
  param_groups: readonly ParamGroupSpec[];
  /** owlet: largest safetensors shard of a checkpoint / export, in bytes (transformers' max_shard_size, default 10 GB). */
  max_shard_size: number;
}

export const DEFAULT_TRAINING_ARGUMENTS: Readonly<TrainingArguments> = Object.freeze({
  learning_rate: 5e-5,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_epsilon: 1e-8,
  weight_decay: 0,
  max_grad_norm: 1,
  lr_scheduler_type: 'linear',
  warmup_steps: 0,
  warmup_ratio: 0,
  max_steps: -1,
  num_train_epochs: 3,
  gradient_accumulation_steps: 1,
  per_device_train_batch_size: 8,
  dataloader_drop_last: false,
  seed: 42,
  output_dir: null,
  save_steps: 500,
  save_total_limit: null,
  logging_steps: 500,
  weight_decay_exclude: 'bias_and_layernorm',
  layerwise_lr_decay: null,
  param_groups: [],
  max_shard_size: 10_000_000_000,
});

function bad(field: string, value: unknown, expected: string): OwletError {
  return new OwletError(
    TrainerErrorCode.INVALID_TRAINING_ARGS,
    `${field} must be ${expected}, got ${JSON.stringify(value)}`,
    { details: { field, value } },
  );
}

/** Merges defaults ← recipe ← caller and validates every field; returns a frozen object. */
export function resolveTrainingArguments(...layers: Partial<TrainingArguments>[]): Readonly<TrainingArguments> {
  const a: TrainingArguments = { ...DEFAULT_TRAINING_ARGUMENTS };
  for (const l of layers) {
    for (const [k, v] of Object.entries(l)) {
      if (v === undefined) continue;
      if (!(k in DEFAULT_TRAINING_ARGUMENTS)) {
        throw new OwletError(TrainerErrorCode.INVALID_TRAINING_ARGS, `unknown training argument ${JSON.stringify(k)}`, {
          details: { field: k },
        });
      }
      (a as unknown as Record<string, unknown>)[k] = v;
    }
  }
  const num = (k: keyof TrainingArguments, ok: (n: number) => boolean, expected: string) => {
    const v = a[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw bad(k, v, expected);
  };
  const int = (k: keyof TrainingArguments, min: number) =>
    num(k, (n) => Number.isSafeInteger(n) && n >= min, `an integer ≥ ${min}`);
  num('learning_rate', (n) => n >= 0, 'a number ≥ 0');
  num('adam_beta1', (n) => n >= 0 && n < 1, 'in [0, 1)');
  num('adam_beta2', (n) => n >= 0 && n < 1, 'in [0, 1)');
  num('adam_epsilon', (n) => n > 0, 'a number > 0');
  num('weight_decay', (n) => n >= 0, 'a number ≥ 0');
  num('max_grad_norm', () => true, 'a number');
  num('warmup_ratio', (n) => n >= 0 && n <= 1, 'in [0, 1]');
  num('num_train_epochs', (n) => n > 0, 'a number > 0');
  int('warmup_steps', 0);
  int('gradient_accumulation_steps', 1);
  int('per_device_train_batch_size', 1);
  int('seed', 0);
  int('save_steps', 0);
  int('logging_steps', 0);
  int('max_shard_size', 1);
  if (!(Number.isSafeInteger(a.max_steps) && (a.max_steps === -1 || a.max_steps > 0)))
    throw bad('max_steps', a.max_steps, 'a positive integer or -1');
  if (!LR_SCHEDULER_TYPES.includes(a.lr_scheduler_type))
    throw bad('lr_scheduler_type', a.lr_scheduler_type, `one of ${LR_SCHEDULER_TYPES.join(', ')}`);
  if (a.save_total_limit !== null && !(Number.isSafeInteger(a.save_total_limit) && a.save_total_limit >= 1))
    throw bad('save_total_limit', a.save_total_limit, 'null or an integer ≥ 1');
  if (a.output_dir !== null && (typeof a.output_dir !== 'string' || a.output_dir === ''))
    throw bad('output_dir', a.output_dir, 'null or a folder path');
  if (a.weight_decay_exclude !== 'bias_and_layernorm' && a.weight_decay_exclude !== 'none')
    throw bad('weight_decay_exclude', a.weight_decay_exclude, '"bias_and_layernorm" or "none"');
  if (typeof a.dataloader_drop_last !== 'boolean')
    throw bad('dataloader_drop_last', a.dataloader_drop_last, 'a boolean');
  const l = a.layerwise_lr_decay;
  if (l !== null && !(typeof l === 'object' && l.rate > 0 && l.rate <= 1 && typeof l.prefix === 'string'))
    throw bad('layerwise_lr_decay', l, 'null or { rate in (0, 1], prefix }');
  if (!Array.isArray(a.param_groups)) throw bad('param_groups', a.param_groups, 'a list');
  return Object.freeze({ ...a, param_groups: Object.freeze([...a.param_groups]) });
}

/** transformers' `get_warmup_steps`. */
export function warmupSteps(args: Pick<TrainingArguments, 'warmup_steps' | 'warmup_ratio'>, maxSteps: number): number {
  return args.warmup_steps > 0 ? args.warmup_steps : Math.ceil(maxSteps * args.warmup_ratio);
}
