/**
 * Typed errors with stable codes. Every error owlet throws on purpose is an `OwletError`; callers
 * branch on `code`, never on the message. Messages name both sides ("expected …, got …").
 */

export const ErrorCode = {
  // ── core: backends, modules, tensors, models ──
  /** A backend was requested explicitly but cannot run here. */
  BACKEND_UNAVAILABLE: 'BACKEND_UNAVAILABLE',
  /** The backend name is not one owlet knows. */
  BACKEND_UNKNOWN: 'BACKEND_UNKNOWN',
  /** loadStateDict found missing / unexpected keys or shape mismatches. */
  STATE_DICT_MISMATCH: 'STATE_DICT_MISMATCH',
  /** A tensor argument has the wrong rank, shape or dtype. */
  SHAPE_MISMATCH: 'SHAPE_MISMATCH',
  /** An argument is out of range or of the wrong type. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** A config is missing a field or has an invalid value. */
  INVALID_CONFIG: 'INVALID_CONFIG',
  /** A module was used after dispose(). */
  DISPOSED: 'DISPOSED',
  /** A key was registered twice in one module. */
  DUPLICATE_KEY: 'DUPLICATE_KEY',
  /** The WebGPU device was lost (driver reset, destroy(), GPU process crash); tensors on it are gone. */
  DEVICE_LOST: 'DEVICE_LOST',
  /** A tensor or the whole model does not fit the WebGPU device's limits (binding size, buffer size, memory). */
  WEBGPU_LIMIT: 'WEBGPU_LIMIT',
  /** A prompt (with what the conversation already holds) leaves no room in the model's context window. */
  CONTEXT_WINDOW_EXCEEDED: 'CONTEXT_WINDOW_EXCEEDED',
  /** Used before it is ready: chat before load or after release, chat with images but no image processor. */
  NOT_READY: 'NOT_READY',
  /** An operation was stopped through its AbortSignal (chat, loading, conversion, a training run). */
  ABORTED: 'ABORTED',
  /** A Parameter was read before a checkpoint was loaded into it or it was initialized. */
  PARAMETER_NOT_LOADED: 'PARAMETER_NOT_LOADED',
  /** A packed (q8/q4/f16) Parameter was read as a tfjs tensor: only linear() or canonical() can use it. */
  PARAMETER_PACKED: 'PARAMETER_PACKED',
  /** A packed weight was read on the host after its host bytes were released (only a backend's copy is left). */
  PACKED_HOST_RELEASED: 'PACKED_HOST_RELEASED',
  /** A well-formed model uses a model type or feature owlet does not implement (mPLUG-Owl2.1, a tokenizer feature). */
  UNSUPPORTED_MODEL: 'UNSUPPORTED_MODEL',
  /** A side file of a model folder (config.json, tokenizer files) is malformed or over its size cap. */
  CHECKPOINT_INVALID: 'CHECKPOINT_INVALID',
  /** The number of image slots in a prompt differs from the number of images given. */
  IMAGE_COUNT_MISMATCH: 'IMAGE_COUNT_MISMATCH',
  /** The owned CPU engine cannot run here (native kernels asked for but missing, workers did not start). */
  CPU_ENGINE_UNAVAILABLE: 'CPU_ENGINE_UNAVAILABLE',
  /** An arena of the owned CPU engine cannot grow (the 4 GiB wasm memory limit, or the host refused). */
  CPU_ENGINE_OUT_OF_MEMORY: 'CPU_ENGINE_OUT_OF_MEMORY',

  // ── @owlet/checkpoint (CheckpointErrorCode) ──
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
  /** Not a zip file, or a structure (end record, central directory, local header) is corrupt. */
  ZIP_INVALID: 'ZIP_INVALID',
  /** A compression method other than stored (0) or deflate (8), encryption, or a multi-disk archive. */
  ZIP_UNSUPPORTED: 'ZIP_UNSUPPORTED',
  /** A member the pickle refers to is not in the archive. */
  ZIP_ENTRY_NOT_FOUND: 'ZIP_ENTRY_NOT_FOUND',
  /** The pickle uses an opcode, global or structure outside what torch.save writes for a state dict. */
  PICKLE_FORBIDDEN: 'PICKLE_FORBIDDEN',
  /** The pickle stream is malformed (truncated, stack underflow, bad memo index). */
  PICKLE_INVALID: 'PICKLE_INVALID',
  /** A tensor view reaches outside its storage, or its dtype is not one owlet loads. */
  TORCH_INVALID_TENSOR: 'TORCH_INVALID_TENSOR',
  /** The file is a legacy (pre-1.6, non-zip) torch.save file or not a torch file at all. */
  TORCH_UNSUPPORTED_FORMAT: 'TORCH_UNSUPPORTED_FORMAT',
  /** Nothing loadable at the source (no safetensors, index or .bin file), or resume_from_checkpoint names no complete checkpoint. */
  CHECKPOINT_NOT_FOUND: 'CHECKPOINT_NOT_FOUND',
  /** A read, fetch or file operation failed (HTTP status, I/O error, short read). */
  CHECKPOINT_IO: 'CHECKPOINT_IO',
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

  // ── @owlet/trainer (TrainerErrorCode) ──
  /** The active backend lacks a kernel the backward pass needs; raised before training starts. */
  BACKEND_CANNOT_TRAIN: 'BACKEND_CANNOT_TRAIN',
  /** A training argument is missing, out of range or inconsistent. */
  INVALID_TRAINING_ARGS: 'INVALID_TRAINING_ARGS',
  /** The recipe and parameter patterns leave nothing to train. */
  NO_TRAINABLE_PARAMETERS: 'NO_TRAINABLE_PARAMETERS',
  /** A checkpoint folder is complete but does not match this model / trainer. */
  CHECKPOINT_MISMATCH: 'CHECKPOINT_MISMATCH',
  /** A dataset file or sample is malformed. */
  INVALID_DATASET: 'INVALID_DATASET',
  /** The loss or the gradient norm is NaN or infinite. */
  NON_FINITE_LOSS: 'NON_FINITE_LOSS',

  // ── image preprocessing in @owlet/vision-encoder (PreprocessErrorCode) ──
  /** The bytes are not an image any decoder here understands, or decoding failed (truncated, corrupt). */
  IMAGE_DECODE_FAILED: 'IMAGE_DECODE_FAILED',
  /** The header announces more pixels (or a longer edge) than the configured cap; nothing was decoded. */
  IMAGE_TOO_LARGE: 'IMAGE_TOO_LARGE',
  /** The image format or mode cannot be processed (e.g. 16-bit integer modes). */
  IMAGE_UNSUPPORTED: 'IMAGE_UNSUPPORTED',

  // ── @owlet/tokenizer (TokenizerErrorCode) ──
  /** tokenizer.model bytes are truncated, garbled or not a SentencePiece ModelProto. */
  INVALID_MODEL_PROTO: 'INVALID_MODEL_PROTO',
  /** tokenizer.json is malformed (bad JSON, missing vocab, zero merges, …). */
  INVALID_TOKENIZER_JSON: 'INVALID_TOKENIZER_JSON',
  /** decode() got an id that is not an integer in [0, vocab_size). */
  INVALID_TOKEN_ID: 'INVALID_TOKEN_ID',
  /** A conversation does not fit its template (roles out of order, unknown template, …). */
  INVALID_CONVERSATION: 'INVALID_CONVERSATION',

  // ── the web engine in apps/web (EngineErrorCode) ──
  /** A file's bytes do not match the sha256 (or size) the manifest records (checklist F9). */
  INTEGRITY_MISMATCH: 'INTEGRITY_MISMATCH',
  /** A download failed after its retries (network error, truncated body, server error; F7). */
  DOWNLOAD_FAILED: 'DOWNLOAD_FAILED',
  /** The server answered a model file with an HTML page or another wrong type (F8). */
  UNEXPECTED_CONTENT: 'UNEXPECTED_CONTENT',
  /** The browser's storage quota is full; the model runs from memory this time (F14). */
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  /** Writing a model file to the browser cache failed for another reason than the quota; it runs from memory. */
  CACHE_WRITE_FAILED: 'CACHE_WRITE_FAILED',
  /** A tensor of the model needs a GPU buffer larger than this device allows. */
  EXCEEDS_DEVICE_LIMITS: 'EXCEEDS_DEVICE_LIMITS',
  /** WebGPU was asked for but this browser cannot give it. */
  WEBGPU_UNAVAILABLE: 'WEBGPU_UNAVAILABLE',
  /** A second request while one is running. */
  BUSY: 'BUSY',
  /** The worker died (out of memory, crashed); a new one is started on the next load. */
  WORKER_CRASHED: 'WORKER_CRASHED',
  /** A picked folder or a URL that is not a model folder. */
  INVALID_MODEL_SOURCE: 'INVALID_MODEL_SOURCE',
} as const;

/** Every code an owlet error carries; closed, so a code thrown anywhere must be declared above. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface OwletErrorOptions {
  /** Structured details for programs (keys, shapes, the offending value). */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The error every owlet package throws on purpose: a stable `code` to branch on (never the message),
 * a message that names both sides, and structured `details`.
 */
export class OwletError extends Error {
  override readonly name: string = 'OwletError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: OwletErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `e` is an OwletError, optionally with the given code. */
export function isOwletError(e: unknown, code?: ErrorCode): e is OwletError {
  return e instanceof OwletError && (code === undefined || e.code === code);
}

/** Formats a shape the way error messages print it: `[4096, 11008]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
