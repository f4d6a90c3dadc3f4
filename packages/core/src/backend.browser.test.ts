import { fileURLToPath } from 'node:url';

import { findChromium, runInBrowser, selectedBackends } from '@owlet/test-utils';
import { describe, expect, it } from 'vitest';

// The browser half of the WebGPU path: the same initBackend and ops, bundled for headless Chromium.
describe.runIf(selectedBackends().includes('webgpu'))('initBackend in the browser', () => {
  it('creates the WebGPU device in headless Chromium and the ops match float64 references', async () => {
    expect(
      findChromium(),
      "Debian's chromium is required for browser tests (scripts/setup.sh installs it)",
    ).toBeDefined();
    const entry = fileURLToPath(new URL('../test/browser/webgpu-entry.ts', import.meta.url));
    const { result } = await runInBrowser<{
      backend: string;
      name: string;
      runtime: string;
      device: { maxStorageBufferBindingSize: number; architecture: string };
      attnDiff: number;
      rmsDiff: number;
    }>(entry);
    expect(result.backend).toBe('webgpu');
    expect(result.runtime).toBe('browser');
    expect(result.device.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(result.attnDiff).toBeLessThan(2e-5);
    expect(result.rmsDiff).toBeLessThan(5e-5);
  });
});
