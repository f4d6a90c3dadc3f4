import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

describe('committed kernels binary', () => {
  it('is what scripts/build-wasm.mjs builds from assembly/kernels.ts now (run it after editing the kernels)', () => {
    const tmp = mkdtempSync(join(tmpdir(), 'owlet-wasm-'));
    try {
      const out = join(tmp, 'kernels.wasm.ts');
      execFileSync(process.execPath, [join(here, '../../scripts/build-wasm.mjs'), '--out', out], { stdio: 'pipe' });
      expect(readFileSync(out, 'utf8') === readFileSync(join(here, 'kernels.wasm.ts'), 'utf8')).toBe(true);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 600_000); // two AssemblyScript builds: ~10 s idle, minutes on a loaded 2-core machine
});
