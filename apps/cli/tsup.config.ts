import { defineConfig } from 'tsup';

export default defineConfig({
  // The serve engine runs in a worker thread: its entry sits beside main.js (src/serve/engine.ts
  // looks for ./engine-worker.js next to the bundle).
  entry: { main: 'src/main.ts', 'engine-worker': 'src/serve/engine-worker.ts' },
  format: ['esm'],
  sourcemap: true,
  clean: true,
  target: 'node20',
  banner: { js: '#!/usr/bin/env node' },
});
