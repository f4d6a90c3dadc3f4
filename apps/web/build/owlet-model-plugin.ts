/**
 * Vite plugins of the web app (build side, Node):
 *  - `owletBundledModel(dir)`: copies a checkpoint folder into the build as `models/<name>/…`, writes
 *    its manifest (`owlet-manifest.json`: every file's size and sha256) beside it and exposes the same
 *    manifest to the app as `virtual:owlet-bundled-model`, so the worker can check every byte it loads
 *    (from the network or from the browser cache) against hashes that ship inside the JS bundle.
 *    In `vite` (dev) the folder is served from disk under the same path.
 *  - `bundleSizeReport()`: after a build, prints the size of what a visitor downloads (JS, CSS, HTML,
 *    wasm; raw and gzip), the model files apart, and writes it to `dist/bundle-size.json`.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { gzipSync } from 'node:zlib';

import type { Plugin, ResolvedConfig } from 'vite';

import type { ModelManifest } from '../src/engine/manifest.js';

export const VIRTUAL_ID = 'virtual:owlet-bundled-model';
const RESOLVED_ID = `\0${VIRTUAL_ID}`;

/** Reads a checkpoint folder into a manifest (plain files only, sorted by name). */
export function buildManifest(dir: string): ModelManifest {
  const id = basename(resolve(dir));
  const names = readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isFile() && n !== 'owlet-manifest.json' && !n.startsWith('.'))
    .sort();
  if (!names.includes('config.json')) throw new Error(`bundled model ${dir} has no config.json`);
  const files = names.map((name) => {
    const bytes = readFileSync(join(dir, name));
    return { name, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  return {
    format: 'owlet-manifest/1',
    id,
    files,
    total_size: files.reduce((a, f) => a + f.size, 0),
    // The random-weights placeholder says so in its config; a trained model does not.
    random_weights: typeof config.owlet_note === 'string',
  };
}

export function owletBundledModel(dir: string): Plugin {
  let manifest: ModelManifest;
  const prefix = () => `models/${manifest.id}/`;
  return {
    name: 'owlet-bundled-model',
    buildStart() {
      manifest = buildManifest(dir);
      for (const f of manifest.files) this.addWatchFile(join(dir, f.name));
    },
    resolveId(id) {
      return id === VIRTUAL_ID ? RESOLVED_ID : undefined;
    },
    load(id) {
      if (id !== RESOLVED_ID) return undefined;
      manifest ??= buildManifest(dir);
      return `export default ${JSON.stringify({ ...manifest, path: prefix() })};`;
    },
    generateBundle() {
      for (const f of manifest.files) {
        this.emitFile({ type: 'asset', fileName: `${prefix()}${f.name}`, source: readFileSync(join(dir, f.name)) });
      }
      this.emitFile({
        type: 'asset',
        fileName: `${prefix()}owlet-manifest.json`,
        source: `${JSON.stringify(manifest, null, 2)}\n`,
      });
    },
    configureServer(server) {
      manifest ??= buildManifest(dir);
      server.middlewares.use((req, res, next) => {
        const url = new URL(req.url ?? '/', 'http://localhost');
        const at = url.pathname.indexOf(`/${prefix()}`);
        if (at < 0) return next();
        const name = decodeURIComponent(url.pathname.slice(at + prefix().length + 1));
        const file = manifest.files.find((f) => f.name === name);
        if (!file && name !== 'owlet-manifest.json') return next();
        res.setHeader('content-type', name.endsWith('.json') ? 'application/json' : 'application/octet-stream');
        res.end(name === 'owlet-manifest.json' ? JSON.stringify(manifest) : readFileSync(join(dir, name)));
      });
    },
  };
}

export interface BundleSizeReport {
  /** What a visitor downloads for the app itself (no model): JS, CSS, HTML, wasm. */
  app: { files: { file: string; bytes: number; gzip: number }[]; bytes: number; gzip: number };
  /** JS the page loads before the worker starts (the UI). */
  page_js: { bytes: number; gzip: number };
  /** The bundled model's files. */
  model: { bytes: number; files: number };
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

/** Measures a built `dist` folder. */
export function measureBundle(outDir: string): BundleSizeReport {
  const files = walk(outDir)
    .map((p) => relative(outDir, p).split(sep).join('/'))
    .filter((f) => f !== 'bundle-size.json');
  const model = files.filter((f) => f.startsWith('models/'));
  const app = files
    .filter((f) => !f.startsWith('models/') && !f.endsWith('.map'))
    .map((file) => {
      const bytes = readFileSync(join(outDir, file));
      return { file, bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
    })
    .sort((a, b) => b.bytes - a.bytes);
  const sum = (xs: { bytes: number; gzip: number }[]) => ({
    bytes: xs.reduce((a, x) => a + x.bytes, 0),
    gzip: xs.reduce((a, x) => a + x.gzip, 0),
  });
  // The page's own scripts: those index.html references (the worker and backends load later).
  const html = readFileSync(join(outDir, 'index.html'), 'utf8');
  const pageJs = app.filter((f) => f.file.endsWith('.js') && html.includes(f.file));
  return {
    app: { files: app, ...sum(app) },
    page_js: sum(pageJs),
    model: { bytes: model.reduce((a, f) => a + statSync(join(outDir, f)).size, 0), files: model.length },
  };
}

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

export function formatBundleReport(r: BundleSizeReport): string {
  const lines = ['owlet web bundle (what a visitor downloads, model apart):'];
  for (const f of r.app.files) {
    lines.push(`  ${f.file.padEnd(48)} ${kib(f.bytes).padStart(11)}  gzip ${kib(f.gzip).padStart(10)}`);
  }
  lines.push(`  ${'total'.padEnd(48)} ${kib(r.app.bytes).padStart(11)}  gzip ${kib(r.app.gzip).padStart(10)}`);
  lines.push(`  page script before the worker starts: ${kib(r.page_js.bytes)} (gzip ${kib(r.page_js.gzip)})`);
  lines.push(`  bundled model: ${r.model.files} files, ${(r.model.bytes / 2 ** 20).toFixed(2)} MiB`);
  return lines.join('\n');
}

export function bundleSizeReport(): Plugin {
  let config: ResolvedConfig;
  return {
    name: 'owlet-bundle-size',
    apply: 'build',
    configResolved(c) {
      config = c;
    },
    closeBundle() {
      // Only the app build (its index.html), not the worker sub-builds.
      const outDir = resolve(config.root, config.build.outDir);
      let report: BundleSizeReport;
      try {
        report = measureBundle(outDir);
      } catch {
        return;
      }
      writeFileSync(join(outDir, 'bundle-size.json'), `${JSON.stringify(report, null, 2)}\n`);
      config.logger.info(formatBundleReport(report));
    },
  };
}
