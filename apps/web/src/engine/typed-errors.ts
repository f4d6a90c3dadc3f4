/**
 * The worker side's typed errors: `OwletError`s with the engine's codes (errors.ts).
 */
import { OwletError, isOwletError, type OwletErrorOptions } from '@owlet/errors';

import { EngineErrorCode, type SerializedError } from './errors.js';

/** sha256/size mismatch: nothing of the file was used or cached. */
export class IntegrityError extends OwletError {
  override readonly name = 'IntegrityError';
  constructor(message: string, options: OwletErrorOptions = {}) {
    super(EngineErrorCode.INTEGRITY_MISMATCH, message, options);
  }
}

/** The GPU device is gone; the model's GPU tensors were released and a new load starts afresh. */
export class DeviceLostError extends OwletError {
  override readonly name = 'DeviceLostError';
  constructor(message: string, options: OwletErrorOptions = {}) {
    super(EngineErrorCode.DEVICE_LOST, message, options);
  }
}

export function serializeError(e: unknown): SerializedError {
  if (isOwletError(e)) {
    let details: Record<string, unknown> | undefined;
    try {
      details = structuredClone(e.details);
    } catch {
      details = undefined;
    }
    return { name: e.name, code: String(e.code), message: e.message, ...(details ? { details } : {}) };
  }
  const err = e as { name?: unknown; message?: unknown } | null;
  if (err && typeof err.message === 'string') {
    return { name: typeof err.name === 'string' ? err.name : 'Error', code: 'INTERNAL', message: err.message };
  }
  return { name: 'Error', code: 'INTERNAL', message: String(e) };
}
