/**
 * Every code an owlet package throws is declared once in `ErrorCode`, with a one-line meaning.
 * The closed union makes most undeclared codes a type error; this scan also catches the ones the
 * compiler cannot see (a cast, a plain-JS file, a code in a string passed through `unknown`).
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ErrorCode } from './index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Source files (not tests) of every package and app. */
function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && e.name !== 'dist') walk(p);
      } else if (/\.(ts|tsx|mts|js|mjs)$/.test(e.name) && !/\.test\.|\.testutil\.|\.d\.ts$/.test(e.name)) {
        out.push(p);
      }
    }
  };
  for (const group of ['packages', 'apps']) {
    for (const pkg of readdirSync(path.join(REPO, group), { withFileTypes: true })) {
      if (!pkg.isDirectory()) continue;
      for (const sub of ['src', 'scripts']) {
        try {
          walk(path.join(REPO, group, pkg.name, sub));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
      }
    }
  }
  return out;
}

/** Where a code is named in source: `new OwletError('X'`, `isOwletError(e, 'X')`, `…ErrorCode.X`. */
const PATTERNS = [
  /new (?:Owlet|Checkpoint|Tokenizer)Error\(\s*'([A-Z][A-Z0-9_]*)'/g,
  /is(?:Owlet|Checkpoint|Tokenizer)Error\([^,()]+,\s*'([A-Z][A-Z0-9_]*)'/g,
  /\b(?:[A-Z][A-Za-z]*)?ErrorCode\.([A-Z][A-Z0-9_]*)\b/g,
];

function thrownCodes(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of sourceFiles()) {
    const text = readFileSync(file, 'utf8');
    for (const re of PATTERNS) {
      for (const m of text.matchAll(re)) {
        const code = m[1]!;
        const where = `${path.relative(REPO, file)}:${text.slice(0, m.index).split('\n').length}`;
        found.set(code, [...(found.get(code) ?? []), where]);
      }
    }
  }
  return found;
}

describe('ErrorCode', () => {
  it('declares every code a package throws or tests for', () => {
    const found = thrownCodes();
    // The scan must see the codes it is meant to see, or an edit to the patterns would pass vacuously.
    for (const known of [
      'SHAPE_MISMATCH',
      'NOT_READY',
      'PICKLE_FORBIDDEN',
      'BACKEND_CANNOT_TRAIN',
      'INVALID_TOKEN_ID',
    ]) {
      expect(found.has(known), `the scan found no use of ${known}`).toBe(true);
    }
    const declared = new Set<string>(Object.values(ErrorCode));
    const undeclared = [...found].filter(([code]) => !declared.has(code)).map(([c, w]) => `${c} (${w.join(', ')})`);
    expect(undeclared, 'codes used in source but not declared in ErrorCode').toEqual([]);
  });

  it('maps each key to itself and gives each a one-line meaning', () => {
    for (const [key, value] of Object.entries(ErrorCode)) expect(value).toBe(key);
    const source = readFileSync(path.join(REPO, 'packages', 'errors', 'src', 'index.ts'), 'utf8');
    const block = source.slice(source.indexOf('export const ErrorCode = {'), source.indexOf('} as const;'));
    const lines = block.split('\n');
    const undocumented = lines
      .map((line, i) => ({ key: /^ {2}([A-Z][A-Z0-9_]*): '/.exec(line)?.[1], above: lines[i - 1]?.trim() ?? '' }))
      .filter(({ key, above }) => key !== undefined && !/^\/\*\* .+ \*\/$/.test(above))
      .map(({ key }) => key);
    expect(undocumented, 'codes without a /** one-line meaning */ directly above').toEqual([]);
    expect(lines.filter((l) => /^ {2}[A-Z][A-Z0-9_]*: '/.test(l))).toHaveLength(Object.keys(ErrorCode).length);
  });
});
