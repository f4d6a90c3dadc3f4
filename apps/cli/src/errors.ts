/**
 * Exit codes and one-line error messages. User mistakes (bad flags, missing files, bad images,
 * unknown backends, checkpoints with missing keys) print one line with the fix and exit 2; an
 * internal failure exits 1 (with the stack under --debug / OWLET_DEBUG=1); Ctrl-C exits 130.
 */
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

/** Owlet error codes that mean an internal failure rather than bad input. */
const INTERNAL_CODES = new Set(['DISPOSED', 'DUPLICATE_KEY', 'NOT_READY', 'PARAMETER_NOT_LOADED']);

const HINTS: Record<string, string> = {
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
  exitCode: number;
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
  if (code === 'ABORTED' || code === 'ABORT_ERR') return { exitCode: EXIT.INTERRUPTED, code, message: 'interrupted' };
  if (code && /^[A-Z][A-Z0-9_]+$/.test(code) && !INTERNAL_CODES.has(code)) {
    const hint = HINTS[code];
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
    return { exitCode: EXIT.BAD_INPUT, code, message: hint ? `${text} (${hint})` : text };
  }
  return { exitCode: EXIT.INTERNAL, code: code || 'INTERNAL', message: `internal error: ${message}` };
}
