/**
 * SentencePiece `ModelProto` (tokenizer.model) decoder, written from the public schema
 * `sentencepiece_model.proto` (google/sentencepiece). Only the fields a tokenizer needs are kept;
 * unknown fields are skipped as protobuf requires. Truncated or garbled input raises
 * `TokenizerError('INVALID_MODEL_PROTO')` (reliability checklist B25).
 */
import { TokenizerError, TokenizerErrorCode } from './errors.js';
import { ProtoReader, WireType } from './protobuf.js';

/** `ModelProto.SentencePiece.Type`. */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

export type ModelType = 'UNIGRAM' | 'BPE' | 'WORD' | 'CHAR';
const MODEL_TYPES: Record<number, ModelType> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceType;
}

/** The `TrainerSpec` fields that influence encoding/decoding (names as in the .proto). */
export interface TrainerSpec {
  model_type: ModelType;
  vocab_size: number;
  byte_fallback: boolean;
  treat_whitespace_as_suffix: boolean;
  split_digits: boolean;
  max_sentencepiece_length: number;
  unk_id: number;
  bos_id: number;
  eos_id: number;
  pad_id: number;
  unk_piece: string;
  bos_piece: string;
  eos_piece: string;
  pad_piece: string;
  unk_surface: string;
  control_symbols: string[];
  user_defined_symbols: string[];
}

export interface NormalizerSpec {
  name: string;
  precompiled_charsmap: Uint8Array;
  add_dummy_prefix: boolean;
  remove_extra_whitespaces: boolean;
  escape_whitespaces: boolean;
  normalization_rule_tsv: string;
}

export interface ModelProto {
  pieces: SentencePiece[];
  trainer_spec: TrainerSpec;
  normalizer_spec: NormalizerSpec;
  /** Present only when the model was trained with a denormalizer. */
  denormalizer_spec: NormalizerSpec | null;
}

function defaultTrainerSpec(): TrainerSpec {
  return {
    model_type: 'UNIGRAM',
    vocab_size: 8000,
    byte_fallback: false,
    treat_whitespace_as_suffix: false,
    split_digits: false,
    max_sentencepiece_length: 16,
    unk_id: 0,
    bos_id: 1,
    eos_id: 2,
    pad_id: -1,
    unk_piece: '<unk>',
    bos_piece: '<s>',
    eos_piece: '</s>',
    pad_piece: '<pad>',
    unk_surface: ' \u2047 ',
    control_symbols: [],
    user_defined_symbols: [],
  };
}

function defaultNormalizerSpec(): NormalizerSpec {
  return {
    name: '',
    precompiled_charsmap: new Uint8Array(0),
    add_dummy_prefix: true,
    remove_extra_whitespaces: true,
    escape_whitespaces: true,
    normalization_rule_tsv: '',
  };
}

function bad(message: string, details: Record<string, unknown> = {}): never {
  throw new TokenizerError(TokenizerErrorCode.INVALID_MODEL_PROTO, message, { details });
}

function decodePiece(r: ProtoReader, index: number): SentencePiece {
  let piece: string | null = null;
  let score = 0;
  let type: number = PieceType.NORMAL;
  while (!r.done()) {
    const [f, w] = r.key();
    if (f === 1) {
      r.expect(f, w, WireType.LEN, `pieces[${index}].piece`);
      piece = r.string();
    } else if (f === 2) {
      r.expect(f, w, WireType.I32, `pieces[${index}].score`);
      score = r.float();
    } else if (f === 3) {
      r.expect(f, w, WireType.VARINT, `pieces[${index}].type`);
      type = r.int32();
    } else {
      r.skip(w);
    }
  }
  if (piece === null || piece.length === 0)
    bad(`pieces[${index}] has an empty piece string (SentencePiece requires a non-empty piece)`, { index });
  if (!(type >= 1 && type <= 6))
    bad(`pieces[${index}] ("${piece}") has type ${type}, expected 1..6 (NORMAL…BYTE)`, { index, type });
  if (Number.isNaN(score)) bad(`pieces[${index}] ("${piece}") has a NaN score`, { index });
  return { piece, score, type: type as PieceType };
}

function decodeTrainerSpec(r: ProtoReader): TrainerSpec {
  const t = defaultTrainerSpec();
  while (!r.done()) {
    const [f, w] = r.key();
    const int = (name: string): number => {
      r.expect(f, w, WireType.VARINT, `trainer_spec.${name}`);
      return r.int32();
    };
    const bool = (name: string): boolean => {
      r.expect(f, w, WireType.VARINT, `trainer_spec.${name}`);
      return r.bool();
    };
    const str = (name: string): string => {
      r.expect(f, w, WireType.LEN, `trainer_spec.${name}`);
      return r.string();
    };
    switch (f) {
      case 3: {
        const v = int('model_type');
        const m = MODEL_TYPES[v];
        if (m === undefined) bad(`trainer_spec.model_type is ${v}, expected 1..4 (UNIGRAM, BPE, WORD, CHAR)`);
        t.model_type = m;
        break;
      }
      case 4:
        t.vocab_size = int('vocab_size');
        break;
      case 35:
        t.byte_fallback = bool('byte_fallback');
        break;
      case 24:
        t.treat_whitespace_as_suffix = bool('treat_whitespace_as_suffix');
        break;
      case 25:
        t.split_digits = bool('split_digits');
        break;
      case 20:
        t.max_sentencepiece_length = int('max_sentencepiece_length');
        break;
      case 40:
        t.unk_id = int('unk_id');
        break;
      case 41:
        t.bos_id = int('bos_id');
        break;
      case 42:
        t.eos_id = int('eos_id');
        break;
      case 43:
        t.pad_id = int('pad_id');
        break;
      case 45:
        t.unk_piece = str('unk_piece');
        break;
      case 46:
        t.bos_piece = str('bos_piece');
        break;
      case 47:
        t.eos_piece = str('eos_piece');
        break;
      case 48:
        t.pad_piece = str('pad_piece');
        break;
      case 44:
        t.unk_surface = str('unk_surface');
        break;
      case 30:
        t.control_symbols.push(str('control_symbols'));
        break;
      case 31:
        t.user_defined_symbols.push(str('user_defined_symbols'));
        break;
      default:
        r.skip(w);
    }
  }
  return t;
}

function decodeNormalizerSpec(r: ProtoReader, what: string): NormalizerSpec {
  const n = defaultNormalizerSpec();
  while (!r.done()) {
    const [f, w] = r.key();
    switch (f) {
      case 1:
        r.expect(f, w, WireType.LEN, `${what}.name`);
        n.name = r.string();
        break;
      case 2:
        r.expect(f, w, WireType.LEN, `${what}.precompiled_charsmap`);
        n.precompiled_charsmap = r.bytes().slice();
        break;
      case 3:
        r.expect(f, w, WireType.VARINT, `${what}.add_dummy_prefix`);
        n.add_dummy_prefix = r.bool();
        break;
      case 4:
        r.expect(f, w, WireType.VARINT, `${what}.remove_extra_whitespaces`);
        n.remove_extra_whitespaces = r.bool();
        break;
      case 5:
        r.expect(f, w, WireType.VARINT, `${what}.escape_whitespaces`);
        n.escape_whitespaces = r.bool();
        break;
      case 6:
        r.expect(f, w, WireType.LEN, `${what}.normalization_rule_tsv`);
        n.normalization_rule_tsv = r.string();
        break;
      default:
        r.skip(w);
    }
  }
  return n;
}

const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;

/**
 * Decodes `tokenizer.model` bytes. Validates what SentencePiece validates when it loads a model
 * (non-empty, unique pieces; exactly one UNKNOWN piece; BYTE pieces only with byte_fallback) and
 * throws `INVALID_MODEL_PROTO` otherwise.
 */
export function decodeModelProto(bytes: Uint8Array | ArrayBuffer): ModelProto {
  const buf = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (buf.length === 0) bad('tokenizer.model is empty (0 bytes)');
  const r = new ProtoReader(buf);
  const pieces: SentencePiece[] = [];
  let trainer = defaultTrainerSpec();
  let normalizer = defaultNormalizerSpec();
  let denormalizer: NormalizerSpec | null = null;
  while (!r.done()) {
    const [f, w] = r.key();
    if (f === 1) {
      r.expect(f, w, WireType.LEN, 'pieces');
      const [s, e] = r.lengthDelimited();
      pieces.push(decodePiece(new ProtoReader(buf, s, e), pieces.length));
    } else if (f === 2) {
      r.expect(f, w, WireType.LEN, 'trainer_spec');
      const [s, e] = r.lengthDelimited();
      trainer = decodeTrainerSpec(new ProtoReader(buf, s, e));
    } else if (f === 3) {
      r.expect(f, w, WireType.LEN, 'normalizer_spec');
      const [s, e] = r.lengthDelimited();
      normalizer = decodeNormalizerSpec(new ProtoReader(buf, s, e), 'normalizer_spec');
    } else if (f === 5) {
      r.expect(f, w, WireType.LEN, 'denormalizer_spec');
      const [s, e] = r.lengthDelimited();
      denormalizer = decodeNormalizerSpec(new ProtoReader(buf, s, e), 'denormalizer_spec');
    } else {
      r.skip(w);
    }
  }
  if (pieces.length === 0) bad('tokenizer.model has no pieces (expected a SentencePiece ModelProto with a vocabulary)');

  const seen = new Map<string, number>();
  let unk = -1;
  for (const [i, p] of pieces.entries()) {
    const prev = seen.get(p.piece);
    if (prev !== undefined)
      bad(`piece "${p.piece}" is defined twice (ids ${prev} and ${i})`, { piece: p.piece, ids: [prev, i] });
    seen.set(p.piece, i);
    if (p.type === PieceType.UNKNOWN) {
      if (unk >= 0) bad(`two UNKNOWN pieces (ids ${unk} and ${i}); expected exactly one`);
      unk = i;
    }
    if (p.type === PieceType.BYTE) {
      if (!trainer.byte_fallback)
        bad(`piece ${i} ("${p.piece}") has type BYTE but trainer_spec.byte_fallback is false`, { index: i });
      if (!BYTE_PIECE.test(p.piece)) bad(`BYTE piece ${i} is "${p.piece}", expected the form <0xNN>`, { index: i });
    }
  }
  if (unk < 0) bad('tokenizer.model has no UNKNOWN piece (SentencePiece: "unk is not defined")');
  return { pieces, trainer_spec: trainer, normalizer_spec: normalizer, denormalizer_spec: denormalizer };
}
