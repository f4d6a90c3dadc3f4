/**
 * The web engine's error codes and how errors cross the worker boundary. In the worker they are
 * `OwletError`s (typed-errors.ts); they travel as `{ name, code, message, details }` and the page
 * rebuilds them as `EngineError`s with the same name and code (branch on the code, never the
 * message). This file imports nothing from @owlet/core, so the page bundle stays free of tfjs.
 */

export const EngineErrorCode = {
  /** A file's bytes do not match the sha256 (or size) the manifest records (checklist F9). */
  INTEGRITY_MISMATCH: 'INTEGRITY_MISMATCH',
  /** A download failed after its retries (network error, truncated body, server error; F7). */
  DOWNLOAD_FAILED: 'DOWNLOAD_FAILED',
  /** The server answered a model file with an HTML page or another wrong type (F8). */
  UNEXPECTED_CONTENT: 'UNEXPECTED_CONTENT',
  /** The browser's storage quota is full; the model runs from memory this time (F14). */
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  /** The GPU device was lost (driver reset, `device.destroy()`, tab in the background; F10). */
  DEVICE_LOST: 'DEVICE_LOST',
  /** A tensor of the model needs a GPU buffer larger than this device allows. */
  EXCEEDS_DEVICE_LIMITS: 'EXCEEDS_DEVICE_LIMITS',
  /** WebGPU was asked for but this browser cannot give it. */
  WEBGPU_UNAVAILABLE: 'WEBGPU_UNAVAILABLE',
  /** chat before load, or after the model was released. */
  NOT_READY: 'NOT_READY',
  /** A second request while one is running. */
  BUSY: 'BUSY',
  /** The worker died (out of memory, crashed); a new one is started on the next load. */
  WORKER_CRASHED: 'WORKER_CRASHED',
  /** A picked folder or a URL that is not a model folder. */
  INVALID_MODEL_SOURCE: 'INVALID_MODEL_SOURCE',
} as const;

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
