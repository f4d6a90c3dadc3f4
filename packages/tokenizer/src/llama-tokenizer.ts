import type { AddedTokenSpec, TokenizerBackend } from './backend.js';
import { TokenizerError, TokenizerErrorCode } from './errors.js';
import { SentencePieceModel } from './sentencepiece.js';
import { HfBpeModel } from './tokenizer-json.js';

/** A piece of prompt text; `trusted: false` text can never produce special tokens or image slots. */
export interface PromptPart {
  text: string;
  trusted: boolean;
}

export interface LlamaTokenizerOptions {
  /** Prepend BOS when `add_special_tokens` (default: from tokenizer.json's post-processor, else true). */
  add_bos_token?: boolean;
  /** Append EOS when `add_special_tokens` (default: from tokenizer.json's post-processor, else false). */
  add_eos_token?: boolean;
  /** Pad token; `MplugOwlTokenizer` and the mPLUG-Owl2 trainer use `<unk>`. Default: none. */
  pad_token?: string | null;
  /** Default of `encode`'s `split_special_tokens` (true: special-token text is literal). */
  split_special_tokens?: boolean;
}

export interface EncodeOptions {
  /** Add BOS/EOS as configured (HF `add_special_tokens`, default true). */
  add_special_tokens?: boolean;
  /**
   * HF's option name: true (owlet's default) keeps `<s>`, `</s>`, `<unk>` in the text as literal
   * text; false parses them into special ids like HF-slow `LlamaTokenizer` does.
   */
  split_special_tokens?: boolean;
}

export interface DecodeOptions {
  /** Drop BOS/EOS/UNK (and tokenizer.json special added tokens). Default false. */
  skip_special_tokens?: boolean;
}

export type TokenIds = ArrayLike<number> | ArrayLike<bigint> | Iterable<number | bigint>;

interface SpecialTok extends AddedTokenSpec {}

/** Converts user-supplied ids (numbers or bigints) to numbers, validating each (B22). */
export function toIdArray(ids: TokenIds, vocabSize: number): number[] {
  const arr = Array.from(ids as Iterable<number | bigint>);
  const out = new Array<number>(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n >= vocabSize) {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_TOKEN_ID,
        `token id ${String(v)} at position ${i} is not an integer in [0, ${vocabSize})`,
        { details: { id: typeof v === 'bigint' ? v.toString() : v, position: i, vocab_size: vocabSize } },
      );
    }
    out[i] = n;
  }
  return out;
}

/**
 * `LlamaTokenizer`: the slow, legacy Hugging Face `LlamaTokenizer` (transformers 4.28–4.33) over a
 * SentencePiece model (tokenizer.model) or a tokenizer.json BPE model.
 *
 * Special tokens. HF-slow splits the literal texts `<s>`, `</s>`, `<unk>` out of the input as
 * special tokens (no whitespace stripping) and SentencePiece-encodes every other chunk separately
 * (each chunk gets its own dummy-prefix `▁`). That is what the mPLUG-Owl pipelines do. owlet makes
 * it opt-in: `encode(text)` treats text as literal (`split_special_tokens: true`, the default),
 * `encode(text, { split_special_tokens: false })` parses special tokens like HF-slow. Prompt
 * builders that mix trusted template text with untrusted user text use `encodeParts`, which parses
 * special tokens only inside trusted parts (reliability checklist B24).
 */
export class LlamaTokenizer {
  readonly backend: TokenizerBackend;
  readonly add_bos_token: boolean;
  readonly add_eos_token: boolean;
  readonly split_special_tokens: boolean;
  readonly vocab_size: number;
  readonly bos_token_id: number | null;
  readonly eos_token_id: number | null;
  readonly unk_token_id: number | null;
  readonly pad_token_id: number | null;
  /** Tokens matched in text when special-token parsing is on, longest first. */
  private readonly specials: SpecialTok[];
  /** Non-special added tokens (tokenizer.json), always matched. */
  private readonly plainAdded: SpecialTok[];
  private readonly specialIds: Set<number>;

  /** Loads `tokenizer.model` bytes (SentencePiece ModelProto). */
  static fromModelProto(bytes: Uint8Array | ArrayBuffer, options: LlamaTokenizerOptions = {}): LlamaTokenizer {
    return new LlamaTokenizer(SentencePieceModel.fromModelProto(bytes), options);
  }

  /** Loads a Hugging Face `tokenizer.json` (text or parsed object). */
  static fromTokenizerJson(json: string | object, options: LlamaTokenizerOptions = {}): LlamaTokenizer {
    return new LlamaTokenizer(HfBpeModel.fromJson(json), options);
  }

  constructor(backend: TokenizerBackend, options: LlamaTokenizerOptions = {}) {
    this.backend = backend;
    this.vocab_size = backend.vocabSize;
    this.add_bos_token = options.add_bos_token ?? backend.template?.add_bos ?? true;
    this.add_eos_token = options.add_eos_token ?? backend.template?.add_eos ?? false;
    this.split_special_tokens = options.split_special_tokens ?? true;
    const opt = (id: number): number | null => (id >= 0 ? id : null);
    this.bos_token_id = opt(backend.bosId);
    this.eos_token_id = opt(backend.eosId);
    this.unk_token_id = opt(backend.unkId);
    let pad = backend.padId;
    if (options.pad_token !== undefined && options.pad_token !== null) {
      const id = backend.lookup(options.pad_token);
      if (id === undefined)
        throw new TokenizerError(
          TokenizerErrorCode.INVALID_ARGUMENT,
          `pad_token "${options.pad_token}" is not in the vocabulary`,
        );
      pad = id;
    } else if (options.pad_token === null) {
      pad = -1;
    }
    this.pad_token_id = opt(pad);

    const specials = new Map<string, SpecialTok>();
    const plain: SpecialTok[] = [];
    for (const a of backend.addedTokens) {
      if (a.special) specials.set(a.content, a);
      else plain.push(a);
    }
    for (const id of [backend.unkId, backend.bosId, backend.eosId, pad]) {
      if (id < 0) continue;
      const content = backend.idToPiece(id);
      if (!specials.has(content)) {
        specials.set(content, {
          id,
          content,
          special: true,
          lstrip: false,
          rstrip: false,
          single_word: false,
          normalized: false,
        });
      }
    }
    this.specials = [...specials.values()].sort((a, b) => b.content.length - a.content.length);
    this.plainAdded = plain.sort((a, b) => b.content.length - a.content.length);
    this.specialIds = new Set(this.specials.map((s) => s.id));
  }

  get bos_token(): string | null {
    return this.bos_token_id === null ? null : this.backend.idToPiece(this.bos_token_id);
  }
  get eos_token(): string | null {
    return this.eos_token_id === null ? null : this.backend.idToPiece(this.eos_token_id);
  }
  get unk_token(): string | null {
    return this.unk_token_id === null ? null : this.backend.idToPiece(this.unk_token_id);
  }
  get pad_token(): string | null {
    return this.pad_token_id === null ? null : this.backend.idToPiece(this.pad_token_id);
  }
  get all_special_ids(): number[] {
    return [...this.specialIds];
  }
  get all_special_tokens(): string[] {
    return this.specials.map((s) => s.content);
  }

  // ------------------------------------------------------------------ encode

  /** Text → ids (HF `tokenizer.encode`). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new TokenizerError(TokenizerErrorCode.INVALID_ARGUMENT, `encode() expects a string, got ${typeof text}`);
    }
    const parse = !(options.split_special_tokens ?? this.split_special_tokens);
    return this.encodeParts([{ text, trusted: parse }], options);
  }

  /**
   * Encodes a prompt assembled from parts as one text (SentencePiece chunking spans parts), but
   * recognises special tokens only when they lie entirely inside a trusted part.
   */
  encodeParts(parts: readonly PromptPart[], options: Pick<EncodeOptions, 'add_special_tokens'> = {}): number[] {
    const addSpecial = options.add_special_tokens ?? true;
    const ids: number[] = [];
    if (addSpecial && this.add_bos_token && this.bos_token_id !== null) ids.push(this.bos_token_id);
    const text = parts.map((p) => p.text).join('');
    const segments = this.splitOnAddedTokens(text, parts);
    for (const seg of segments) {
      if (typeof seg === 'number') ids.push(seg);
      else if (seg.text.length > 0) for (const id of this.backend.encodeChunk(seg.text, seg.start === 0)) ids.push(id);
    }
    if (addSpecial && this.add_eos_token && this.eos_token_id !== null) ids.push(this.eos_token_id);
    return ids;
  }

  /** Text → token strings (HF `tokenize`, no BOS). */
  tokenize(text: string, options: Omit<EncodeOptions, 'add_special_tokens'> = {}): string[] {
    return this.encode(text, { ...options, add_special_tokens: false }).map((id) => this.backend.idToPiece(id));
  }

  /** Splits text into plain-text segments and ids of matched added/special tokens. */
  private splitOnAddedTokens(
    text: string,
    parts: readonly PromptPart[],
  ): Array<number | { text: string; start: number }> {
    // Trusted ranges [start, end) in `text`.
    const trusted: Array<[number, number]> = [];
    let off = 0;
    for (const p of parts) {
      if (p.trusted && p.text.length > 0) trusted.push([off, off + p.text.length]);
      off += p.text.length;
    }
    const isTrusted = (a: number, b: number): boolean => trusted.some(([s, e]) => s <= a && b <= e);
    const candidates =
      trusted.length > 0
        ? [...this.specials, ...this.plainAdded].sort((a, b) => b.content.length - a.content.length)
        : this.plainAdded;
    const out: Array<number | { text: string; start: number }> = [];
    if (candidates.length === 0) {
      out.push({ text, start: 0 });
      return out;
    }
    let segStart = 0;
    let pendingLstrip = false;
    for (let i = 0; i < text.length; ) {
      let hit: SpecialTok | null = null;
      for (const c of candidates) {
        if (text.startsWith(c.content, i) && (!c.special || isTrusted(i, i + c.content.length))) {
          if (c.single_word && !isWordBoundary(text, i, i + c.content.length)) continue;
          hit = c;
          break;
        }
      }
      if (hit === null) {
        i++;
        continue;
      }
      let before = text.slice(segStart, i);
      if (pendingLstrip) before = before.trimStart();
      if (hit.lstrip) before = before.trimEnd();
      out.push({ text: before, start: segStart });
      out.push(hit.id);
      i += hit.content.length;
      segStart = i;
      pendingLstrip = hit.rstrip;
    }
    let rest = text.slice(segStart);
    if (pendingLstrip) rest = rest.trimStart();
    out.push({ text: rest, start: segStart });
    return out;
  }

  // ------------------------------------------------------------------ decode

  /**
   * ids → text (HF-slow `decode`). Non-special runs decode as SentencePiece does (byte pieces fused,
   * one U+FFFD per invalid byte, dummy-prefix space dropped). With `skip_special_tokens: false`,
   * special tokens appear as their text with the legacy rule of transformers 4.28–4.33
   * (`convert_tokens_to_string`): before a special token that follows a non-special one (not at
   * position 0), a space is prepended to the decoded run. Invalid ids throw `INVALID_TOKEN_ID`.
   */
  decode(ids: TokenIds, options: DecodeOptions = {}): string {
    const arr = toIdArray(ids, this.vocab_size);
    const skip = options.skip_special_tokens ?? false;
    if (skip) return this.backend.decodeChunk(arr.filter((id) => !this.specialIds.has(id)));
    let out = '';
    let current: number[] = [];
    let prevIsSpecial = false;
    for (const [i, id] of arr.entries()) {
      if (this.specialIds.has(id)) {
        if (!prevIsSpecial && i !== 0) out += ' ';
        out += this.backend.decodeChunk(current) + this.backend.idToPiece(id);
        prevIsSpecial = true;
        current = [];
      } else {
        current.push(id);
        prevIsSpecial = false;
      }
    }
    return out + this.backend.decodeChunk(current);
  }

  batch_decode(batch: readonly TokenIds[], options: DecodeOptions = {}): string[] {
    return batch.map((ids) => this.decode(ids, options));
  }

  isSpecialId(id: number): boolean {
    return this.specialIds.has(id);
  }

  convert_ids_to_tokens(ids: TokenIds): string[] {
    return toIdArray(ids, this.vocab_size).map((id) => this.backend.idToPiece(id));
  }

  /** Unknown tokens map to unk (HF-slow behaviour); without an unk token they throw. */
  convert_tokens_to_ids(tokens: readonly string[]): number[] {
    return tokens.map((t) => {
      const id = this.backend.lookup(t) ?? this.unk_token_id;
      if (id === null)
        throw new TokenizerError(
          TokenizerErrorCode.INVALID_ARGUMENT,
          `token "${t}" is not in the vocabulary and there is no unk token`,
        );
      return id;
    });
  }
}

function isWordBoundary(text: string, a: number, b: number): boolean {
  const word = /[\p{L}\p{N}_]/u;
  return (a === 0 || !word.test(text.charAt(a - 1))) && (b >= text.length || !word.test(text.charAt(b)));
}
