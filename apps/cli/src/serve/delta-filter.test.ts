import { describe, expect, it } from 'vitest';

import { DeltaFilter } from './delta-filter.js';

/** Feeds `deltas`, returns what was emitted delta by delta, and the joined text. */
function feed(stops: string[], deltas: string[]): { emitted: string[]; text: string; stopped: boolean } {
  const f = new DeltaFilter(stops);
  const emitted = deltas.map((d) => f.push(d));
  emitted.push(f.end());
  return { emitted, text: f.text, stopped: f.stopped };
}

/** The answer: cut where the first stop string to complete begins (generation stops there), trimmed. */
function reference(stops: string[], deltas: string[]): string {
  const all = deltas.join('');
  for (let end = 1; end <= all.length; end++) {
    const hits = stops.filter((s) => all.slice(0, end).endsWith(s));
    if (hits.length) return all.slice(0, end - Math.max(...hits.map((s) => s.length))).trim();
  }
  return all.trim();
}

describe('DeltaFilter', () => {
  it('joins to the trimmed answer cut at the first stop string, for every split of the text', () => {
    const cases: [string[], string][] = [
      [[], '  Hello there  \n'],
      [['END'], ' a b END c'],
      [['END'], 'xEN'],
      [['\n\n', 'STOP'], 'one\ntwo\n\nthree'],
      [['ab'], 'aaab'],
      [['abc', 'b'], 'zabc'],
      [['###'], '## # ###'],
    ];
    for (const [stops, text] of cases) {
      // every way of cutting the text into two or three deltas
      for (let i = 0; i <= text.length; i++) {
        for (let j = i; j <= text.length; j++) {
          const deltas = [text.slice(0, i), text.slice(i, j), text.slice(j)];
          const r = feed(stops, deltas);
          expect(r.emitted.join(''), JSON.stringify({ stops, deltas })).toBe(reference(stops, deltas));
          expect(r.text).toBe(reference(stops, deltas));
        }
      }
    }
  });

  it('holds back only what may still be a stop string or trailing space', () => {
    const f = new DeltaFilter(['STOP']);
    expect(f.push('Hello ')).toBe('Hello');
    expect(f.push('wor')).toBe(' wor');
    expect(f.push('ld ST')).toBe('ld');
    expect(f.push('OP and more')).toBe('');
    expect(f.stopped).toBe(true);
    expect(f.push('x')).toBe('');
    expect(f.end()).toBe('');
    expect(f.text).toBe('Hello world');
  });

  it('releases a held stop prefix when the generation ends without the stop string', () => {
    const f = new DeltaFilter(['STOP']);
    expect(f.push('a ST')).toBe('a');
    expect(f.end()).toBe(' ST');
    expect(f.stopped).toBe(false);
  });
});
