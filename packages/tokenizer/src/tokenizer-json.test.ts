import { beforeAll, describe, expect, it } from 'vitest';

import { generateCorpus } from './corpus.test-helpers.js';
import { isTokenizerError } from './errors.js';
import { LlamaTokenizer } from './llama-tokenizer.js';
import { decodeModelProto, PieceType, type ModelProto } from './model-proto.js';
import { llamaModelBytes, loadFixtureJson } from './oracle.test-helpers.js';
import { HfBpeModel } from './tokenizer-json.js';

interface PlainCase {
  text: string;
  sp_ids: number[];
  hf_ids: number[];
  hf_ids_with_bos: number[];
  hf_decoded_skip_special: string;
}
const fx = loadFixtureJson<{ cases: PlainCase[] }>('tokenizer/tokenizer_plain.json');

/**
 * Builds a LLaMA tokenizer.json from the ModelProto pieces the way transformers' LlamaConverter
 * does (legacy): vocab = every piece; merges = for every mergeable piece, each split into two
 * pieces, ordered by the merged piece's score (desc), then by the ids of the halves; normalizer
 * Prepend("▁") + Replace(" " → "▁"); decoder Replace/ByteFallback/Fuse/Strip; BOS template.
 */
function buildTokenizerJson(m: ModelProto, mergeForm: 'string' | 'pair'): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  m.pieces.forEach((p, i) => {
    vocab[p.piece] = i;
  });
  const mergeable = new Map<string, number>();
  m.pieces.forEach((p, i) => {
    if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED) mergeable.set(p.piece, i);
  });
  const merges: Array<[string, string, number, number, number]> = [];
  for (const [piece, id] of mergeable) {
    const cps = Array.from(piece);
    const local: Array<[string, string, number, number, number]> = [];
    for (let k = 1; k < cps.length; k++) {
      const l = cps.slice(0, k).join('');
      const r = cps.slice(k).join('');
      const il = mergeable.get(l);
      const ir = mergeable.get(r);
      if (il !== undefined && ir !== undefined) local.push([l, r, m.pieces[id]!.score, il, ir]);
    }
    local.sort((a, b) => a[3] - b[3] || a[4] - b[4]);
    merges.push(...local);
  }
  merges.sort((a, b) => b[2] - a[2]); // stable: ties keep id order, as Python's sorted()
  const special = (id: number) => ({
    id,
    content: m.pieces[id]!.piece,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0), special(1), special(2)],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '\u2581' },
        { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: {},
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab,
      merges: merges.map(([a, b]) => (mergeForm === 'string' ? `${a} ${b}` : [a, b])),
    },
  };
}

let proto: ModelProto;
let spTok: LlamaTokenizer;
let jsonStr: LlamaTokenizer;
let jsonPair: LlamaTokenizer;
let built: Record<string, unknown>;

beforeAll(() => {
  proto = decodeModelProto(llamaModelBytes());
  spTok = LlamaTokenizer.fromModelProto(llamaModelBytes());
  built = buildTokenizerJson(proto, 'string');
  jsonStr = LlamaTokenizer.fromTokenizerJson(JSON.stringify(built));
  jsonPair = LlamaTokenizer.fromTokenizerJson(buildTokenizerJson(proto, 'pair'));
});

describe('tokenizer.json (HF BPE) reader', () => {
  it('reads vocab, merges, specials and the BOS template', () => {
    const m = jsonStr.backend as HfBpeModel;
    expect(m.vocabSize).toBe(32000);
    expect(m.mergeCount).toBeGreaterThan(30_000);
    expect(m.byteFallback).toBe(true);
    expect([jsonStr.bos_token_id, jsonStr.eos_token_id, jsonStr.unk_token_id]).toEqual([1, 2, 0]);
    expect(jsonStr.add_bos_token).toBe(true);
    expect(jsonStr.add_eos_token).toBe(false);
  });

  it('B19: merges as "a b" and as ["a","b"] give the same ids as tokenizer.model on every fixture', () => {
    for (const c of fx.cases) {
      const name = JSON.stringify(c.text);
      expect(jsonStr.encode(c.text, { split_special_tokens: false, add_special_tokens: false }), name).toEqual(
        c.hf_ids,
      );
      expect(jsonPair.encode(c.text, { split_special_tokens: false }), name).toEqual(c.hf_ids_with_bos);
      expect(jsonStr.encode(c.text, { add_special_tokens: false }), name).toEqual(c.sp_ids);
      expect(jsonStr.decode(c.hf_ids_with_bos, { skip_special_tokens: true }), name).toBe(c.hf_decoded_skip_special);
    }
  });

  it('same ids as tokenizer.model on 3,000 generated strings; decode agrees on valid text', () => {
    for (const s of generateCorpus(3000, 99)) {
      const want = spTok.encode(s);
      const got = jsonStr.encode(s);
      if (got.length !== want.length || got.some((v, i) => v !== want[i])) expect(got, JSON.stringify(s)).toEqual(want);
      expect(jsonStr.decode(got), JSON.stringify(s)).toBe(spTok.decode(want));
    }
  });

  it('B19: zero merges is a load error, never a silent byte/char fallback', () => {
    const zero = { ...built, model: { ...(built.model as object), merges: [] } };
    let err: unknown = null;
    try {
      LlamaTokenizer.fromTokenizerJson(zero);
    } catch (e) {
      err = e;
    }
    expect(isTokenizerError(err, 'INVALID_TOKENIZER_JSON')).toBe(true);
    expect((err as Error).message).toMatch(/zero merges|merges is empty/);
  });

  it('malformed files give typed errors naming the problem', () => {
    const model = built.model as Record<string, unknown>;
    const bad: Array<[unknown, string, RegExp]> = [
      ['{not json', 'INVALID_TOKENIZER_JSON', /not valid JSON/],
      [{}, 'INVALID_TOKENIZER_JSON', /no "model"/],
      [{ ...built, model: { ...model, merges: ['a b c'] } }, 'INVALID_TOKENIZER_JSON', /exactly one space/],
      [
        { ...built, model: { ...model, merges: [['\u2581t', 'zzzz-not-a-token']] } },
        'INVALID_TOKENIZER_JSON',
        /missing from the vocab/,
      ],
      [{ ...built, model: { ...model, type: 'Unigram' } }, 'UNSUPPORTED_MODEL', /only BPE/],
      [{ ...built, pre_tokenizer: { type: 'ByteLevel' } }, 'UNSUPPORTED_MODEL', /ByteLevel/],
      [{ ...built, model: { ...model, vocab: { a: -1 } } }, 'INVALID_TOKENIZER_JSON', /non-negative integer/],
    ];
    for (const [json, code, msg] of bad) {
      let err: unknown = null;
      try {
        HfBpeModel.fromJson(json as object);
      } catch (e) {
        err = e;
      }
      expect(isTokenizerError(err), JSON.stringify(json).slice(0, 60)).toBe(true);
      expect((err as { code: string }).code).toBe(code);
      expect((err as Error).message).toMatch(msg);
    }
  });

  it('Metaspace pre-tokenizer (prepend_scheme "first", split) encodes like the legacy normalizer on plain text', () => {
    const meta = {
      ...built,
      normalizer: null,
      pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
      decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
    };
    const t = LlamaTokenizer.fromTokenizerJson(meta);
    for (const c of fx.cases.slice(0, 120)) {
      // HF Metaspace prepends ▁ only when the text does not already start with one (unlike
      // SentencePiece's dummy prefix), so texts starting with a space differ by design.
      if (c.text.includes('<') || c.text.startsWith(' ') || c.text.startsWith('\u2581')) continue;
      expect(t.encode(c.text, { add_special_tokens: false }), JSON.stringify(c.text)).toEqual(c.sp_ids);
    }
    expect(t.encode(' x', { add_special_tokens: false })).toEqual(spTok.encode('x', { add_special_tokens: false }));
    // "first": a chunk after a special token gets no ▁ (legacy=False behaviour)
    const ids = t.encode('<s>hello', { split_special_tokens: false, add_special_tokens: false });
    expect(ids[0]).toBe(1);
    expect(t.convert_ids_to_tokens(ids.slice(1)).join('')).toBe('hello');
  });
});
