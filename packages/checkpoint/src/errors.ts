/**
 * Typed errors of checkpoint I/O. Every failure raised on purpose while reading or writing a
 * checkpoint is a `CheckpointError` (an `OwletError`) with one of the stable codes below; callers
 * branch on `code`. The safetensors codes mirror the reference implementation's `SafeTensorError`
 * variants (`HeaderTooSmall` → `SAFETENSORS_HEADER_TOO_SMALL`, …).
 */
import { OwletError, type OwletErrorOptions } from '@owlet/errors';

export const CheckpointErrorCode = {
  // ── safetensors (names follow the reference implementation's SafeTensorError) ──
  /** Fewer than 8 bytes: no room for the header length. */
  SAFETENSORS_HEADER_TOO_SMALL: 'SAFETENSORS_HEADER_TOO_SMALL',
  /** The header length N exceeds 100,000,000 bytes (checked before reading the header). */
  SAFETENSORS_HEADER_TOO_LARGE: 'SAFETENSORS_HEADER_TOO_LARGE',
  /** 8 + N exceeds the file size. */
  SAFETENSORS_INVALID_HEADER_LENGTH: 'SAFETENSORS_INVALID_HEADER_LENGTH',
  /** The header is not valid UTF-8. */
  SAFETENSORS_INVALID_HEADER: 'SAFETENSORS_INVALID_HEADER',
  /** The header is not JSON, or not the safetensors schema (wrong types, missing fields, deep nesting). */
  SAFETENSORS_INVALID_HEADER_DESERIALIZATION: 'SAFETENSORS_INVALID_HEADER_DESERIALIZATION',
  /** The same key appears twice in one JSON object of the header. */
  SAFETENSORS_DUPLICATE_KEY: 'SAFETENSORS_DUPLICATE_KEY',
  /** A tensor name that could alter object prototypes (`__proto__`, `constructor`, `prototype`). */
  SAFETENSORS_INVALID_KEY: 'SAFETENSORS_INVALID_KEY',
  /** A dtype string the format does not define (`"F31"`, `"f32"`). */
  SAFETENSORS_INVALID_DTYPE: 'SAFETENSORS_INVALID_DTYPE',
  /** A dtype the format defines but owlet does not load (U16, U32, U64, F8_*, F4, F6_*, C64). */
  SAFETENSORS_UNSUPPORTED_DTYPE: 'SAFETENSORS_UNSUPPORTED_DTYPE',
  /** data_offsets not contiguous, not starting at 0, or end < begin. */
  SAFETENSORS_INVALID_OFFSET: 'SAFETENSORS_INVALID_OFFSET',
  /** end − begin ≠ product(shape) × dtype size. */
  SAFETENSORS_TENSOR_INVALID_INFO: 'SAFETENSORS_TENSOR_INVALID_INFO',
  /** A dimension, offset or byte length beyond the safe range (dims/offsets ≤ 2^48 − 1, bytes ≤ 2^53 − 1). */
  SAFETENSORS_VALIDATION_OVERFLOW: 'SAFETENSORS_VALIDATION_OVERFLOW',
  /** The data section is shorter or longer than the tensors declare (truncated file, trailing bytes). */
  SAFETENSORS_METADATA_INCOMPLETE_BUFFER: 'SAFETENSORS_METADATA_INCOMPLETE_BUFFER',
  /** `__metadata__` is not an object of string values. */
  SAFETENSORS_INVALID_METADATA: 'SAFETENSORS_INVALID_METADATA',
  /** A sub-byte dtype (F4, F6_*) whose bits do not fill whole bytes. */
  SAFETENSORS_MISALIGNED_SLICE: 'SAFETENSORS_MISALIGNED_SLICE',
  /** A key that is not in the file. */
  SAFETENSORS_TENSOR_NOT_FOUND: 'SAFETENSORS_TENSOR_NOT_FOUND',
  /** An I64 value outside the int32 range owlet computes in. */
  SAFETENSORS_VALUE_OUT_OF_RANGE: 'SAFETENSORS_VALUE_OUT_OF_RANGE',
  /** writeSafetensors was given data that does not match the declared dtype/shape. */
  SAFETENSORS_INVALID_TENSOR_DATA: 'SAFETENSORS_INVALID_TENSOR_DATA',

  // ── sharded index files ──
  /** The index JSON is malformed (not JSON, no weight_map, non-string values). */
  INDEX_INVALID: 'INDEX_INVALID',
  /** A shard name escapes the checkpoint folder (`..`, absolute, URL, backslash, %-encoding, subfolder). */
  INDEX_UNSAFE_SHARD_NAME: 'INDEX_UNSAFE_SHARD_NAME',
  /** A shard listed in the index is not there. */
  INDEX_SHARD_MISSING: 'INDEX_SHARD_MISSING',
  /** A tensor of the index is not in its shard. */
  INDEX_TENSOR_MISSING: 'INDEX_TENSOR_MISSING',
  /** A tensor is in a shard the index does not assign it to, or in two shards. */
  INDEX_TENSOR_DUPLICATED: 'INDEX_TENSOR_DUPLICATED',
  /** A shard holds a tensor the index does not list. */
  INDEX_TENSOR_UNLISTED: 'INDEX_TENSOR_UNLISTED',
  /** metadata.total_size differs from the sum of the tensors' byte lengths. */
  INDEX_TOTAL_SIZE_MISMATCH: 'INDEX_TOTAL_SIZE_MISMATCH',

  // ── zip container of torch.save ──
  /** Not a zip file, or a structure (end record, central directory, local header) is corrupt. */
  ZIP_INVALID: 'ZIP_INVALID',
  /** A compression method other than stored (0) or deflate (8), encryption, or a multi-disk archive. */
  ZIP_UNSUPPORTED: 'ZIP_UNSUPPORTED',
  /** A member the pickle refers to is not in the archive. */
  ZIP_ENTRY_NOT_FOUND: 'ZIP_ENTRY_NOT_FOUND',

  // ── PyTorch pickle ──
  /** The pickle uses an opcode, global or structure outside what torch.save writes for a state dict. */
  PICKLE_FORBIDDEN: 'PICKLE_FORBIDDEN',
  /** The pickle stream is malformed (truncated, stack underflow, bad memo index). */
  PICKLE_INVALID: 'PICKLE_INVALID',
  /** A tensor view reaches outside its storage, or its dtype is not one owlet loads. */
  TORCH_INVALID_TENSOR: 'TORCH_INVALID_TENSOR',
  /** The file is a legacy (pre-1.6, non-zip) torch.save file or not a torch file at all. */
  TORCH_UNSUPPORTED_FORMAT: 'TORCH_UNSUPPORTED_FORMAT',

  // ── sources ──
  /** Nothing recognisable at the source: no safetensors, index or .bin file. */
  CHECKPOINT_NOT_FOUND: 'CHECKPOINT_NOT_FOUND',
  /** A read, fetch or file operation failed (HTTP status, I/O error, short read). */
  CHECKPOINT_IO: 'CHECKPOINT_IO',
  /** The operation was aborted through its AbortSignal. */
  ABORTED: 'ABORTED',
  /** A server sent no response headers, or no body bytes, within the timeout. */
  FETCH_TIMEOUT: 'FETCH_TIMEOUT',
  /** A response (its Content-Length, or the bytes streamed so far) is over the size limit. */
  FETCH_TOO_LARGE: 'FETCH_TOO_LARGE',
  /** A redirect to an origin that is not allowed, too many redirects, or an HTML page instead of a file. */
  FETCH_REFUSED: 'FETCH_REFUSED',
  /** An output folder exists and is not empty (pass `force` to replace it), or is not a folder. */
  DESTINATION_NOT_EMPTY: 'DESTINATION_NOT_EMPTY',
  /** Another process is writing the same output folder (its lock is held by a live process). */
  DESTINATION_LOCKED: 'DESTINATION_LOCKED',
  /** This operation needs Node.js (file paths, folders, conversion). */
  NODE_ONLY: 'NODE_ONLY',
} as const;

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
