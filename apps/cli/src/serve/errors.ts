/**
 * Every failure the HTTP API reports has the OpenAI shape `{ error: { message, type, param, code } }`
 * with a matching status; the one exception is the loading answer, which keeps llama.cpp's numeric
 * `code` (`{"error":{"code":503,"message":"Loading model",...}}`) because load balancers and
 * scripts written for llama.cpp look for it.
 */
import type { WireError } from './protocol.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = typeForStatus(status),
    readonly code: string | number | null = null,
    readonly param: string | null = null,
    /** Extra response headers (Retry-After, WWW-Authenticate). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  static fromWire(w: WireError): ApiError {
    return new ApiError(w.status, w.message, w.type, w.code, w.param);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | number | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function typeForStatus(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 503) return 'unavailable_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** 400 for a bad field, with the field in `param`. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', code, param);
}

export function loadingError(): ApiError {
  return new ApiError(503, 'Loading model', 'unavailable_error', 503);
}
