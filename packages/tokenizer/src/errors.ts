/**
 * Typed errors of @owlet/tokenizer. The package has no dependency on @owlet/core (it must run
 * anywhere, without tfjs), so it carries its own error class with the same shape as core's
 * `OwletError`: a stable `code` to branch on, a message naming both sides, and `details`. Its codes
 * come from @owlet/errors (no dependencies, no tfjs), where every owlet code is declared once.
 */
import { ErrorCode } from '@owlet/errors';

/** The codes this package throws; each is declared, with its meaning, once in `ErrorCode` (@owlet/errors). */
export const TokenizerErrorCode = {
  INVALID_MODEL_PROTO: ErrorCode.INVALID_MODEL_PROTO,
  INVALID_TOKENIZER_JSON: ErrorCode.INVALID_TOKENIZER_JSON,
  UNSUPPORTED_MODEL: ErrorCode.UNSUPPORTED_MODEL,
  INVALID_TOKEN_ID: ErrorCode.INVALID_TOKEN_ID,
  IMAGE_COUNT_MISMATCH: ErrorCode.IMAGE_COUNT_MISMATCH,
  INVALID_ARGUMENT: ErrorCode.INVALID_ARGUMENT,
  INVALID_CONVERSATION: ErrorCode.INVALID_CONVERSATION,
} as const satisfies Readonly<Record<string, ErrorCode>>;

export type TokenizerErrorCode = (typeof TokenizerErrorCode)[keyof typeof TokenizerErrorCode];

/** Every deliberate error of the tokenizer: a stable `code` (`TokenizerErrorCode`), a message naming both sides, `details`. */
export class TokenizerError extends Error {
  override readonly name: string = 'TokenizerError';
  readonly code: TokenizerErrorCode;
  readonly details: Record<string, unknown>;

  constructor(
    code: TokenizerErrorCode,
    message: string,
    options: { details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `e` is a TokenizerError, optionally with the given code. */
export function isTokenizerError(e: unknown, code?: TokenizerErrorCode): e is TokenizerError {
  return e instanceof TokenizerError && (code === undefined || e.code === code);
}
