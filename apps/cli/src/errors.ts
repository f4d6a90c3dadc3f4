/**
 * Exit codes and one-line error messages. User mistakes (bad flags, missing files, bad images,
 * unknown backends, checkpoints with missing keys) print one line with the fix and exit 2; an
 * internal failure exits 1 (with the stack under --debug / OWLET_DEBUG=1); Ctrl-C exits 130. Which
 * is which is decided by the error's code (`EXIT_STATUS`), never by its message.
 */
import type { ErrorCode } from '@owlet/core';

export const EXIT = { OK: 0, INTERNAL: 1, BAD_INPUT: 2, INTERRUPTED: 130 } as const;

/** A mistake in how the command was called, with the fix. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

const { INTERNAL, BAD_INPUT, INTERRUPTED } = EXIT;

/**
 * The exit status of every owlet error code. Bad input (2) is what the user can fix: a flag, a
 * file, a model folder, an image, a prompt. Internal (1) is a bug or a broken machine (a shape that
 * does not line up inside the model, a lost device). The table is total over `ErrorCode`, so a
 * code added to @owlet/errors does not compile until it is classified here.
 */
export const EXIT_STATUS: Readonly<Record<ErrorCode, ExitStatus>> = {
  // core
  BACKEND_UNAVAILABLE: BAD_INPUT,
  BACKEND_UNKNOWN: BAD_INPUT,
  STATE_DICT_MISMATCH: BAD_INPUT,
  SHAPE_MISMATCH: INTERNAL,
  INVALID_ARGUMENT: BAD_INPUT,
  INVALID_CONFIG: BAD_INPUT,
  DISPOSED: INTERNAL,
  DUPLICATE_KEY: INTERNAL,
  DEVICE_LOST: INTERNAL,
  WEBGPU_LIMIT: BAD_INPUT,
  CONTEXT_WINDOW_EXCEEDED: BAD_INPUT,
  NOT_READY: INTERNAL,
  ABORTED: INTERRUPTED,
  PARAMETER_NOT_LOADED: INTERNAL,
  PARAMETER_PACKED: INTERNAL,
  PACKED_HOST_RELEASED: INTERNAL,
  UNSUPPORTED_MODEL: BAD_INPUT,
  CHECKPOINT_INVALID: BAD_INPUT,
  IMAGE_COUNT_MISMATCH: BAD_INPUT,
  CPU_ENGINE_UNAVAILABLE: BAD_INPUT,
  CPU_ENGINE_OUT_OF_MEMORY: INTERNAL,
  // checkpoint files: a file the user pointed at
  SAFETENSORS_HEADER_TOO_SMALL: BAD_INPUT,
  SAFETENSORS_HEADER_TOO_LARGE: BAD_INPUT,
  SAFETENSORS_INVALID_HEADER_LENGTH: BAD_INPUT,
  SAFETENSORS_INVALID_HEADER: BAD_INPUT,
  SAFETENSORS_INVALID_HEADER_DESERIALIZATION: BAD_INPUT,
  SAFETENSORS_DUPLICATE_KEY: BAD_INPUT,
  SAFETENSORS_INVALID_KEY: BAD_INPUT,
  SAFETENSORS_INVALID_DTYPE: BAD_INPUT,
  SAFETENSORS_UNSUPPORTED_DTYPE: BAD_INPUT,
  SAFETENSORS_INVALID_OFFSET: BAD_INPUT,
  SAFETENSORS_TENSOR_INVALID_INFO: BAD_INPUT,
  SAFETENSORS_VALIDATION_OVERFLOW: BAD_INPUT,
  SAFETENSORS_METADATA_INCOMPLETE_BUFFER: BAD_INPUT,
  SAFETENSORS_INVALID_METADATA: BAD_INPUT,
  SAFETENSORS_MISALIGNED_SLICE: BAD_INPUT,
  SAFETENSORS_TENSOR_NOT_FOUND: BAD_INPUT,
  SAFETENSORS_VALUE_OUT_OF_RANGE: BAD_INPUT,
  // the writer was handed data that does not match its own header: owlet's bug
  SAFETENSORS_INVALID_TENSOR_DATA: INTERNAL,
  INDEX_INVALID: BAD_INPUT,
  INDEX_UNSAFE_SHARD_NAME: BAD_INPUT,
  INDEX_SHARD_MISSING: BAD_INPUT,
  INDEX_TENSOR_MISSING: BAD_INPUT,
  INDEX_TENSOR_DUPLICATED: BAD_INPUT,
  INDEX_TENSOR_UNLISTED: BAD_INPUT,
  INDEX_TOTAL_SIZE_MISMATCH: BAD_INPUT,
  ZIP_INVALID: BAD_INPUT,
  ZIP_UNSUPPORTED: BAD_INPUT,
  ZIP_ENTRY_NOT_FOUND: BAD_INPUT,
  PICKLE_FORBIDDEN: BAD_INPUT,
  PICKLE_INVALID: BAD_INPUT,
  TORCH_INVALID_TENSOR: BAD_INPUT,
  TORCH_UNSUPPORTED_FORMAT: BAD_INPUT,
  CHECKPOINT_NOT_FOUND: BAD_INPUT,
  CHECKPOINT_IO: BAD_INPUT,
  FETCH_TIMEOUT: BAD_INPUT,
  FETCH_TOO_LARGE: BAD_INPUT,
  FETCH_REFUSED: BAD_INPUT,
  DESTINATION_NOT_EMPTY: BAD_INPUT,
  DESTINATION_LOCKED: BAD_INPUT,
  NODE_ONLY: INTERNAL,
  // trainer
  BACKEND_CANNOT_TRAIN: BAD_INPUT,
  INVALID_TRAINING_ARGS: BAD_INPUT,
  NO_TRAINABLE_PARAMETERS: BAD_INPUT,
  CHECKPOINT_MISMATCH: BAD_INPUT,
  INVALID_DATASET: BAD_INPUT,
  NON_FINITE_LOSS: BAD_INPUT,
  // images
  IMAGE_DECODE_FAILED: BAD_INPUT,
  IMAGE_TOO_LARGE: BAD_INPUT,
  IMAGE_UNSUPPORTED: BAD_INPUT,
  // tokenizer
  INVALID_MODEL_PROTO: BAD_INPUT,
  INVALID_TOKENIZER_JSON: BAD_INPUT,
  INVALID_TOKEN_ID: BAD_INPUT,
  INVALID_CONVERSATION: BAD_INPUT,
  // the web engine's codes never reach the CLI; classified as they would be here
  INTEGRITY_MISMATCH: BAD_INPUT,
  DOWNLOAD_FAILED: BAD_INPUT,
  UNEXPECTED_CONTENT: BAD_INPUT,
  QUOTA_EXCEEDED: INTERNAL,
  CACHE_WRITE_FAILED: INTERNAL,
  EXCEEDS_DEVICE_LIMITS: BAD_INPUT,
  WEBGPU_UNAVAILABLE: BAD_INPUT,
  BUSY: INTERNAL,
  WORKER_CRASHED: INTERNAL,
  INVALID_MODEL_SOURCE: BAD_INPUT,
};

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(EXIT_STATUS, code);
}

/** A Node system error (`fs`, `net`): a path or an address the user gave. */
function isSystemError(e: unknown, code: string): boolean {
  return /^E[A-Z0-9]+$/.test(code) && typeof (e as { syscall?: unknown }).syscall === 'string';
}

const HINTS: Partial<Record<ErrorCode, string>> = {
  BACKEND_UNKNOWN: 'use --backend auto, webgpu, wasm, cpu or tensorflow',
  BACKEND_UNAVAILABLE: 'use --backend auto to pick what works here',
  STATE_DICT_MISMATCH: 'the checkpoint does not match its config.json; re-download or re-convert it',
  CHECKPOINT_NOT_FOUND: 'point --model at a folder with config.json, tokenizer.model and the weights',
  IMAGE_DECODE_FAILED: 'pass a PNG, JPEG, WebP, GIF, TIFF or BMP file',
  IMAGE_UNSUPPORTED: 'pass a PNG, JPEG, WebP, GIF, TIFF or BMP file',
  IMAGE_TOO_LARGE: 'resize the image below the pixel cap first',
  INVALID_CONFIG: 'check config.json / preprocessor_config.json of the model',
  IMAGE_COUNT_MISMATCH: 'give one --image per image slot',
  DESTINATION_NOT_EMPTY: 'owlet convert --force replaces it',
  DESTINATION_LOCKED: 'wait for the other conversion to finish',
  CONTEXT_WINDOW_EXCEEDED: 'shorten the prompt',
  FETCH_TIMEOUT: 'check the URL, or raise --fetch-timeout',
  FETCH_REFUSED: 'use the final URL, or allow its origin with --allow-redirect ORIGIN',
};

export interface Classified {
  exitCode: ExitStatus;
  message: string;
  code: string;
}

export function classify(e: unknown): Classified {
  if (e instanceof UsageError) {
    return { exitCode: EXIT.BAD_INPUT, code: 'USAGE', message: e.hint ? `${e.message} (${e.hint})` : e.message };
  }
  const err = e as { code?: unknown; message?: unknown; name?: unknown };
  const code = typeof err?.code === 'string' ? err.code : '';
  const message = typeof err?.message === 'string' ? (err.message.split('\n')[0] ?? '') : String(e);
  if (code.startsWith('ERR_PARSE_ARGS'))
    return { exitCode: EXIT.BAD_INPUT, code: 'USAGE', message: `${message} (see owlet --help)` };
  if (code === 'ABORT_ERR') return { exitCode: INTERRUPTED, code, message: 'interrupted' };
  const status = isErrorCode(code) ? EXIT_STATUS[code] : isSystemError(e, code) ? BAD_INPUT : INTERNAL;
  if (status === INTERRUPTED) return { exitCode: INTERRUPTED, code, message: 'interrupted' };
  if (status === BAD_INPUT) {
    const hint = isErrorCode(code) ? HINTS[code] : undefined;
    const full = (e as { message: string }).message;
    // A state-dict report lists several keys: keep its first lines, still one logical message.
    const text =
      code === 'STATE_DICT_MISMATCH'
        ? full
            .split('\n')
            .slice(0, 3)
            .map((l) => l.trim())
            .join(' ')
        : message;
    return { exitCode: BAD_INPUT, code, message: hint ? `${text} (${hint})` : text };
  }
  return { exitCode: INTERNAL, code: code || 'INTERNAL', message: `internal error: ${message}` };
}
