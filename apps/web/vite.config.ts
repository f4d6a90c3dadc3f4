import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vite';

import { bundleSizeReport, owletBundledModel } from './build/owlet-model-plugin.js';
import { bundledModelDir } from './model.config.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');

/** The workspace packages from their TypeScript sources (no package build needed first). */
function workspaceAliases(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(repo, 'packages'))) {
    const pkg = join(repo, 'packages', name, 'package.json');
    const entry = join(repo, 'packages', name, 'src', 'index.ts');
    if (!existsSync(pkg) || !existsSync(entry)) continue;
    const { name: id } = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string };
    if (id) out[id] = entry;
  }
  return out;
}

const modelDir = bundledModelDir(here);

// Threads of the WASM backend need SharedArrayBuffer, which needs cross-origin isolation.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  root: here,
  // Relative URLs: dist works from any path (a subfolder of a static host, file servers).
  base: './',
  resolve: { alias: workspaceAliases() },
  plugins: [owletBundledModel(modelDir), bundleSizeReport()],
  worker: {
    format: 'es',
    rollupOptions: {
      // Node-only modules sit behind dynamic imports that browsers never reach (checkpoint file
      // access, Dawn, sharp); leave them out as the test bundles do.
      external: [/^node:/],
    },
  },
  build: {
    target: 'es2022',
    outDir: 'dist',
    emptyOutDir: true,
    // Several MB of tfjs in the worker chunk is expected.
    chunkSizeWarningLimit: 4096,
    rollupOptions: { external: [/^node:/] },
  },
  server: { headers: isolation },
  preview: { headers: isolation },
});
