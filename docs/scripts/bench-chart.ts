/**
 * The benchmark chart of the backends page: reads the "Latest results" table of
 * packages/bench/README.md (the figures `pnpm bench --quick` printed) and draws it as an SVG bar
 * chart into docs/public/generated/bench-chart.svg. Run by `build:site` and `dev` before VitePress.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchRow {
  model: string;
  figure: string;
  /** tokens/s by engine column, e.g. `owlet wasm f32`, `llama.cpp F32`. */
  values: Map<string, number>;
}

/** The throughput rows (tokens/s) of the README's "Latest results" table. */
export function benchFigures(readme: string): { date: string; rows: BenchRow[] } {
  const start = readme.indexOf('## Latest results');
  if (start < 0) throw new Error('packages/bench/README.md has no "## Latest results" section');
  const section = readme.slice(start);
  const date = /`--quick`, ([^,]+),/.exec(section)?.[1] ?? 'unknown date';
  const lines = section.split('\n');
  const headerAt = lines.findIndex((l) => /^\|\s*model\s*\|\s*figure\s*\|/.test(l));
  if (headerAt < 0) throw new Error('no | model | figure | table under "## Latest results"');
  const cells = (l: string) =>
    l
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
  const header = cells(lines[headerAt] as string);
  const rows: BenchRow[] = [];
  for (const l of lines.slice(headerAt + 2)) {
    if (!l.startsWith('|')) break;
    const c = cells(l);
    const values = new Map<string, number>();
    header.forEach((h, i) => {
      if (i < 2 || h.includes('/')) return; // model, figure, and the ratio column
      const v = Number.parseFloat(c[i] ?? '');
      if (Number.isFinite(v)) values.set(h, v);
    });
    rows.push({ model: c[0] ?? '', figure: c[1] ?? '', values });
  }
  if (rows.length === 0) throw new Error('the "Latest results" table has no rows');
  return { date, rows };
}

const COLOURS = ['#2563eb', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A grouped horizontal bar chart: one group per row (figure), one bar per engine. */
export function chartSvg(title: string, rows: BenchRow[]): string {
  const engines = [...new Set(rows.flatMap((r) => [...r.values.keys()]))];
  const max = Math.max(...rows.flatMap((r) => [...r.values.values()]));
  const bar = 16;
  const gap = 18;
  const left = 190;
  const width = 760;
  const plot = width - left - 70;
  const groupH = engines.length * bar + gap;
  const top = 60;
  const height = top + rows.length * groupH + 20;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  engines.forEach((e, i) => {
    const x = 10 + i * 150;
    out.push(`<rect x="${x}" y="32" width="12" height="12" fill="${COLOURS[i % COLOURS.length]}"/>`);
    out.push(`<text x="${x + 16}" y="42">${esc(e)}</text>`);
  });
  rows.forEach((r, g) => {
    const y0 = top + g * groupH;
    out.push(
      `<text x="${left - 8}" y="${y0 + (engines.length * bar) / 2 + 4}" text-anchor="end">${esc(r.figure)}</text>`,
    );
    engines.forEach((e, i) => {
      const v = r.values.get(e);
      if (v === undefined) return;
      const w = Math.max(1, (v / max) * plot);
      const y = y0 + i * bar;
      out.push(
        `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${bar - 3}" fill="${COLOURS[i % COLOURS.length]}"/>`,
      );
      out.push(`<text x="${(left + w + 4).toFixed(1)}" y="${y + bar - 5}">${v}</text>`);
    });
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

const here = dirname(fileURLToPath(import.meta.url));
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const readme = readFileSync(join(here, '..', '..', 'packages', 'bench', 'README.md'), 'utf8');
  const { date, rows } = benchFigures(readme);
  const title = `${rows[0]?.model ?? ''} decoder, tokens/s, 1 thread (pnpm bench --quick, ${date})`;
  const dir = join(here, '..', 'public', 'generated');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bench-chart.svg'), chartSvg(title, rows));
}
