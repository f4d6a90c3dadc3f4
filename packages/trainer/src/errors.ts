/** Error codes of @owlet/trainer (every error is an `OwletError` from @owlet/core with one of these codes). */
export const TrainerErrorCode = {
  /** The active backend lacks a kernel the backward pass needs; raised before training starts. */
  BACKEND_CANNOT_TRAIN: 'BACKEND_CANNOT_TRAIN',
  /** A training argument is missing, out of range or inconsistent. */
  INVALID_TRAINING_ARGS: 'INVALID_TRAINING_ARGS',
  /** The recipe and parameter patterns leave nothing to train. */
  NO_TRAINABLE_PARAMETERS: 'NO_TRAINABLE_PARAMETERS',
  /** `resume_from_checkpoint` names no valid (complete) checkpoint. */
  CHECKPOINT_NOT_FOUND: 'CHECKPOINT_NOT_FOUND',
  /** A checkpoint folder is complete but does not match this model / trainer. */
  CHECKPOINT_MISMATCH: 'CHECKPOINT_MISMATCH',
  /** A dataset file or sample is malformed. */
  INVALID_DATASET: 'INVALID_DATASET',
  /** The loss or the gradient norm is NaN or infinite. */
  NON_FINITE_LOSS: 'NON_FINITE_LOSS',
  /** Training was stopped by an AbortSignal (a checkpoint was written first when output_dir is set). */
  ABORTED: 'ABORTED',
} as const;

export type TrainerErrorCode = (typeof TrainerErrorCode)[keyof typeof TrainerErrorCode];
