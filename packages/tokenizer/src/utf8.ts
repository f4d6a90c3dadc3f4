/**
 * UTF-8 helpers with SentencePiece's exact rules (util.cc `DecodeUTF8`): a byte that does not start
 * a complete, shortest-form, non-surrogate sequence ≤ U+10FFFF decodes to U+FFFD and consumes one
 * byte — one replacement character per invalid byte (reliability checklist B22). This differs from
 * WHATWG TextDecoder, which replaces a maximal invalid subpart with a single U+FFFD.
 */

const LONE_SURROGATE = /[\uD800-\uDFFF]/;

/**
 * Replaces lone surrogates by U+FFFD, exactly what TextEncoder does before producing UTF-8
 * (so "\uD800" becomes EF BF BD, reliability checklist B21). Valid pairs are kept.
 */
export function toWellFormed(s: string): string {
  if (!LONE_SURROGATE.test(s)) return s;
  let out = '';
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
      out += `${s.slice(last, i)}\uFFFD`;
      last = i + 1;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      out += `${s.slice(last, i)}\uFFFD`;
      last = i + 1;
    }
  }
  return out + s.slice(last);
}

/** Appends the UTF-8 bytes of one code point to `out`. */
export function pushUtf8(cp: number, out: number[]): void {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
}

const isTrail = (b: number): boolean => (b & 0xc0) === 0x80;
const validCp = (c: number): boolean => c < 0xd800 || (c >= 0xe000 && c <= 0x10ffff);

/**
 * Decodes one character at `bytes[i]`: returns the code point and its length, or -1 (U+FFFD,
 * length 1) for an invalid or truncated sequence.
 */
export function decodeUtf8At(bytes: ArrayLike<number>, i: number, end: number): [number, number] {
  const b0 = bytes[i]!;
  const len = end - i;
  if (b0 < 0x80) return [b0, 1];
  if (len >= 2 && (b0 & 0xe0) === 0xc0) {
    const b1 = bytes[i + 1]!;
    const cp = ((b0 & 0x1f) << 6) | (b1 & 0x3f);
    if (isTrail(b1) && cp >= 0x80 && validCp(cp)) return [cp, 2];
  } else if (len >= 3 && (b0 & 0xf0) === 0xe0) {
    const b1 = bytes[i + 1]!;
    const b2 = bytes[i + 2]!;
    const cp = ((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f);
    if (isTrail(b1) && isTrail(b2) && cp >= 0x800 && validCp(cp)) return [cp, 3];
  } else if (len >= 4 && (b0 & 0xf8) === 0xf0) {
    const b1 = bytes[i + 1]!;
    const b2 = bytes[i + 2]!;
    const b3 = bytes[i + 3]!;
    const cp = ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f);
    if (isTrail(b1) && isTrail(b2) && isTrail(b3) && cp >= 0x10000 && validCp(cp)) return [cp, 4];
  }
  return [-1, 1];
}

/** Decodes a byte run the way SentencePiece decodes consecutive byte-fallback pieces. */
export function decodeBytesLikeSentencePiece(bytes: ArrayLike<number>, start = 0, end = bytes.length): string {
  let out = '';
  let i = start;
  while (i < end) {
    const [cp, n] = decodeUtf8At(bytes, i, end);
    out += cp < 0 ? '\uFFFD' : String.fromCodePoint(cp);
    i += n;
  }
  return out;
}

/**
 * Number of trailing bytes of `bytes` that could still become a valid character when more bytes
 * arrive (a proper prefix of a valid sequence). 0 when the run ends on a character boundary or
 * the tail is already invalid. Used by the streaming decoder to hold back incomplete characters.
 */
export function incompleteUtf8Tail(bytes: ArrayLike<number>): number {
  const n = bytes.length;
  for (let k = 1; k <= 3 && k <= n; k++) {
    const b0 = bytes[n - k]!;
    if (isTrail(b0)) continue;
    const need = (b0 & 0xe0) === 0xc0 ? 2 : (b0 & 0xf0) === 0xe0 ? 3 : (b0 & 0xf8) === 0xf0 ? 4 : 1;
    if (need <= k) return 0;
    // Check that the bytes present are consistent with a valid sequence.
    for (let j = 1; j < k; j++) if (!isTrail(bytes[n - k + j]!)) return 0;
    if (k >= 2) {
      const b1 = bytes[n - k + 1]!;
      if (need === 3 && ((b0 === 0xe0 && b1 < 0xa0) || (b0 === 0xed && b1 >= 0xa0))) return 0;
      if (need === 4 && ((b0 === 0xf0 && b1 < 0x90) || (b0 === 0xf4 && b1 >= 0x90) || b0 > 0xf4)) return 0;
    } else if (need === 2 && b0 < 0xc2) return 0;
    else if (need === 4 && b0 > 0xf4) return 0;
    return k;
  }
  return 0;
}
