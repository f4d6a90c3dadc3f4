import { beforeAll, describe, expect, it } from 'vitest';

import { generateCorpus } from './corpus.test-helpers.js';
import { isTokenizerError } from './errors.js';
import { decodeModelProto, PieceType } from './model-proto.js';
import {
  encodeModelProto,
  llamaModelBytes,
  loadFixtureJson,
  loadOracle,
  rng,
  type Oracle,
} from './oracle.test-helpers.js';
import { SentencePieceModel } from './sentencepiece.js';

interface PlainCase {
  category: string;
  text: string;
  sp_ids: number[];
  sp_pieces: string[];
  sp_decoded: string;
}
interface PlainFixture {
  tokenizer_model_md5: string;
  vocab_size: number;
  bos_id: number;
  eos_id: number;
  unk_id: number;
  cases: PlainCase[];
}

const fx = loadFixtureJson<PlainFixture>('tokenizer/tokenizer_plain.json');
let sp: SentencePieceModel;
let oracle: Oracle;

/** The WASM oracle's string conversion (TextDecoder) drops a leading U+FEFF; Python's does not. */
const sameDecode = (ours: string, wasm: string): boolean =>
  ours === wasm || (ours.startsWith('\ufeff') && ours.slice(1) === wasm);

beforeAll(async () => {
  sp = SentencePieceModel.fromModelProto(llamaModelBytes());
  oracle = await loadOracle();
});

describe('ModelProto decoder', () => {
  it('reads the LLaMA tokenizer.model: pieces, types, specs', () => {
    const m = decodeModelProto(llamaModelBytes());
    expect(m.pieces.length).toBe(fx.vocab_size);
    expect(m.trainer_spec.model_type).toBe('BPE');
    expect(m.trainer_spec.byte_fallback).toBe(true);
    expect(m.normalizer_spec.add_dummy_prefix).toBe(true);
    expect(m.normalizer_spec.remove_extra_whitespaces).toBe(false);
    expect([m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id]).toEqual([
      fx.unk_id,
      fx.bos_id,
      fx.eos_id,
    ]);
    expect(m.pieces[fx.unk_id]!.type).toBe(PieceType.UNKNOWN);
    expect(m.pieces[fx.bos_id]!.type).toBe(PieceType.CONTROL);
    expect(m.pieces.filter((p) => p.type === PieceType.BYTE).length).toBe(256);
    // fixture pieces agree with the decoded vocabulary
    for (const c of fx.cases) expect(c.sp_ids.map((id) => m.pieces[id]!.piece)).toEqual(c.sp_pieces);
    expect(sp.bosId).toBe(fx.bos_id);
    expect(sp.eosId).toBe(fx.eos_id);
    expect(sp.unkId).toBe(fx.unk_id);
  });

  it('B25: random bytes, truncations and garbled pieces give a typed error or a valid model', () => {
    const bytes = llamaModelBytes();
    const r = rng(25);
    const tryLoad = (b: Uint8Array): void => {
      try {
        const m = SentencePieceModel.fromModelProto(b);
        // a valid model must then encode/decode without crashing
        const ids = m.encode('hello wörld 🦉');
        m.decode(ids);
      } catch (e) {
        if (!isTokenizerError(e)) throw e;
      }
    };
    let typed = 0;
    for (let i = 0; i < 60; i++) {
      const n = 1 + Math.floor(r() * 4096);
      const b = new Uint8Array(n);
      for (let k = 0; k < n; k++) b[k] = Math.floor(r() * 256);
      tryLoad(b);
    }
    // truncations at piece boundaries and inside pieces
    for (const cut of [1, 2, 3, 7, 15, 16, 17, 100, 1001, 50_000, 499_000, bytes.length - 300, bytes.length - 1]) {
      try {
        decodeModelProto(bytes.subarray(0, cut));
      } catch (e) {
        expect(isTokenizerError(e, 'INVALID_MODEL_PROTO')).toBe(true);
        typed++;
      }
      tryLoad(bytes.subarray(0, cut));
    }
    expect(typed).toBeGreaterThan(5);
    // garbled bytes inside the piece table
    for (let i = 0; i < 40; i++) {
      const b = bytes.slice(0, 20_000);
      for (let k = 0; k < 8; k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
      tryLoad(b);
    }
    expect(() => decodeModelProto(new Uint8Array(0))).toThrow(/empty/);
    const e = (() => {
      try {
        decodeModelProto(bytes.subarray(0, 100));
      } catch (err) {
        return err;
      }
      return null;
    })();
    expect(isTokenizerError(e, 'INVALID_MODEL_PROTO')).toBe(true);
  });

  it('rejects models it cannot run exactly (unigram) with UNSUPPORTED_MODEL', () => {
    const m = decodeModelProto(llamaModelBytes());
    const uni = encodeModelProto({ ...m, trainer_spec: { ...m.trainer_spec, model_type: 'UNIGRAM' } });
    expect(() => SentencePieceModel.fromModelProto(uni)).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED_MODEL' }),
    );
  });
});

describe('SentencePiece encode/decode vs fixtures (Python sentencepiece 0.1.97)', () => {
  it('every tokenizer_plain case: sp_ids and sp_decoded exact', () => {
    expect(fx.cases.length).toBe(204);
    for (const c of fx.cases) {
      expect(sp.encode(c.text), JSON.stringify(c.text)).toEqual(c.sp_ids);
      expect(sp.encodeAsPieces(c.text)).toEqual(c.sp_pieces);
      expect(sp.decode(c.sp_ids), JSON.stringify(c.text)).toBe(c.sp_decoded);
    }
  });
});

describe('SentencePiece vs the WASM SentencePiece oracle', () => {
  it('generated corpus of 12,000 strings: identical ids; decode as SentencePiece decodes', () => {
    const corpus = generateCorpus(12_000);
    let chars = 0;
    for (const s of corpus) {
      chars += s.length;
      const want = oracle.encode(s);
      const got = sp.encode(s);
      if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
        expect(got, JSON.stringify(s)).toEqual(want);
      }
      const dec = sp.decode(got);
      if (!sameDecode(dec, oracle.decode(want))) expect(dec, JSON.stringify(s)).toBe(oracle.decode(want));
    }
    expect(chars).toBeGreaterThan(300_000);
  });

  it('B17: LLaMA golden strings (transformers.js / llama-tokenizer-js test texts) encode and decode like SentencePiece', () => {
    const golden = [
      'grabbed',
      ' grabbed',
      '           grabbed',
      '\n',
      ' \n',
      '\ttabs\t\t\t\tout here',
      'ax\n####\nboo',
      '镇',
      '🦙',
      '🦙Ꙋ',
      'Ꙋ🦙',
      'The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) (Lama glama) is a domesticated South American camelid, widely used as a meat and pack animal by Andean cultures since the Pre-Columbian era. Llamas are social animals and live with others as a herd. Their wool is soft and contains only a small amount of lanolin.[2] Llamas can learn simple tasks after a few repetitions. When using a pack, they can carry about 25 to 30% of their body weight for 8 to 13 km (5–8 miles).[3] The name llama (in the past also spelled "lama" or "glama") was adopted by European settlers from native Peruvians.[4] The ancestors of llamas are thought to have originated from the Great Plains of North America about 40 million years ago, and subsequently migrated to South America about three million years ago during the Great American Interchange. By the end of the last ice age (10,000–12,000 years ago), camelids were extinct in North America.[3] As of 2007, there were over seven million llamas and alpacas in South America and over 158,000 llamas and 100,000🦙 alpacas, descended from progenitors imported late in the 20th century, in the United States and Canada.[5] In Aymara mythology, llamas are important beings. The Heavenly Llama is said to drink water from the ocean and urinates as it rains.[6] According to Aymara eschatology, llamas will return to the water springs and ponds where they come from at the end of time.[6]',
      'How are you doing?',
      "You should've done this",
      "A\n'll !!to?'d''d of, can't.",
      'def main():\n\tpass',
      'let a = obj.toString();\ntoString();',
      'This\n\nis\na\ntest.',
      'UNwant\u00E9d,running',
      '1\u00A0\u00A0\u00A02\u00A0\u00A0\u00A03',
      'Hello World',
      'hello world',
      'Hello World!',
      'you…',
      '\u0000',
      ' ',
      '   leading and trailing   ',
      '<s>',
      '</s>',
      '<unk>',
      'test $1 R2 #3 €4 £5 ¥6 ₣7 ₹8 ₱9 test',
      'I bought an apple for $1.00 at the store.',
      'you…\u00A0\u00A0',
      '\u00A0\u00A0you…',
      'weird \uFF5E edge \uFF5E case',
      '生活的真谛是',
      '▁This ▁is ▁a ▁test ▁.',
      'The company was founded in 2016.',
      'ÁÉÍÓÚáéíóú',
      'ç,Ç',
      'İstanbul',
      '[INST] hi [/INST]',
      'Hey! How are you feeling today?',
      '   ',
      'a  b   c    d',
      '\r\n\r\n',
      '🤗 Hugging Face 🤗',
      'नमस्ते',
      'Здравствуйте',
      'مرحبا',
      '안녕하세요',
    ];
    for (const s of golden) {
      const want = oracle.encode(s);
      expect(sp.encode(s), JSON.stringify(s)).toEqual(want);
      expect(sameDecode(sp.decode(want), oracle.decode(want)), JSON.stringify(s)).toBe(true);
    }
  });

  it('variant models (byte_fallback off, remove_extra_whitespaces on, no dummy prefix, user-defined symbols) match the oracle', async () => {
    const base = decodeModelProto(llamaModelBytes());
    const variants = [
      { byte_fallback: false, dropBytePieces: true },
      { remove_extra_whitespaces: true },
      { add_dummy_prefix: false },
      { userDefined: ['<|image|>', 'owlet', '▁▁x'] },
    ];
    const corpus = generateCorpus(1500, 77);
    for (const v of variants) {
      const bytes = encodeModelProto(base, v);
      const ours = SentencePieceModel.fromModelProto(bytes);
      const theirs = await loadOracle(bytes);
      for (const s of [...corpus, '  a  b  ', ' ', 'x<|image|>owlet ▁▁x y', '\u4e00\u{20000}\u0000']) {
        const want = theirs.encode(s);
        const got = ours.encode(s);
        if (got.length !== want.length || got.some((x, i) => x !== want[i]))
          expect(got, `${JSON.stringify(v)} ${JSON.stringify(s)}`).toEqual(want);
        const d = ours.decode(want);
        if (!sameDecode(d, theirs.decode(want)))
          expect(d, `${JSON.stringify(v)} ${JSON.stringify(s)}`).toBe(theirs.decode(want));
      }
    }
  });

  it('B21: odd inputs do not crash and give the documented output', () => {
    const odd = ['\uD800', 'a\uDC00b', '\u0000', '\uFFFD', '\u2581', '👩‍👩‍👧‍👦', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '～', '\u200d'];
    for (const s of odd) expect(sp.encode(s), JSON.stringify(s)).toEqual(oracle.encode(s));
    // A lone surrogate is encoded as TextEncoder would: U+FFFD (EF BF BD), same ids as "\uFFFD".
    expect(sp.encode('\uD800')).toEqual(sp.encode('\uFFFD'));
    expect(sp.encode('x\uDBFFy')).toEqual(sp.encode('x\uFFFDy'));
    // NUL has no piece: byte fallback <0x00>.
    expect(sp.encode('\u0000').map((id) => sp.idToPiece(id))).toEqual(['\u2581', '<0x00>']);
  });

  it('B22: invalid byte runs decode to U+FFFD per byte; bad ids throw INVALID_TOKEN_ID', () => {
    const b = (x: number): number => sp.pieceToId(`<0x${x.toString(16).toUpperCase().padStart(2, '0')}>`);
    expect(sp.decode([b(0xe8), b(0xb0)])).toBe('\uFFFD\uFFFD');
    expect(sp.decode([b(0xe8), b(0xb0)])).toBe(oracle.decode([b(0xe8), b(0xb0)]));
    expect(sp.decode([b(0xe8), b(0xb0), b(0xa0)])).toBe(oracle.decode([b(0xe8), b(0xb0), b(0xa0)]));
    for (const bad of [32000, 40000, -1, Number.NaN, 1.5, Infinity]) {
      expect(() => sp.decode([1, bad]), String(bad)).toThrow(expect.objectContaining({ code: 'INVALID_TOKEN_ID' }));
    }
  });

  it('B25: text fuzz of 2–4096 UTF-8 bytes matches the oracle', () => {
    const r = rng(2504);
    const dec = new TextDecoder();
    for (let i = 0; i < 300; i++) {
      const n = 2 + Math.floor(r() * 4095);
      const bytes = new Uint8Array(n);
      for (let k = 0; k < n; k++) bytes[k] = r() < 0.7 ? 32 + Math.floor(r() * 95) : Math.floor(r() * 256);
      const s = dec.decode(bytes);
      expect(sp.encode(s)).toEqual(oracle.encode(s));
    }
  });
});
