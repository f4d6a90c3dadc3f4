import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

describe('browser safety', () => {
  it('library sources (everything but tests and test helpers) import no Node built-ins and no package but @owlet/errors', () => {
    const builtins = new Set(builtinModules);
    const files = readdirSync(here).filter(
      (f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.test-helpers.ts'),
    );
    expect(files).toContain('index.ts');
    for (const f of files) {
      const src = readFileSync(join(here, f), 'utf8');
      for (const m of src.matchAll(/(?:from\s*|import\s*\(\s*)'([^']+)'/g)) {
        const spec = m[1]!;
        expect(spec.startsWith('node:') || builtins.has(spec.split('/')[0]!), `${f} imports ${spec}`).toBe(false);
        expect(
          spec.startsWith('./') || spec === '@owlet/errors',
          `${f} imports ${spec}: the tokenizer's only runtime dependency is @owlet/errors`,
        ).toBe(true);
      }
      expect(src, `${f} uses console.log`).not.toMatch(/console\.log/);
    }
  });

  it('its one dependency, @owlet/errors, has no dependencies and imports nothing', () => {
    const pkg = JSON.parse(readFileSync(join(here, '../package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    expect(Object.keys(pkg.dependencies ?? {})).toEqual(['@owlet/errors']);
    const errorsDir = join(here, '../../errors');
    const errorsPkg = JSON.parse(readFileSync(join(errorsDir, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(errorsPkg.dependencies ?? {}).toEqual({});
    const files = readdirSync(join(errorsDir, 'src')).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    expect(files).toContain('index.ts');
    for (const f of files) {
      const src = readFileSync(join(errorsDir, 'src', f), 'utf8');
      for (const m of src.matchAll(/(?:from\s*|import\s*\(\s*)'([^']+)'/g)) {
        expect(m[1]!.startsWith('./'), `@owlet/errors ${f} imports ${m[1]}`).toBe(true);
      }
    }
  });
});
