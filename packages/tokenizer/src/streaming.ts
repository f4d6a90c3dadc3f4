import { TokenizerError, TokenizerErrorCode } from './errors.js';
import type { DecodeOptions, LlamaTokenizer, TokenIds } from './llama-tokenizer.js';
import { toIdArray } from './llama-tokenizer.js';
import { incompleteUtf8Tail } from './utf8.js';

/**
 * Streaming decode (reliability checklist B23): text is emitted only for complete characters — a
 * multi-byte character split over several `<0xNN>` tokens produces nothing until its last byte
 * arrives — and the concatenation of everything emitted equals `decode(allIds)` (with
 * `skip_special_tokens: true`; with it false, special tokens appear as their text and each
 * special token starts a new SentencePiece segment, without the legacy extra space).
 *
 * The decoder keeps a small context window (the ids of the last visible text) so each step costs
 * O(window), not O(sequence).
 */
export class StreamingDecoder {
  private readonly tokenizer: LlamaTokenizer;
  private readonly skipSpecial: boolean;
  /** Ids whose text was already emitted, kept as decoding context. */
  private context: number[] = [];
  private contextText = '';
  /** Ids not emitted yet. */
  private pending: number[] = [];

  constructor(tokenizer: LlamaTokenizer, options: DecodeOptions = {}) {
    this.tokenizer = tokenizer;
    this.skipSpecial = options.skip_special_tokens ?? false;
  }

  /** Adds ids; returns the newly completed text (possibly ''). */
  push(ids: TokenIds | number): string {
    const arr =
      typeof ids === 'number' ? toIdArray([ids], this.tokenizer.vocab_size) : toIdArray(ids, this.tokenizer.vocab_size);
    let out = '';
    for (const id of arr) out += this.pushOne(id);
    return out;
  }

  private pushOne(id: number): string {
    const tk = this.tokenizer;
    if (tk.isSpecialId(id)) {
      if (this.skipSpecial) return '';
      const text = this.flush() + tk.backend.idToPiece(id);
      this.context = [];
      this.contextText = '';
      return text;
    }
    this.pending.push(id);
    // Hold back while the trailing byte pieces are a proper prefix of a UTF-8 character.
    const bytes: number[] = [];
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const id = this.pending[i];
      if (id === undefined) break;
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(tk.backend.idToPiece(id));
      if (!m || m[1] === undefined) break;
      bytes.unshift(parseInt(m[1], 16));
    }
    if (bytes.length > 0 && incompleteUtf8Tail(bytes) > 0) return '';
    return this.emit();
  }

  private emit(): string {
    if (this.pending.length === 0) return '';
    const all = this.context.concat(this.pending);
    const full = this.tokenizer.backend.decodeChunk(all);
    // decode(context + pending) extends decode(context): emit the difference.
    const pendingText = this.tokenizer.backend.decodeChunk(this.pending);
    const text = full.startsWith(this.contextText) ? full.slice(this.contextText.length) : pendingText;
    if (pendingText.length > 0) {
      // The pending ids produce visible text on their own: they are enough context.
      this.context = this.pending;
      this.contextText = pendingText;
    } else {
      this.context = all;
      this.contextText = full;
    }
    this.pending = [];
    return text;
  }

  /** Emits whatever is held back (an incomplete character decodes to U+FFFD per byte). */
  flush(): string {
    return this.emit();
  }

  /** Forgets all state (start of a new sequence). */
  reset(): void {
    this.context = [];
    this.contextText = '';
    this.pending = [];
  }
}

export interface TextStreamerOptions extends DecodeOptions {
  /** Skip the first `put()` (the prompt), as transformers' TextStreamer. */
  skip_prompt?: boolean;
  /** Receives finalized text pieces. Without it, text accumulates in `streamer.text`. */
  callback_function?: ((text: string) => void) | null;
  /** Receives the raw ids of each `put()`. */
  token_callback_function?: ((ids: number[]) => void) | null;
}

/**
 * transformers(.js)-compatible `TextStreamer`: `generate({ streamer })` calls `put(ids)` with the
 * prompt first, then each new token, and `end()` at the end.
 */
export class TextStreamer {
  readonly tokenizer: LlamaTokenizer;
  /** Everything emitted so far (also when a callback is set). */
  text = '';
  private readonly decoder: StreamingDecoder;
  private readonly skipPrompt: boolean;
  private nextIsPrompt = true;
  private readonly callback: ((text: string) => void) | null;
  private readonly tokenCallback: ((ids: number[]) => void) | null;

  constructor(tokenizer: LlamaTokenizer, options: TextStreamerOptions = {}) {
    this.tokenizer = tokenizer;
    this.decoder = new StreamingDecoder(tokenizer, options);
    this.skipPrompt = options.skip_prompt ?? false;
    this.callback = options.callback_function ?? null;
    this.tokenCallback = options.token_callback_function ?? null;
  }

  /** Accepts ids as a flat list or a batch of one row (`[[…]]`), numbers or bigints. */
  put(value: TokenIds | readonly TokenIds[] | number | bigint): void {
    let ids: number[];
    if (typeof value === 'number' || typeof value === 'bigint') ids = toIdArray([value], this.tokenizer.vocab_size);
    else {
      const arr = Array.from(value as Iterable<unknown>);
      const row = arr.length > 0 && typeof arr[0] === 'object' ? (arr[0] as TokenIds) : (arr as TokenIds);
      if (arr.length > 1 && typeof arr[0] === 'object') {
        throw new TokenizerError(
          TokenizerErrorCode.INVALID_ARGUMENT,
          `TextStreamer supports batch size 1, got a batch of ${arr.length}`,
        );
      }
      ids = toIdArray(row, this.tokenizer.vocab_size);
    }
    if (this.skipPrompt && this.nextIsPrompt) {
      this.nextIsPrompt = false;
      return;
    }
    this.nextIsPrompt = false;
    this.tokenCallback?.(ids);
    this.onText(this.decoder.push(ids));
  }

  end(): void {
    this.onText(this.decoder.flush());
    this.decoder.reset();
    this.nextIsPrompt = true;
  }

  private onText(t: string): void {
    if (t.length === 0) return;
    this.text += t;
    this.callback?.(t);
  }
}
