import { ErrorCode } from '@owlet/core';

/** The codes @owlet/trainer throws (as `OwletError`s); each is declared, with its meaning, once in `ErrorCode` (@owlet/errors). */
export const TrainerErrorCode = {
  BACKEND_CANNOT_TRAIN: ErrorCode.BACKEND_CANNOT_TRAIN,
  INVALID_TRAINING_ARGS: ErrorCode.INVALID_TRAINING_ARGS,
  NO_TRAINABLE_PARAMETERS: ErrorCode.NO_TRAINABLE_PARAMETERS,
  CHECKPOINT_NOT_FOUND: ErrorCode.CHECKPOINT_NOT_FOUND,
  CHECKPOINT_MISMATCH: ErrorCode.CHECKPOINT_MISMATCH,
  INVALID_DATASET: ErrorCode.INVALID_DATASET,
  NON_FINITE_LOSS: ErrorCode.NON_FINITE_LOSS,
  ABORTED: ErrorCode.ABORTED,
} as const satisfies Readonly<Record<string, ErrorCode>>;

export type TrainerErrorCode = (typeof TrainerErrorCode)[keyof typeof TrainerErrorCode];
