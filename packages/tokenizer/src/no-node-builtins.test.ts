import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

describe('browser safety', () => {
  it('library sources (everything but tests and test helpers) import no Node built-ins and no packages', () => {
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
        expect(spec.startsWith('./'), `${f} imports ${spec}: the tokenizer has no runtime dependencies`).toBe(true);
      }
      expect(src, `${f} uses console.log`).not.toMatch(/console\.log/);
    }
  });
});
