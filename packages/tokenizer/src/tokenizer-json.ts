import type { AddedTokenSpec, TokenizerBackend } from './backend.js';
import { TokenizerError, TokenizerErrorCode } from './errors.js';
import { PairHeap } from './pair-heap.js';
import { PairTable } from './pair-table.js';
import { pushUtf8, toWellFormed } from './utf8.js';

type Json = Record<string, unknown>;

function invalid(message: string): never {
  throw new TokenizerError(TokenizerErrorCode.INVALID_TOKENIZER_JSON, message);
}
function unsupported(message: string): never {
  throw new TokenizerError(TokenizerErrorCode.UNSUPPORTED_MODEL, message);
}
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

// ------------------------------------------------------------------ normalizers

type StrFn = (s: string) => string;

function patternString(p: unknown, where: string): string {
  if (isObj(p) && typeof p.String === 'string') return p.String;
  if (isObj(p) && 'Regex' in p) unsupported(`${where}: Regex patterns are not supported (only {"String": …})`);
  return invalid(`${where}: pattern must be {"String": …}, got ${JSON.stringify(p)}`);
}

function buildNormalizer(n: unknown): StrFn | null {
  if (n === null || n === undefined) return null;
  if (!isObj(n)) invalid(`normalizer must be an object or null, got ${JSON.stringify(n)}`);
  switch (n.type) {
    case 'Sequence': {
      if (!Array.isArray(n.normalizers)) invalid('normalizer Sequence without a "normalizers" array');
      const fns = n.normalizers.map(buildNormalizer).filter((f): f is StrFn => f !== null);
      return (s) => fns.reduce((acc, f) => f(acc), s);
    }
    case 'Prepend': {
      if (typeof n.prepend !== 'string') invalid('Prepend normalizer without a "prepend" string');
      const p = n.prepend;
      return (s) => (s.length > 0 ? p + s : s);
    }
    case 'Replace': {
      const from = patternString(n.pattern, 'Replace normalizer');
      if (typeof n.content !== 'string') invalid('Replace normalizer without a "content" string');
      const to = n.content;
      return (s) => s.replaceAll(from, to);
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD': {
      const form = n.type;
      return (s) => s.normalize(form);
    }
    case 'Lowercase':
      return (s) => s.toLowerCase();
    case 'Strip': {
      const left = n.strip_left !== false;
      const right = n.strip_right !== false;
      return (s) => (left && right ? s.trim() : left ? s.trimStart() : right ? s.trimEnd() : s);
    }
    default:
      return unsupported(`normalizer type ${JSON.stringify(n.type)} is not supported`);
  }
}

// ------------------------------------------------------------------ pre-tokenizers

/** Splits a normalized chunk into words; `atStart` = the chunk starts the input. */
type PreTok = (s: string, atStart: boolean) => string[];

function buildPreTokenizer(p: unknown): PreTok | null {
  if (p === null || p === undefined) return null;
  if (!isObj(p)) invalid(`pre_tokenizer must be an object or null, got ${JSON.stringify(p)}`);
  switch (p.type) {
    case 'Sequence': {
      if (!Array.isArray(p.pretokenizers)) invalid('pre_tokenizer Sequence without a "pretokenizers" array');
      const fns = p.pretokenizers.map(buildPreTokenizer).filter((f): f is PreTok => f !== null);
      return (s, atStart) => fns.reduce<string[]>((words, f) => words.flatMap((w, i) => f(w, atStart && i === 0)), [s]);
    }
    case 'Metaspace': {
      const rep = typeof p.replacement === 'string' ? p.replacement : '\u2581';
      let scheme: string;
      if (typeof p.prepend_scheme === 'string') scheme = p.prepend_scheme;
      else scheme = p.add_prefix_space === false ? 'never' : 'always';
      if (!['always', 'first', 'never'].includes(scheme))
        invalid(`Metaspace prepend_scheme ${JSON.stringify(scheme)} is not always/first/never`);
      const split = p.split !== false;
      return (s, atStart) => {
        let t = s.replaceAll(' ', rep);
        if (t.length > 0 && !t.startsWith(rep) && (scheme === 'always' || (scheme === 'first' && atStart))) t = rep + t;
        if (!split) return t.length > 0 ? [t] : [];
        // MergedWithNext: every replacement char starts a new word.
        const words: string[] = [];
        let last = 0;
        for (let i = 1; i < t.length; i++) {
          if (t.startsWith(rep, i)) {
            words.push(t.slice(last, i));
            last = i;
          }
        }
        if (t.length > last) words.push(t.slice(last));
        return words;
      };
    }
    default:
      return unsupported(`pre_tokenizer type ${JSON.stringify(p.type)} is not supported`);
  }
}

// ------------------------------------------------------------------ decoders

type Dec = (tokens: string[]) => string[];
const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function buildDecoder(d: unknown): Dec | null {
  if (d === null || d === undefined) return null;
  if (!isObj(d)) invalid(`decoder must be an object or null, got ${JSON.stringify(d)}`);
  switch (d.type) {
    case 'Sequence': {
      if (!Array.isArray(d.decoders)) invalid('decoder Sequence without a "decoders" array');
      const fns = d.decoders.map(buildDecoder).filter((f): f is Dec => f !== null);
      return (t) => fns.reduce((acc, f) => f(acc), t);
    }
    case 'Replace': {
      const from = patternString(d.pattern, 'Replace decoder');
      if (typeof d.content !== 'string') invalid('Replace decoder without a "content" string');
      const to = d.content;
      return (t) => t.map((x) => x.replaceAll(from, to));
    }
    case 'ByteFallback':
      // tokenizers' ByteFallback: a run of <0xNN> tokens becomes its UTF-8 text, or one U+FFFD
      // per byte token when the run is not valid UTF-8.
      return (tokens) => {
        const out: string[] = [];
        let run: number[] = [];
        const flush = (): void => {
          if (run.length === 0) return;
          try {
            out.push(strictUtf8.decode(new Uint8Array(run)));
          } catch {
            for (let i = 0; i < run.length; i++) out.push('\uFFFD');
          }
          run = [];
        };
        for (const t of tokens) {
          const m = BYTE_TOKEN.exec(t);
          if (m) run.push(parseInt(m[1]!, 16));
          else {
            flush();
            out.push(t);
          }
        }
        flush();
        return out;
      };
    case 'Fuse':
      return (t) => [t.join('')];
    case 'Strip': {
      const c = typeof d.content === 'string' ? d.content : ' ';
      const start = typeof d.start === 'number' ? d.start : 0;
      const stop = typeof d.stop === 'number' ? d.stop : 0;
      return (t) =>
        t.map((x) => {
          let s = x;
          for (let i = 0; i < start && s.startsWith(c); i++) s = s.slice(c.length);
          for (let i = 0; i < stop && s.endsWith(c); i++) s = s.slice(0, s.length - c.length);
          return s;
        });
    }
    case 'Metaspace': {
      const rep = typeof d.replacement === 'string' ? d.replacement : '\u2581';
      const scheme =
        typeof d.prepend_scheme === 'string' ? d.prepend_scheme : d.add_prefix_space === false ? 'never' : 'always';
      return (t) =>
        t.map((x, i) => {
          let s = x.replaceAll(rep, ' ');
          if (i === 0 && scheme !== 'never' && s.startsWith(' ')) s = s.slice(1);
          return s;
        });
    }
    default:
      return unsupported(`decoder type ${JSON.stringify(d.type)} is not supported`);
  }
}

// ------------------------------------------------------------------ model

/**
 * Hugging Face `tokenizer.json` reader for BPE tokenizers of the LLaMA family, written from the
 * documented format of the `tokenizers` library: model (BPE: vocab, merges in the "a b" or
 * ["a", "b"] form, unk_token, byte_fallback, fuse_unk, ignore_merges), normalizer (Sequence,
 * Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase, Strip), pre_tokenizer (Metaspace, Sequence),
 * decoder (Sequence, Replace, ByteFallback, Fuse, Strip, Metaspace), added_tokens and the
 * TemplateProcessing post-processor (to learn whether BOS/EOS are added).
 *
 * BPE follows `tokenizers`' `Word::merge_all`: the pair with the lowest merge rank merges first,
 * ties to the leftmost. Zero merges is a load error (reliability checklist B19) — never a silent
 * fall-back to characters/bytes. Anything else this reader does not implement is a typed
 * `UNSUPPORTED_MODEL` error, not a silent approximation.
 */
export class HfBpeModel implements TokenizerBackend {
  readonly vocabSize: number;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly addedTokens: AddedTokenSpec[];
  readonly template: { add_bos: boolean; add_eos: boolean } | null;
  readonly byteFallback: boolean;
  readonly fuseUnk: boolean;
  readonly ignoreMerges: boolean;
  /** Number of merge rules. */
  readonly mergeCount: number;

  private readonly vocab = new Map<string, number>();
  private readonly pieces: string[];
  private readonly merges: PairTable;
  private readonly byteIds: Int32Array | null;
  private readonly normalizer: StrFn | null;
  private readonly preTokenizer: PreTok | null;
  private readonly decoder: Dec | null;
  private readonly heap = new PairHeap();

  /** Parses tokenizer.json text or an already parsed object. */
  static fromJson(json: string | object): HfBpeModel {
    let obj: unknown = json;
    if (typeof json === 'string') {
      try {
        obj = JSON.parse(json);
      } catch (e) {
        throw new TokenizerError(
          TokenizerErrorCode.INVALID_TOKENIZER_JSON,
          `tokenizer.json is not valid JSON: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    if (!isObj(obj)) invalid('tokenizer.json must be a JSON object');
    return new HfBpeModel(obj);
  }

  private constructor(j: Json) {
    const model = j.model;
    if (!isObj(model)) invalid('tokenizer.json has no "model" object');
    if (model.type !== undefined && model.type !== 'BPE')
      unsupported(`model.type is ${JSON.stringify(model.type)}; only BPE is supported`);
    if (!isObj(model.vocab)) invalid('model.vocab must be an object mapping token → id');
    if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0)
      unsupported(`model.dropout = ${String(model.dropout)} (stochastic BPE) is not supported`);
    for (const k of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
      if (model[k] !== undefined && model[k] !== null && model[k] !== '')
        unsupported(`model.${k} = ${JSON.stringify(model[k])} is not supported`);
    }
    let maxId = -1;
    for (const [tok, id] of Object.entries(model.vocab)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
        invalid(`model.vocab["${tok}"] = ${JSON.stringify(id)}, expected a non-negative integer id`);
      this.vocab.set(tok, id);
      if (id > maxId) maxId = id;
    }
    if (this.vocab.size === 0) invalid('model.vocab is empty');

    // added tokens
    const added: AddedTokenSpec[] = [];
    if (j.added_tokens !== undefined && j.added_tokens !== null) {
      if (!Array.isArray(j.added_tokens)) invalid('added_tokens must be an array');
      for (const a of j.added_tokens) {
        if (
          !isObj(a) ||
          typeof a.id !== 'number' ||
          !Number.isInteger(a.id) ||
          a.id < 0 ||
          typeof a.content !== 'string' ||
          a.content.length === 0
        ) {
          invalid(`added_tokens entry ${JSON.stringify(a)} needs an integer "id" and a non-empty "content"`);
        }
        added.push({
          id: a.id,
          content: a.content,
          special: a.special === true,
          lstrip: a.lstrip === true,
          rstrip: a.rstrip === true,
          single_word: a.single_word === true,
          normalized: a.normalized === true,
        });
        if (a.id > maxId) maxId = a.id;
      }
    }
    this.addedTokens = added;
    this.vocabSize = maxId + 1;
    this.pieces = new Array<string>(this.vocabSize).fill('');
    const filled = new Uint8Array(this.vocabSize);
    for (const [tok, id] of this.vocab) {
      if (filled[id]) invalid(`id ${id} is used by two tokens ("${this.pieces[id]}" and "${tok}")`);
      this.pieces[id] = tok;
      filled[id] = 1;
    }
    for (const a of added) {
      if (filled[a.id] && this.pieces[a.id] !== a.content)
        invalid(`added token "${a.content}" has id ${a.id}, which the vocab gives to "${this.pieces[a.id]}"`);
      this.pieces[a.id] = a.content;
      filled[a.id] = 1;
    }
    for (let i = 0; i < this.vocabSize; i++)
      if (!filled[i]) invalid(`ids are not contiguous: no token has id ${i} (vocab size ${this.vocabSize})`);

    // merges (B19: both forms; zero merges is an error)
    if (!Array.isArray(model.merges)) invalid('model.merges must be an array');
    if (model.merges.length === 0) {
      invalid(
        'model.merges is empty: a BPE tokenizer with zero merges would encode every text as single characters/bytes; refusing to load it',
      );
    }
    this.merges = new PairTable(model.merges.length);
    for (let rank = 0; rank < model.merges.length; rank++) {
      const m: unknown = model.merges[rank];
      let a: string;
      let b: string;
      if (typeof m === 'string') {
        const parts = m.split(' ');
        if (parts.length !== 2) invalid(`merges[${rank}] = ${JSON.stringify(m)}: expected "a b" (exactly one space)`);
        [a, b] = parts as [string, string];
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
        [a, b] = m as [string, string];
      } else {
        invalid(`merges[${rank}] = ${JSON.stringify(m)}: expected "a b" or ["a", "b"]`);
      }
      const ia = this.vocab.get(a);
      const ib = this.vocab.get(b);
      const im = this.vocab.get(a + b);
      if (ia === undefined || ib === undefined)
        invalid(`merges[${rank}] (${JSON.stringify(a)}, ${JSON.stringify(b)}) uses a token missing from the vocab`);
      if (im === undefined)
        invalid(`merges[${rank}]: the merged token ${JSON.stringify(a + b)} is missing from the vocab`);
      this.merges.set(ia, ib, im, rank);
    }
    this.mergeCount = model.merges.length;

    this.byteFallback = model.byte_fallback === true;
    this.fuseUnk = model.fuse_unk === true;
    this.ignoreMerges = model.ignore_merges === true;
    const unkTok = typeof model.unk_token === 'string' ? model.unk_token : null;
    this.unkId =
      unkTok === null ? -1 : (this.lookup(unkTok) ?? invalid(`model.unk_token "${unkTok}" is not in the vocab`));
    if (this.byteFallback) {
      this.byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++)
        this.byteIds[b] = this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? -1;
    } else {
      this.byteIds = null;
    }
    this.normalizer = buildNormalizer(j.normalizer);
    this.preTokenizer = buildPreTokenizer(j.pre_tokenizer);
    this.decoder = buildDecoder(j.decoder);

    // Special ids: the LLaMA names, as added tokens or vocab entries.
    const idOf = (s: string): number => this.lookup(s) ?? -1;
    this.bosId = idOf('<s>');
    this.eosId = idOf('</s>');
    this.padId = -1;
    this.template = readTemplate(j.post_processor, this.pieces[this.bosId] ?? null, this.pieces[this.eosId] ?? null);
  }

  lookup(piece: string): number | undefined {
    const v = this.vocab.get(piece);
    if (v !== undefined) return v;
    for (const a of this.addedTokens) if (a.content === piece) return a.id;
    return undefined;
  }

  idToPiece(id: number): string {
    this.checkId(id);
    return this.pieces[id]!;
  }

  checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(
        TokenizerErrorCode.INVALID_TOKEN_ID,
        `token id ${String(id)} is not an integer in [0, ${this.vocabSize})`,
        {
          details: { id, vocab_size: this.vocabSize },
        },
      );
    }
  }

  encodeChunk(text: string, atStart: boolean): number[] {
    let s = toWellFormed(text);
    if (this.normalizer) s = this.normalizer(s);
    const words = this.preTokenizer ? this.preTokenizer(s, atStart) : s.length > 0 ? [s] : [];
    const out: number[] = [];
    for (const w of words) this.encodeWord(w, out);
    return out;
  }

  private encodeWord(word: string, out: number[]): void {
    if (word.length === 0) return;
    if (this.ignoreMerges) {
      const whole = this.vocab.get(word);
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }
    // Initial symbols: characters; unknown ones → byte tokens (byte_fallback) or unk (fused).
    const ids: number[] = [];
    let prevUnk = false;
    for (const ch of word) {
      const id = this.vocab.get(ch);
      if (id !== undefined) {
        ids.push(id);
        prevUnk = false;
        continue;
      }
      if (this.byteIds !== null) {
        const bytes: number[] = [];
        pushUtf8(ch.codePointAt(0)!, bytes);
        if (bytes.every((b) => this.byteIds![b]! >= 0)) {
          for (const b of bytes) ids.push(this.byteIds[b]!);
          prevUnk = false;
          continue;
        }
      }
      if (this.unkId < 0) {
        throw new TokenizerError(
          TokenizerErrorCode.INVALID_ARGUMENT,
          `character ${JSON.stringify(ch)} is not in the vocab and the tokenizer has no unk_token`,
        );
      }
      if (!(this.fuseUnk && prevUnk)) ids.push(this.unkId);
      prevUnk = true;
    }
    const n = ids.length;
    const alive = new Uint8Array(n).fill(1);
    const sid = Int32Array.from(ids);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap = this.heap;
    heap.reset(3 * n + 4);
    const merges = this.merges;
    const addPair = (l: number, r: number): void => {
      if (l < 0 || r < 0) return;
      const m = merges.get(sid[l]!, sid[r]!);
      if (m < 0) return;
      heap.push(merges.getAux(sid[l]!, sid[r]!), l, r, m, m);
    };
    for (let i = 0; i + 1 < n; i++) addPair(i, i + 1);
    while (heap.pop()) {
      const l = heap.topPos;
      if (!alive[l]) continue;
      const r = next[l]!;
      if (r < 0) continue;
      if (merges.get(sid[l]!, sid[r]!) !== heap.topAux) continue;
      sid[l] = heap.topAux;
      alive[r] = 0;
      const nr = next[r]!;
      next[l] = nr;
      if (nr >= 0) prev[nr] = l;
      addPair(prev[l]!, l);
      addPair(l, nr);
    }
    for (let i = 0; i >= 0; i = next[i]!) out.push(sid[i]!);
  }

  decodeChunk(ids: number[]): string {
    const tokens = ids.map((id) => this.idToPiece(id));
    return (this.decoder ? this.decoder(tokens) : tokens).join('');
  }
}

function readTemplate(
  pp: unknown,
  bos: string | null,
  eos: string | null,
): { add_bos: boolean; add_eos: boolean } | null {
  if (!isObj(pp)) return null;
  const procs = pp.type === 'Sequence' && Array.isArray(pp.processors) ? pp.processors : [pp];
  for (const p of procs) {
    if (!isObj(p) || p.type !== 'TemplateProcessing' || !Array.isArray(p.single)) continue;
    const single = p.single as unknown[];
    const specialAt = (i: number): string | null => {
      const e = single[i];
      return isObj(e) && isObj(e.SpecialToken) && typeof e.SpecialToken.id === 'string' ? e.SpecialToken.id : null;
    };
    return {
      add_bos: bos !== null && specialAt(0) === bos,
      add_eos: eos !== null && single.length > 1 && specialAt(single.length - 1) === eos,
    };
  }
  return null;
}
