/**
 * The web engine's error codes and how errors cross the worker boundary. In the worker they are
 * `OwletError`s (typed-errors.ts); they travel as `{ name, code, message, details }` and the page
 * rebuilds them as `EngineError`s with the same name and code (branch on the code, never the
 * message). This file imports nothing from @owlet/core, so the page bundle stays free of tfjs.
 */
import { ErrorCode } from '@owlet/errors';

/** The codes this package throws; each is declared, with its meaning, once in `ErrorCode` (@owlet/errors). */
export const EngineErrorCode = {
  INTEGRITY_MISMATCH: ErrorCode.INTEGRITY_MISMATCH,
  DOWNLOAD_FAILED: ErrorCode.DOWNLOAD_FAILED,
  UNEXPECTED_CONTENT: ErrorCode.UNEXPECTED_CONTENT,
  QUOTA_EXCEEDED: ErrorCode.QUOTA_EXCEEDED,
  CACHE_WRITE_FAILED: ErrorCode.CACHE_WRITE_FAILED,
  DEVICE_LOST: ErrorCode.DEVICE_LOST,
  EXCEEDS_DEVICE_LIMITS: ErrorCode.EXCEEDS_DEVICE_LIMITS,
  WEBGPU_UNAVAILABLE: ErrorCode.WEBGPU_UNAVAILABLE,
  NOT_READY: ErrorCode.NOT_READY,
  BUSY: ErrorCode.BUSY,
  WORKER_CRASHED: ErrorCode.WORKER_CRASHED,
  INVALID_MODEL_SOURCE: ErrorCode.INVALID_MODEL_SOURCE,
} as const satisfies Readonly<Record<string, ErrorCode>>;

export type EngineErrorCode = (typeof EngineErrorCode)[keyof typeof EngineErrorCode];

/** An error as it crosses postMessage. */
export interface SerializedError {
  name: string;
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** An engine error on the page: the worker's error, same name, code and details. */
export class EngineError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown>;
  constructor(s: SerializedError) {
    super(s.message);
    this.name = s.name;
    this.code = s.code;
    this.details = s.details ?? {};
  }
}

export function deserializeError(s: SerializedError): EngineError {
  return new EngineError(s);
}
