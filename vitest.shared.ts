/**
 * Shared vitest settings: workspace packages resolve to their TypeScript sources (no build needed
 * before tests), one process per test file (Dawn and the wasm backend are per-process), and the
 * WebGPU environment for SwiftShader is prepared by @owlet/test-utils' setup file.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vitest/config';

const root = dirname(fileURLToPath(import.meta.url));

function workspaceAliases(): Record<string, string> {
  const aliases: Record<string, string> = {};
  for (const group of ['packages', 'apps']) {
    const dir = join(root, group);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const pkgPath = join(dir, name, 'package.json');
      if (!existsSync(pkgPath)) continue;
      const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { name?: string };
      const entry = join(dir, name, 'src', 'index.ts');
      if (pkg.name && existsSync(entry)) aliases[pkg.name] = entry;
    }
  }
  return aliases;
}

export const sharedConfig = defineConfig({
  resolve: {
    alias: workspaceAliases(),
  },
  test: {
    pool: 'forks',
    setupFiles: [resolve(root, 'packages/test-utils/src/setup.ts')],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
  },
});
