import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { REPO_ROOT, runInBrowser, selectedBackends } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

import { fromPretrained } from './pretrained.js';

// The same model answers the same greedy question in headless Chromium (WebGPU, weights fetched
// over HTTP) as in Node.
describe.runIf(selectedBackends().includes('webgpu'))('mPLUG-Owl2 in the browser', () => {
  it('loads by URL with progress, chats on WebGPU, and answers as Node does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'owlet-browser-'));
    try {
      cpSync(join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random'), join(dir, 'model'), { recursive: true });
      cpSync(join(REPO_ROOT, 'apps/cli/assets/owl.png'), join(dir, 'owl.png'));
      const entry = fileURLToPath(new URL('../test/browser/chat-entry.ts', import.meta.url));
      const { result } = await runInBrowser<{
        backend: string;
        text: string;
        answer: string;
        tokens: number;
        events: string[];
      }>(entry, {
        staticDir: dir,
        timeoutMs: 180_000,
      });
      expect(result.backend).toBe('webgpu');
      expect(result.tokens).toBe(3);
      expect(result.text.trim()).toBe(result.answer);
      expect(result.events).toContain('done:model-00002-of-00002.safetensors');
      expect(result.events.at(-1)).toBe('ready:');

      const model = await fromPretrained(join(dir, 'model'), { backend: 'cpu' });
      const { readFileSync } = await import('node:fs');
      const stream = model.chat({
        messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in the picture?' }] }],
        images: [readFileSync(join(dir, 'owl.png'))],
        max_new_tokens: 3,
      });
      for await (const _ of stream) {
        // drain
      }
      expect((await stream.result).text).toBe(result.answer);
      model.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
