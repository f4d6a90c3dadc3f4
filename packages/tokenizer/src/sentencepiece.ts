import type { AddedTokenSpec, TokenizerBackend } from './backend.js';
import { TokenizerError, TokenizerErrorCode } from './errors.js';
import { decodeModelProto, PieceType, type ModelProto, type SentencePiece } from './model-proto.js';
import { PairHeap } from './pair-heap.js';
import { PairTable } from './pair-table.js';
import { decodeBytesLikeSentencePiece, pushUtf8, toWellFormed } from './utf8.js';

export const SPACE_SYMBOL = '\u2581';

/**
 * SentencePiece BPE model (the algorithm of google/sentencepiece `bpe_model.cc` +
 * `normalizer.cc` + `sentencepiece_processor.cc`, re-implemented from its documented behaviour):
 *
 * - normalize: identity normalizer (LLaMA's `normalizer_spec.name = "identity"`), optional
 *   leading/trailing/duplicate space removal, dummy-prefix `▁`, spaces → `▁`;
 * - split into characters (user-defined symbols are matched first and never merged);
 * - repeatedly merge the adjacent pair whose concatenation is the highest-scoring piece, ties to
 *   the leftmost pair (a heap: O(n log n), reliability checklist B20);
 * - a symbol that is not a piece becomes `<unk>`, or with `byte_fallback` one `<0xNN>` per UTF-8 byte;
 * - decode: byte pieces are fused and decoded per character (invalid bytes → U+FFFD each), control
 *   pieces are invisible, `<unk>` → unk_surface, `▁` → space and the first `▁` (the dummy prefix) is
 *   dropped.
 *
 * Text is handled as JS strings; lone surrogates are replaced by U+FFFD first, exactly as
 * TextEncoder does when it turns the string into the UTF-8 SentencePiece would see.
 */
export class SentencePieceModel implements TokenizerBackend {
  readonly addedTokens: readonly AddedTokenSpec[] = [];
  readonly template = null;
  readonly proto: ModelProto;
  readonly vocabSize: number;
  readonly unkId: number;
  /** -1 when the model has no such piece. */
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly byteFallback: boolean;
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
  readonly unkSurface: string;

  private readonly pieceStr: string[];
  private readonly types: Uint8Array;
  private readonly scores: Float64Array;
  /** SentencePiece's `pieces_`: NORMAL, USER_DEFINED and UNUSED pieces (mergeable). */
  private readonly normal = new Map<string, number>();
  /** SentencePiece's `reserved_id_map_`: UNKNOWN, CONTROL and BYTE pieces. */
  private readonly reserved = new Map<string, number>();
  private readonly bmpChar = new Int32Array(65536).fill(-1);
  private readonly merges: PairTable;
  private readonly byteIds = new Int32Array(256);
  /** piece id → byte value for BYTE pieces, else -1. */
  private readonly byteValue: Int16Array;
  /** User-defined symbols by first UTF-16 unit, longest first (null when none). */
  private readonly userDefined: Map<number, string[]> | null;
  /**
   * Adjacent code-point pairs that occur inside some mergeable piece. Between two characters whose
   * pair is not here no merge can ever happen, so the text splits there into independent chunks
   * (identical result, smaller heaps, and a chunk cache). null disables chunking (models with
   * USER_DEFINED or UNUSED pieces, whose handling is not chunk-local).
   */
  private readonly bigrams: PairTable | null;
  private readonly chunkCache = new Map<string, number[]>();
  /**
   * Diagnostics: BPE work units performed so far (symbols created + agenda pushes + pops).
   * Deterministic, so tests can check that the work is near-linear in the input length (B20)
   * without timers.
   */
  workOps = 0;
  /** Cache encoded chunks (≤ 256 UTF-16 units, ≤ 65,536 entries). Results never depend on it. */
  useChunkCache = true;

  // Scratch buffers reused by encode (grown on demand).
  private symStart = new Int32Array(256);
  private symLen = new Int32Array(256);
  private symId = new Int32Array(256);
  private symPrev = new Int32Array(256);
  private symNext = new Int32Array(256);
  private symFreeze = new Uint8Array(256);
  private readonly heap = new PairHeap();

  static fromModelProto(bytes: Uint8Array | ArrayBuffer): SentencePieceModel {
    return new SentencePieceModel(decodeModelProto(bytes));
  }

  constructor(proto: ModelProto) {
    const t = proto.trainer_spec;
    const n = proto.normalizer_spec;
    if (t.model_type !== 'BPE') {
      throw new TokenizerError(
        TokenizerErrorCode.UNSUPPORTED_MODEL,
        `trainer_spec.model_type is ${t.model_type}; only BPE models (LLaMA) are supported`,
        { details: { model_type: t.model_type } },
      );
    }
    if (n.precompiled_charsmap.length > 0) {
      throw new TokenizerError(
        TokenizerErrorCode.UNSUPPORTED_MODEL,
        `normalizer_spec "${n.name}" has a ${n.precompiled_charsmap.length}-byte precompiled_charsmap; only the identity normalizer (LLaMA) is supported`,
      );
    }
    if (t.treat_whitespace_as_suffix) {
      throw new TokenizerError(
        TokenizerErrorCode.UNSUPPORTED_MODEL,
        'trainer_spec.treat_whitespace_as_suffix = true is not supported',
      );
    }
    this.proto = proto;
    const pieces = proto.pieces;
    const V = pieces.length;
    this.vocabSize = V;
    this.pieceStr = pieces.map((p) => p.piece);
    this.types = new Uint8Array(V);
    this.scores = new Float64Array(V);
    this.byteValue = new Int16Array(V).fill(-1);
    const users: string[] = [];
    let unk = -1;
    for (let i = 0; i < V; i++) {
      const p = pieces[i]!;
      this.types[i] = p.type;
      this.scores[i] = p.score;
      if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED) {
        this.normal.set(p.piece, i);
        if (p.piece.length === 1) this.bmpChar[p.piece.charCodeAt(0)] = i;
        if (p.type === PieceType.USER_DEFINED) users.push(p.piece);
      } else {
        this.reserved.set(p.piece, i);
        if (p.type === PieceType.UNKNOWN) unk = i;
        if (p.type === PieceType.BYTE) this.byteValue[i] = parseInt(p.piece.slice(3, 5), 16);
      }
    }
    this.unkId = unk;
    const controlId = (piece: string): number => {
      const id = this.pieceToId(piece);
      return id !== unk && (this.types[id] === PieceType.CONTROL || this.types[id] === PieceType.USER_DEFINED)
        ? id
        : -1;
    };
    this.bosId = controlId(t.bos_piece);
    this.eosId = controlId(t.eos_piece);
    this.padId = controlId(t.pad_piece);
    this.byteFallback = t.byte_fallback;
    this.addDummyPrefix = n.add_dummy_prefix;
    this.removeExtraWhitespaces = n.remove_extra_whitespaces;
    this.escapeWhitespaces = n.escape_whitespaces;
    this.unkSurface = t.unk_surface;
    for (let b = 0; b < 256; b++) {
      const name = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
      this.byteIds[b] = this.reserved.get(name) ?? unk;
    }
    if (users.length > 0) {
      const m = new Map<number, string[]>();
      for (const u of users) {
        const k = u.charCodeAt(0);
        const list = m.get(k) ?? [];
        list.push(u);
        m.set(k, list);
      }
      for (const list of m.values()) list.sort((a, b) => b.length - a.length);
      this.userDefined = m;
    } else {
      this.userDefined = null;
    }
    let chunkable = users.length === 0;
    for (const p of pieces) if (p.type === PieceType.UNUSED) chunkable = false;
    if (chunkable) {
      this.bigrams = new PairTable(V * 4);
      for (const piece of this.normal.keys()) {
        let prevCp = -1;
        for (const ch of piece) {
          const c = ch.codePointAt(0)!;
          if (prevCp >= 0) this.bigrams.set(prevCp, c, 1);
          prevCp = c;
        }
      }
    } else {
      this.bigrams = null;
    }
    // Merge table: every split of a mergeable piece into two mergeable pieces (at code-point
    // boundaries) maps (left id, right id) → piece id. This is exactly SentencePiece's test
    // "the concatenation of two adjacent symbols is a piece", without building substrings.
    this.merges = new PairTable(V * 4);
    for (const [piece, id] of this.normal) {
      for (let k = 1; k < piece.length; k++) {
        const c = piece.charCodeAt(k);
        if (c >= 0xdc00 && c <= 0xdfff) continue; // inside a surrogate pair
        const l = this.normal.get(piece.slice(0, k));
        if (l === undefined) continue;
        const r = this.normal.get(piece.slice(k));
        if (r === undefined) continue;
        this.merges.set(l, r, id);
      }
    }
  }

  // ---------------------------------------------------------------- vocabulary

  idToPiece(id: number): string {
    this.checkId(id);
    return this.pieceStr[id]!;
  }

  /** SentencePiece `PieceToId`: reserved pieces first, then mergeable ones, else unk. */
  pieceToId(piece: string): number {
    return this.reserved.get(piece) ?? this.normal.get(piece) ?? this.unkId;
  }

  /** The id of `piece`, or undefined when it is not in the vocabulary. */
  lookup(piece: string): number | undefined {
    return this.reserved.get(piece) ?? this.normal.get(piece);
  }

  score(id: number): number {
    this.checkId(id);
    return this.scores[id]!;
  }

  type(id: number): number {
    this.checkId(id);
    return this.types[id]!;
  }

  isControl(id: number): boolean {
    return this.types[id] === PieceType.CONTROL;
  }
  isUnknown(id: number): boolean {
    return id === this.unkId;
  }
  isByte(id: number): boolean {
    return this.types[id] === PieceType.BYTE;
  }
  /** Byte value of a BYTE piece, or -1. */
  byteOf(id: number): number {
    return this.byteValue[id] ?? -1;
  }

  /** A copy of the pieces (piece, score, type) in id order. */
  pieces(): SentencePiece[] {
    return this.proto.pieces.map((p) => ({ ...p }));
  }

  checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_TOKEN_ID,
        `token id ${String(id)} is not an integer in [0, ${this.vocabSize})`,
        { details: { id, vocab_size: this.vocabSize } },
      );
    }
  }

  // ---------------------------------------------------------------- normalize

  /** SentencePiece normalization (identity charsmap) of `text`, with `▁` for spaces. */
  normalize(text: string): string {
    if (text.length === 0) return '';
    const s = toWellFormed(text);
    const space = this.escapeWhitespaces ? SPACE_SYMBOL : ' ';
    if (!this.removeExtraWhitespaces) {
      const body = this.escapeWhitespaces ? s.replaceAll(' ', SPACE_SYMBOL) : s;
      return this.addDummyPrefix ? space + body : body;
    }
    let i = 0;
    while (i < s.length && s.charCodeAt(i) === 0x20) i++;
    if (i === s.length) return '';
    let out = this.addDummyPrefix ? space : '';
    let prevSpace = true;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 0x20) {
        if (prevSpace) continue;
        out += space;
        prevSpace = true;
      } else {
        out += s[i];
        prevSpace = false;
      }
    }
    while (out.endsWith(space)) out = out.slice(0, out.length - space.length);
    return out;
  }

  // ---------------------------------------------------------------- encode

  /** `sp.encode(text)`: ids without BOS/EOS. */
  encode(text: string): number[] {
    const out: number[] = [];
    this.encodeNormalized(this.normalize(text), out);
    return out;
  }

  /** `sp.encode(text, out_type=str)`. */
  encodeAsPieces(text: string): string[] {
    return this.encode(text).map((id) => this.pieceStr[id]!);
  }

  private ensureScratch(n: number): void {
    if (this.symStart.length >= n) return;
    let cap = this.symStart.length;
    while (cap < n) cap *= 2;
    this.symStart = new Int32Array(cap);
    this.symLen = new Int32Array(cap);
    this.symId = new Int32Array(cap);
    this.symPrev = new Int32Array(cap);
    this.symNext = new Int32Array(cap);
    this.symFreeze = new Uint8Array(cap);
  }

  /** BPE over an already normalized string; appends ids to `out`. */
  encodeNormalized(norm: string, out: number[]): void {
    const bigrams = this.bigrams;
    if (bigrams === null || norm.length < 2) {
      this.bpe(norm, out);
      return;
    }
    let start = 0;
    let prevCp = norm.codePointAt(0)!;
    let i = prevCp > 0xffff ? 2 : 1;
    while (i < norm.length) {
      const c = norm.codePointAt(i)!;
      if (bigrams.get(prevCp, c) < 0) {
        this.chunk(norm.slice(start, i), out);
        start = i;
      }
      prevCp = c;
      i += c > 0xffff ? 2 : 1;
    }
    this.chunk(norm.slice(start), out);
  }

  /** Empties the chunk cache (results never depend on it; useful for timing). */
  clearCache(): void {
    this.chunkCache.clear();
  }

  private chunk(s: string, out: number[]): void {
    let ids = this.useChunkCache ? this.chunkCache.get(s) : undefined;
    if (ids === undefined) {
      ids = [];
      this.bpe(s, ids);
      if (this.useChunkCache && s.length <= 256) {
        if (this.chunkCache.size >= 65536) this.chunkCache.clear();
        this.chunkCache.set(s, ids);
      }
    }
    // Without byte fallback, consecutive unknown pieces fuse into one <unk> — also across chunks.
    let k = 0;
    if (!this.byteFallback && ids[0] === this.unkId && out.length > 0 && out[out.length - 1] === this.unkId) k = 1;
    for (; k < ids.length; k++) out.push(ids[k]!);
  }

  private bpe(norm: string, out: number[]): void {
    const L = norm.length;
    if (L === 0) return;
    this.ensureScratch(L);
    const start = this.symStart;
    const len = this.symLen;
    const sid = this.symId;
    const prev = this.symPrev;
    const next = this.symNext;
    const freeze = this.symFreeze;
    const users = this.userDefined;

    // 1. split into characters (user-defined symbols first, frozen).
    let n = 0;
    for (let i = 0; i < L; ) {
      const c = norm.charCodeAt(i);
      let w = 1;
      let id = -1;
      let frozen = 0;
      const cands = users === null ? undefined : users.get(c);
      if (cands !== undefined) {
        for (const u of cands) {
          if (norm.startsWith(u, i)) {
            w = u.length;
            id = this.normal.get(u)!;
            frozen = 1;
            break;
          }
        }
      }
      if (frozen === 0) {
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < L) {
          w = 2;
          id = this.normal.get(norm.slice(i, i + 2)) ?? -1;
        } else {
          id = this.bmpChar[c]!;
        }
      }
      start[n] = i;
      len[n] = w;
      sid[n] = id;
      freeze[n] = frozen;
      prev[n] = n - 1;
      next[n] = n + 1;
      n++;
      i += w;
    }
    next[n - 1] = -1;
    this.workOps += n;

    // 2. merge by score (heap agenda).
    const heap = this.heap;
    heap.reset(3 * n + 4);
    let revMerge: Map<number, [string, string]> | null = null;
    const merges = this.merges;
    const scores = this.scores;
    const types = this.types;
    const addPair = (l: number, r: number): void => {
      if (l < 0 || r < 0 || freeze[l] === 1 || freeze[r] === 1) return;
      const a = sid[l]!;
      const b = sid[r]!;
      let m: number;
      if (a >= 0 && b >= 0) m = merges.get(a, b);
      else m = this.normal.get(norm.slice(start[l]!, start[r]! + len[r]!)) ?? -1;
      if (m < 0) return;
      heap.push(-scores[m]!, l, r, len[l]! + len[r]!, m);
      this.workOps++;
      if (types[m] === PieceType.UNUSED) {
        revMerge ??= new Map();
        revMerge.set(m, [norm.substr(start[l]!, len[l]!), norm.substr(start[r]!, len[r]!)]);
      }
    };
    for (let i = 0; i + 1 < n; i++) addPair(i, i + 1);
    while (heap.pop()) {
      this.workOps++;
      const l = heap.topPos;
      const r = heap.topRight;
      const ll = len[l]!;
      const lr = len[r]!;
      // Stale entry: one side was merged away or grew since the pair was pushed.
      if (ll === 0 || lr === 0 || ll + lr !== heap.topAux) continue;
      len[l] = ll + lr;
      sid[l] = heap.topId;
      const nr = next[r]!;
      next[l] = nr;
      if (nr >= 0) prev[nr] = l;
      len[r] = 0;
      addPair(prev[l]!, l);
      addPair(l, nr);
    }

    // 3. emit ids (resegment UNUSED pieces, byte fallback / unk merging).
    let prevUnk = false;
    const emit = (id: number, piece: string): void => {
      const unk = id === this.unkId;
      if (unk && this.byteFallback) {
        const bytes: number[] = [];
        for (const ch of piece) pushUtf8(ch.codePointAt(0)!, bytes);
        for (const b of bytes) out.push(this.byteIds[b]!);
      } else if (!(unk && prevUnk)) {
        out.push(id);
      }
      prevUnk = unk;
    };
    const resegment = (w: string): void => {
      const id = this.pieceToId(w);
      const rm = types[id] === PieceType.UNUSED ? revMerge?.get(id) : undefined;
      if (rm === undefined) {
        emit(id, w);
        return;
      }
      resegment(rm[0]);
      resegment(rm[1]);
    };
    for (let i = 0; i >= 0; i = next[i]!) {
      const id = sid[i]!;
      if (id >= 0 && types[id] !== PieceType.UNUSED) {
        emit(id, ''); // a mergeable piece: never unk, so its string is not needed
      } else {
        resegment(norm.substr(start[i]!, len[i]!));
      }
    }
  }

  encodeChunk(text: string): number[] {
    return this.encode(text);
  }

  decodeChunk(ids: number[]): string {
    return this.decode(ids);
  }

  // ---------------------------------------------------------------- decode

  /**
   * `sp.decode(ids)` (SentencePiece 0.1.97 `Decode`): consecutive byte pieces are fused and decoded
   * as UTF-8 (one U+FFFD per invalid byte), control pieces are invisible, `<unk>` becomes
   * `unk_surface` (" ⁇ "), `▁` becomes a space, and the leading `▁` of the first visible piece
   * (the dummy prefix) is removed. Throws `INVALID_TOKEN_ID` for ids outside [0, vocab_size).
   */
  decode(ids: ArrayLike<number>): string {
    for (let i = 0; i < ids.length; i++) this.checkId(ids[i]!);
    let text = '';
    let isBosWs = true;
    let bosWsSeen = false;
    const bytes: number[] = [];
    const stripFirst = this.addDummyPrefix || this.removeExtraWhitespaces;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const bv = this.byteValue[id]!;
      if (bv >= 0) {
        bytes.push(bv);
        continue;
      }
      if (bytes.length > 0) {
        text += decodeBytesLikeSentencePiece(bytes);
        bytes.length = 0;
      }
      if (bosWsSeen || text.length > 0) isBosWs = false;
      const type = this.types[id];
      if (type === PieceType.CONTROL) {
        bosWsSeen = false;
        continue;
      }
      if (id === this.unkId) {
        text += this.unkSurface;
        bosWsSeen = false;
        continue;
      }
      let piece = this.pieceStr[id]!;
      let consumed = false;
      if (isBosWs && stripFirst && piece.startsWith(SPACE_SYMBOL)) {
        piece = piece.slice(1);
        consumed = !this.removeExtraWhitespaces;
      }
      bosWsSeen = consumed;
      text += piece.includes(SPACE_SYMBOL) ? piece.replaceAll(SPACE_SYMBOL, ' ') : piece;
    }
    if (bytes.length > 0) text += decodeBytesLikeSentencePiece(bytes);
    return text;
  }
}
