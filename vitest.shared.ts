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

/**
 * Each workspace package's `exports` mapped to its TypeScript sources, matched exactly (so a subpath
 * such as `@owlet/test-utils/random` never resolves into the package's index).
 */
function workspaceAliases(): { find: RegExp; replacement: string }[] {
  const aliases: { find: RegExp; replacement: string }[] = [];
  for (const group of ['packages', 'apps']) {
    const dir = join(root, group);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const pkgPath = join(dir, name, 'package.json');
      if (!existsSync(pkgPath)) continue;
      const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { name?: string; exports?: unknown };
      if (!pkg.name) continue;
      const exact = (spec: string) => new RegExp(`^${spec.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`);
      const entry = join(dir, name, 'src', 'index.ts');
      if (existsSync(entry)) aliases.push({ find: exact(pkg.name), replacement: entry });
      if (pkg.exports && typeof pkg.exports === 'object') {
        for (const [sub, target] of Object.entries(pkg.exports as Record<string, unknown>)) {
          if (sub === '.' || typeof target !== 'string' || !target.endsWith('.ts')) continue;
          aliases.push({ find: exact(`${pkg.name}/${sub.slice(2)}`), replacement: join(dir, name, target) });
        }
      }
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
