// The error types live in @owlet/errors (shared with @owlet/checkpoint, which core builds on).
export { ErrorCode, OwletError, formatShape, isOwletError, type OwletErrorOptions } from '@owlet/errors';
