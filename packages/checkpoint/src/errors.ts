/**
 * Typed errors of checkpoint I/O. Every failure raised on purpose while reading or writing a
 * checkpoint is a `CheckpointError` (an `OwletError`) with one of the stable codes below; callers
 * branch on `code`. The safetensors codes mirror the reference implementation's `SafeTensorError`
 * variants (`HeaderTooSmall` → `SAFETENSORS_HEADER_TOO_SMALL`, …).
 */
import { ErrorCode, OwletError, type OwletErrorOptions } from '@owlet/errors';

/** The codes this package throws; each is declared, with its meaning, once in `ErrorCode` (@owlet/errors). */
export const CheckpointErrorCode = {
  SAFETENSORS_HEADER_TOO_SMALL: ErrorCode.SAFETENSORS_HEADER_TOO_SMALL,
  SAFETENSORS_HEADER_TOO_LARGE: ErrorCode.SAFETENSORS_HEADER_TOO_LARGE,
  SAFETENSORS_INVALID_HEADER_LENGTH: ErrorCode.SAFETENSORS_INVALID_HEADER_LENGTH,
  SAFETENSORS_INVALID_HEADER: ErrorCode.SAFETENSORS_INVALID_HEADER,
  SAFETENSORS_INVALID_HEADER_DESERIALIZATION: ErrorCode.SAFETENSORS_INVALID_HEADER_DESERIALIZATION,
  SAFETENSORS_DUPLICATE_KEY: ErrorCode.SAFETENSORS_DUPLICATE_KEY,
  SAFETENSORS_INVALID_KEY: ErrorCode.SAFETENSORS_INVALID_KEY,
  SAFETENSORS_INVALID_DTYPE: ErrorCode.SAFETENSORS_INVALID_DTYPE,
  SAFETENSORS_UNSUPPORTED_DTYPE: ErrorCode.SAFETENSORS_UNSUPPORTED_DTYPE,
  SAFETENSORS_INVALID_OFFSET: ErrorCode.SAFETENSORS_INVALID_OFFSET,
  SAFETENSORS_TENSOR_INVALID_INFO: ErrorCode.SAFETENSORS_TENSOR_INVALID_INFO,
  SAFETENSORS_VALIDATION_OVERFLOW: ErrorCode.SAFETENSORS_VALIDATION_OVERFLOW,
  SAFETENSORS_METADATA_INCOMPLETE_BUFFER: ErrorCode.SAFETENSORS_METADATA_INCOMPLETE_BUFFER,
  SAFETENSORS_INVALID_METADATA: ErrorCode.SAFETENSORS_INVALID_METADATA,
  SAFETENSORS_MISALIGNED_SLICE: ErrorCode.SAFETENSORS_MISALIGNED_SLICE,
  SAFETENSORS_TENSOR_NOT_FOUND: ErrorCode.SAFETENSORS_TENSOR_NOT_FOUND,
  SAFETENSORS_VALUE_OUT_OF_RANGE: ErrorCode.SAFETENSORS_VALUE_OUT_OF_RANGE,
  SAFETENSORS_INVALID_TENSOR_DATA: ErrorCode.SAFETENSORS_INVALID_TENSOR_DATA,
  INDEX_INVALID: ErrorCode.INDEX_INVALID,
  INDEX_UNSAFE_SHARD_NAME: ErrorCode.INDEX_UNSAFE_SHARD_NAME,
  INDEX_SHARD_MISSING: ErrorCode.INDEX_SHARD_MISSING,
  INDEX_TENSOR_MISSING: ErrorCode.INDEX_TENSOR_MISSING,
  INDEX_TENSOR_DUPLICATED: ErrorCode.INDEX_TENSOR_DUPLICATED,
  INDEX_TENSOR_UNLISTED: ErrorCode.INDEX_TENSOR_UNLISTED,
  INDEX_TOTAL_SIZE_MISMATCH: ErrorCode.INDEX_TOTAL_SIZE_MISMATCH,
  ZIP_INVALID: ErrorCode.ZIP_INVALID,
  ZIP_UNSUPPORTED: ErrorCode.ZIP_UNSUPPORTED,
  ZIP_ENTRY_NOT_FOUND: ErrorCode.ZIP_ENTRY_NOT_FOUND,
  PICKLE_FORBIDDEN: ErrorCode.PICKLE_FORBIDDEN,
  PICKLE_INVALID: ErrorCode.PICKLE_INVALID,
  TORCH_INVALID_TENSOR: ErrorCode.TORCH_INVALID_TENSOR,
  TORCH_UNSUPPORTED_FORMAT: ErrorCode.TORCH_UNSUPPORTED_FORMAT,
  CHECKPOINT_NOT_FOUND: ErrorCode.CHECKPOINT_NOT_FOUND,
  CHECKPOINT_IO: ErrorCode.CHECKPOINT_IO,
  ABORTED: ErrorCode.ABORTED,
  FETCH_TIMEOUT: ErrorCode.FETCH_TIMEOUT,
  FETCH_TOO_LARGE: ErrorCode.FETCH_TOO_LARGE,
  FETCH_REFUSED: ErrorCode.FETCH_REFUSED,
  DESTINATION_NOT_EMPTY: ErrorCode.DESTINATION_NOT_EMPTY,
  DESTINATION_LOCKED: ErrorCode.DESTINATION_LOCKED,
  NODE_ONLY: ErrorCode.NODE_ONLY,
} as const satisfies Readonly<Record<string, ErrorCode>>;

export type CheckpointErrorCode = (typeof CheckpointErrorCode)[keyof typeof CheckpointErrorCode];

/** The error every checkpoint reader and writer throws; `code` is a `CheckpointErrorCode`. */
export class CheckpointError extends OwletError {
  override readonly name: string = 'CheckpointError';
  declare readonly code: CheckpointErrorCode;

  constructor(code: CheckpointErrorCode, message: string, options: OwletErrorOptions = {}) {
    super(code, message, options);
  }
}

/** True when `e` is a CheckpointError, optionally with the given code. */
export function isCheckpointError(e: unknown, code?: CheckpointErrorCode): e is CheckpointError {
  return e instanceof CheckpointError && (code === undefined || e.code === code);
}
