/**
 * Deterministic generated corpus for oracle comparisons and the benchmark: many Unicode blocks,
 * whitespace runs, control characters, very long words, lone surrogates, emoji sequences, the
 * literal `▁`, special-token and image-marker strings.
 */
// The PRNG subpath only: the benchmark imports this file outside vitest, and test-utils' index imports vitest.
import { mulberry32 as rng } from '@owlet/test-utils/random';

/** [first, last] code points of the blocks sampled. */
export const UNICODE_BLOCKS: ReadonlyArray<readonly [number, number, string]> = [
  [0x0000, 0x001f, 'C0 controls'],
  [0x0020, 0x007e, 'Basic Latin'],
  [0x007f, 0x009f, 'DEL + C1 controls'],
  [0x00a0, 0x00ff, 'Latin-1'],
  [0x0100, 0x017f, 'Latin Ext-A'],
  [0x0180, 0x024f, 'Latin Ext-B'],
  [0x0250, 0x02af, 'IPA'],
  [0x02b0, 0x02ff, 'Spacing modifiers'],
  [0x0300, 0x036f, 'Combining diacritics'],
  [0x0370, 0x03ff, 'Greek'],
  [0x0400, 0x04ff, 'Cyrillic'],
  [0x0530, 0x058f, 'Armenian'],
  [0x0590, 0x05ff, 'Hebrew'],
  [0x0600, 0x06ff, 'Arabic'],
  [0x0700, 0x074f, 'Syriac'],
  [0x0780, 0x07bf, 'Thaana'],
  [0x07c0, 0x07ff, 'NKo'],
  [0x0900, 0x097f, 'Devanagari'],
  [0x0980, 0x09ff, 'Bengali'],
  [0x0a00, 0x0a7f, 'Gurmukhi'],
  [0x0a80, 0x0aff, 'Gujarati'],
  [0x0b00, 0x0b7f, 'Oriya'],
  [0x0b80, 0x0bff, 'Tamil'],
  [0x0c00, 0x0c7f, 'Telugu'],
  [0x0c80, 0x0cff, 'Kannada'],
  [0x0d00, 0x0d7f, 'Malayalam'],
  [0x0d80, 0x0dff, 'Sinhala'],
  [0x0e00, 0x0e7f, 'Thai'],
  [0x0e80, 0x0eff, 'Lao'],
  [0x0f00, 0x0fff, 'Tibetan'],
  [0x1000, 0x109f, 'Myanmar'],
  [0x10a0, 0x10ff, 'Georgian'],
  [0x1100, 0x11ff, 'Hangul Jamo'],
  [0x1200, 0x137f, 'Ethiopic'],
  [0x13a0, 0x13ff, 'Cherokee'],
  [0x1400, 0x167f, 'Canadian syllabics'],
  [0x1680, 0x169f, 'Ogham'],
  [0x16a0, 0x16ff, 'Runic'],
  [0x1780, 0x17ff, 'Khmer'],
  [0x1800, 0x18af, 'Mongolian'],
  [0x1e00, 0x1eff, 'Latin Ext Additional'],
  [0x1f00, 0x1fff, 'Greek Extended'],
  [0x2000, 0x206f, 'General Punctuation'],
  [0x2070, 0x209f, 'Super/subscripts'],
  [0x20a0, 0x20cf, 'Currency'],
  [0x2100, 0x214f, 'Letterlike'],
  [0x2150, 0x218f, 'Number forms'],
  [0x2190, 0x21ff, 'Arrows'],
  [0x2200, 0x22ff, 'Math operators'],
  [0x2300, 0x23ff, 'Misc technical'],
  [0x2500, 0x257f, 'Box drawing'],
  [0x2580, 0x259f, 'Block elements (▁)'],
  [0x25a0, 0x25ff, 'Geometric shapes'],
  [0x2600, 0x26ff, 'Misc symbols'],
  [0x2700, 0x27bf, 'Dingbats'],
  [0x2800, 0x28ff, 'Braille'],
  [0x2e80, 0x2eff, 'CJK radicals'],
  [0x3000, 0x303f, 'CJK symbols'],
  [0x3040, 0x309f, 'Hiragana'],
  [0x30a0, 0x30ff, 'Katakana'],
  [0x3100, 0x312f, 'Bopomofo'],
  [0x3130, 0x318f, 'Hangul compat'],
  [0x4e00, 0x9fff, 'CJK Unified'],
  [0xa000, 0xa48f, 'Yi'],
  [0xa640, 0xa69f, 'Cyrillic Ext-B'],
  [0xac00, 0xd7a3, 'Hangul syllables'],
  [0xd800, 0xdfff, 'lone surrogates'],
  [0xe000, 0xf8ff, 'Private use'],
  [0xf900, 0xfaff, 'CJK compat'],
  [0xfb00, 0xfb4f, 'Alphabetic presentation'],
  [0xfb50, 0xfdff, 'Arabic presentation A'],
  [0xfe00, 0xfe0f, 'Variation selectors'],
  [0xfe30, 0xfe4f, 'CJK compat forms'],
  [0xff00, 0xffef, 'Half/fullwidth'],
  [0xfff0, 0xffff, 'Specials'],
  [0x10000, 0x1007f, 'Linear B'],
  [0x10330, 0x1034f, 'Gothic'],
  [0x10400, 0x1044f, 'Deseret'],
  [0x1d400, 0x1d7ff, 'Math alphanumerics'],
  [0x1f000, 0x1f02f, 'Mahjong'],
  [0x1f300, 0x1f5ff, 'Misc symbols & pictographs'],
  [0x1f600, 0x1f64f, 'Emoticons'],
  [0x1f680, 0x1f6ff, 'Transport'],
  [0x1f900, 0x1f9ff, 'Supplemental symbols'],
  [0x1fa70, 0x1faff, 'Symbols Ext-A'],
  [0x20000, 0x2a6df, 'CJK Ext B'],
  [0xe0000, 0xe007f, 'Tags'],
  [0xf0000, 0xffffd, 'Supplementary PUA-A'],
];

const WHITESPACE = [
  ' ',
  ' ',
  ' ',
  '\t',
  '\n',
  '\r\n',
  '\r',
  '\u00a0',
  '\u3000',
  '\u2009',
  '\u200b',
  '\u2028',
  '\u000b',
  '\u000c',
  '\u2581',
];
const WORDS =
  'the of and to in is you that it he was for on are as with his they I at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part'.split(
    ' ',
  );
const SPECIAL = [
  '<s>',
  '</s>',
  '<unk>',
  '<|image|>',
  '<image>',
  'USER: ',
  ' ASSISTANT:',
  '<0x41>',
  '\u2581\u2581',
  '\u200d',
  '\ufeff',
  '\ufffd',
  '\u0000',
];
const EMOJI = ['👩‍👩‍👧‍👦', '🏳️‍🌈', '👍🏽', '🇯🇵', '1️⃣', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '🦉', '～', 'é', 'é', '한국어', 'ﬁ', 'Ⅻ'];

const cp = (c: number): string => (c >= 0xd800 && c <= 0xdfff ? String.fromCharCode(c) : String.fromCodePoint(c));

/** `count` strings, deterministic for a given seed. */
export function generateCorpus(count: number, seed = 1234): string[] {
  const r = rng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
  const fromBlock = (b: readonly [number, number, string]): string => cp(b[0] + int(b[1] - b[0] + 1));
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 10;
    let s = '';
    if (kind === 0) {
      // one block
      const b = UNICODE_BLOCKS[((i / 10) % UNICODE_BLOCKS.length) | 0]!;
      const n = 1 + int(24);
      for (let k = 0; k < n; k++) s += r() < 0.15 ? ' ' : fromBlock(b);
    } else if (kind === 1) {
      // mixture of blocks
      const n = 1 + int(40);
      for (let k = 0; k < n; k++) s += fromBlock(pick(UNICODE_BLOCKS));
    } else if (kind === 2) {
      // words with whitespace runs
      const n = 1 + int(12);
      for (let k = 0; k < n; k++)
        s +=
          (r() < 0.3 ? pick(WORDS).toUpperCase() : pick(WORDS)) +
          pick(WHITESPACE).repeat(1 + (r() < 0.2 ? int(20) : 0));
      if (r() < 0.5) s = pick(WHITESPACE).repeat(int(4)) + s;
    } else if (kind === 3) {
      // English-ish sentence with punctuation and digits
      const n = 3 + int(20);
      const w: string[] = [];
      for (let k = 0; k < n; k++) w.push(r() < 0.1 ? String(int(100000)) : pick(WORDS));
      s = w.join(' ') + pick(['.', '?', '!', ',', ':', ';', '...', '"', "'s", ' (x)']);
    } else if (kind === 4) {
      // long words, repetitions
      const n = 20 + int(400);
      const alpha = pick(['a', 'ab', 'xyz', '_', '-', '0', 'é', '中', '😀', 'aa ', '=', '{"k":1,', '\u2581']);
      s =
        r() < 0.5
          ? alpha.repeat(Math.ceil(n / alpha.length))
          : Array.from({ length: n }, () => String.fromCharCode(33 + int(94))).join('');
    } else if (kind === 5) {
      // control characters and odd whitespace
      const n = 1 + int(20);
      for (let k = 0; k < n; k++)
        s += r() < 0.5 ? String.fromCharCode(int(32)) : r() < 0.5 ? pick(WHITESPACE) : pick(WORDS);
    } else if (kind === 6) {
      // lone surrogates inside text
      s =
        pick(WORDS) +
        String.fromCharCode(0xd800 + int(0x800)) +
        pick(WORDS) +
        (r() < 0.5 ? String.fromCharCode(0xdc00 + int(0x400)) : '') +
        (r() < 0.5 ? '\ud83d' : '');
    } else if (kind === 7) {
      // special-token / marker strings in context
      const n = 1 + int(6);
      for (let k = 0; k < n; k++) s += pick(SPECIAL) + (r() < 0.5 ? pick(WORDS) : '') + (r() < 0.5 ? ' ' : '');
    } else if (kind === 8) {
      // emoji sequences and composed/decomposed forms
      const n = 1 + int(8);
      for (let k = 0; k < n; k++) s += pick(EMOJI) + (r() < 0.4 ? ' ' : '');
    } else {
      // code-like text
      s = pick([
        'function f(x) {\n  return x * 2;\n}',
        'def f(x):\n    return x**2\n',
        '<div class="a">&amp;</div>',
        'SELECT * FROM t WHERE id = 42;',
        '#include <stdio.h>\nint main(){}',
        '    \t\tindent',
        'x = [1, 2, 3]  # comment',
      ]);
      if (r() < 0.5) s = s.repeat(1 + int(4));
    }
    out.push(s);
  }
  return out;
}
