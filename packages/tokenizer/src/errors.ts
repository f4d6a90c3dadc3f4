/**
 * Typed errors of @owlet/tokenizer. The package has no dependency on @owlet/core (it must run
 * anywhere, without tfjs), so it carries its own error class with the same shape as core's
 * `OwletError`: a stable `code` to branch on, a message naming both sides, and `details`.
 */

export const TokenizerErrorCode = {
  /** tokenizer.model bytes are truncated, garbled or not a SentencePiece ModelProto. */
  INVALID_MODEL_PROTO: 'INVALID_MODEL_PROTO',
  /** tokenizer.json is malformed (bad JSON, missing vocab, zero merges, …). */
  INVALID_TOKENIZER_JSON: 'INVALID_TOKENIZER_JSON',
  /** A well-formed model uses a feature this tokenizer does not implement. */
  UNSUPPORTED_MODEL: 'UNSUPPORTED_MODEL',
  /** decode() got an id that is not an integer in [0, vocab_size). */
  INVALID_TOKEN_ID: 'INVALID_TOKEN_ID',
  /** The number of image slots in a prompt differs from the number of images given. */
  IMAGE_COUNT_MISMATCH: 'IMAGE_COUNT_MISMATCH',
  /** An argument is out of range or of the wrong type. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** A conversation does not fit its template (roles out of order, unknown template, …). */
  INVALID_CONVERSATION: 'INVALID_CONVERSATION',
} as const;

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
