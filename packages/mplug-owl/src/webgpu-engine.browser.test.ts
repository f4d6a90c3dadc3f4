import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { REPO_ROOT, fixturePath, runInBrowser, selectedBackends } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

// The fixture cases through owlet's WGSL kernels in headless Chromium (WebGPU on SwiftShader there).
describe.runIf(selectedBackends().includes('webgpu'))('the WebGPU engine in the browser', () => {
  it('every fixture case: fp32 logits ≤ 1e-4, greedy ids identical, every op call owned', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'owlet-engine-browser-'));
    try {
      for (const d of ['owl2_tiny', 'owl1_tiny']) {
        mkdirSync(join(dir, d));
        for (const f of readdirSync(fixturePath(d)))
          if (/^(config\.json|model\.safetensors|case_(one_image|two_images|text_only)\.(json|safetensors))$/.test(f))
            copyFileSync(fixturePath(d, f), join(dir, d, f));
        copyFileSync(
          join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random/tokenizer.model'),
          join(dir, d, 'tokenizer.model'),
        );
      }
      const entry = fileURLToPath(new URL('../test/browser/engine-entry.ts', import.meta.url));
      const { result } = await runInBrowser<{
        backend: string;
        runtime: string;
        results: {
          case: string;
          logitsDiff: number;
          stepDiff: number;
          ids: number[];
          expected: number[];
          calls: Record<string, [number, number]>;
        }[];
      }>(entry, { staticDir: dir, timeoutMs: 540_000 });
      expect(result.backend).toBe('webgpu');
      expect(result.runtime).toBe('browser');
      expect(result.results.map((r) => r.case)).toEqual([
        'owl2_tiny/one_image',
        'owl2_tiny/two_images',
        'owl2_tiny/text_only',
        'owl1_tiny/one_image',
      ]);
      for (const r of result.results) {
        expect(r.logitsDiff, r.case).toBeLessThanOrEqual(1e-4);
        expect(r.stepDiff, r.case).toBeLessThanOrEqual(1e-4);
        expect(r.ids, r.case).toEqual(r.expected);
        let total = 0;
        for (const [op, [calls, owned]] of Object.entries(r.calls)) {
          expect(owned, `${r.case} ${op}: ${owned} of ${calls} calls owned`).toBe(calls);
          total += calls;
        }
        expect(total).toBeGreaterThan(0);
        expect(r.calls.attention?.[0]).toBeGreaterThan(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
