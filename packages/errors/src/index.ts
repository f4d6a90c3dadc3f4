/**
 * Typed errors with stable codes. Every error owlet throws on purpose is an `OwletError`; callers
 * branch on `code`, never on the message. Messages name both sides ("expected …, got …").
 */

export const ErrorCode = {
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
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode] | (string & {});

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
