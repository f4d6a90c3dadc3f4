/**
 * Learning-rate schedules as transformers' `get_scheduler` builds them (LambdaLR): the learning
 * rate of optimizer step k (0-based, before its update) is `base_lr · lambda(k)`. With warmup,
 * lambda(0) = 0: the first update uses a zero learning rate, as in transformers.
 */
import { OwletError } from '@owlet/core';

import { TrainerErrorCode } from '../errors.js';

export type LrSchedulerType = 'linear' | 'cosine' | 'constant' | 'constant_with_warmup';

export const LR_SCHEDULER_TYPES: readonly LrSchedulerType[] = ['linear', 'cosine', 'constant', 'constant_with_warmup'];

export interface ScheduleOptions {
  type: LrSchedulerType;
  warmup_steps: number;
  /** Total optimizer steps (`max_steps`). */
  total_steps: number;
  /** Cosine only: number of waves (transformers' default 0.5: one half cosine down to 0). */
  num_cycles?: number;
}

/** The multiplier lambda(step) of the schedule (transformers `optimization.py`). */
export function lrLambda(options: ScheduleOptions, step: number): number {
  const { type, warmup_steps: w, total_steps: total } = options;
  if (!LR_SCHEDULER_TYPES.includes(type)) {
    throw new OwletError(
      TrainerErrorCode.INVALID_TRAINING_ARGS,
      `lr_scheduler_type ${JSON.stringify(type)} is not supported; use one of ${LR_SCHEDULER_TYPES.join(', ')}`,
    );
  }
  if (type === 'constant') return 1;
  if (step < w) return step / Math.max(1, w);
  if (type === 'constant_with_warmup') return 1;
  if (type === 'linear') return Math.max(0, (total - step) / Math.max(1, total - w));
  const progress = (step - w) / Math.max(1, total - w);
  const cycles = options.num_cycles ?? 0.5;
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
}
