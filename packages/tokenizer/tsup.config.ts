import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { gzipSync } from 'node:zlib';

import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // Prints the bundle size and fails the build if the browser bundle imports a Node built-in.
  onSuccess: async () => {
    const code = readFileSync('dist/index.js');
    const text = code.toString('utf8');
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    const imported = [
      ...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm),
      ...text.matchAll(/^\s*import\s*["']([^"']+)["']/gm),
      ...text.matchAll(/\b(?:import|require)\s*\(\s*["']([^"']+)["']\s*\)/g),
    ].flatMap((m) => (m[1] === undefined ? [] : [m[1]]));
    const bad = imported.filter((m) => builtins.has(m) || m.startsWith('node:'));
    if (bad.length > 0) throw new Error(`dist/index.js imports Node built-ins: ${bad.join(', ')}`);
    console.log(
      `@owlet/tokenizer dist/index.js: ${(code.length / 1024).toFixed(1)} KiB (${(gzipSync(code).length / 1024).toFixed(1)} KiB gzip); imports: ${imported.length === 0 ? 'none' : imported.join(', ')}`,
    );
  },
});
