/**
 * Finds the examples the documentation shows: every ```ts block of the site's pages, the root README
 * and the package READMEs, and every `@example` in the TSDoc of the packages' sources. Each becomes
 * a test (examples.test.ts) that runs it on the tiny models and requires it to end with an assertion.
 *
 * Info-string options after `ts` (VitePress highlights by the first word only):
 * - `ts skip: REASON` — not run; reported as skipped with REASON (only for what needs the real 7B).
 * - `ts server` — run with `owlet serve` on the bundled tiny model; its base URL is in
 *   `process.env.OWLET_BASE_URL` (`http://127.0.0.1:PORT/v1`).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface Example {
  /** Path from the repository root. */
  file: string;
  /** 1-based line of the opening fence (or of the `@example` tag). */
  line: number;
  code: string;
  /** Why it is not run, when marked `skip:`. */
  skip?: string;
  /** Needs a running `owlet serve`. */
  server: boolean;
}

const FENCE = /^(\s*)(`{3,})ts(?:\s+(.*))?$/;

/** The ```ts blocks of one Markdown text. */
export function extractMarkdown(file: string, text: string): Example[] {
  const lines = text.split('\n');
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = FENCE.exec(lines[i] as string);
    if (!m) continue;
    const [, indent = '', ticks = '```', info = ''] = m;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j] as string;
      if (l.trim() === ticks) break;
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    if (j === lines.length) throw new Error(`${file}:${i + 1}: unclosed code block`);
    out.push({ file, line: i + 1, code: body.join('\n'), ...parseInfo(file, i + 1, info) });
    i = j;
  }
  return out;
}

function parseInfo(file: string, line: number, info: string): { skip?: string; server: boolean } {
  const t = info.trim();
  if (t === '') return { server: false };
  if (t === 'server') return { server: true };
  const skip = /^skip:\s*(\S.*)$/.exec(t);
  if (skip?.[1]) return { skip: skip[1], server: false };
  throw new Error(`${file}:${line}: unknown code block option "${t}" (use "skip: REASON" or "server")`);
}

/** The `@example` code of the TSDoc comments in one source text (a fenced ```ts block after the tag). */
export function extractTsdoc(file: string, text: string): Example[] {
  const lines = text.split('\n');
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\*\s*@example\b/.test(lines[i] as string)) continue;
    const comment: string[] = [];
    for (let j = i + 1; j < lines.length && !/\*\//.test(lines[j] as string); j++) {
      comment.push((lines[j] as string).replace(/^\s*\* ?/, ''));
    }
    const found = extractMarkdown(file, comment.join('\n'));
    if (found.length === 0) throw new Error(`${file}:${i + 1}: @example without a \`\`\`ts block`);
    for (const e of found) out.push({ ...e, line: i + 1 });
  }
  return out;
}

/**
 * Whether the code's last statement is an assertion: the last line that starts a statement at
 * column 0 (not a closing bracket or a comment) calls `assert…(` or `expect(`.
 */
export function endsWithAssertion(code: string): boolean {
  const starts = code
    .split('\n')
    .filter((l) => l.length > 0 && !/^\s/.test(l) && !/^[)\]}]/.test(l) && !l.startsWith('//'));
  const last = starts.at(-1);
  return last !== undefined && /^(await\s+)?(assert(\.\w+)*|expect)\(/.test(last);
}

function walk(dir: string, keep: (path: string) => boolean, out: string[]): void {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, keep, out);
    else if (keep(p)) out.push(p);
  }
}

/** Every example of the repository at `root`, in a stable order. */
export function collectExamples(root: string): Example[] {
  const md: string[] = [];
  walk(join(root, 'docs'), (p) => p.endsWith('.md') && !relative(root, p).startsWith('docs/api/'), md);
  md.push(join(root, 'README.md'));
  for (const group of ['packages', 'apps']) {
    for (const name of readdirSync(join(root, group))) {
      const readme = join(root, group, name, 'README.md');
      if (existsSync(readme)) md.push(readme);
    }
  }
  const sources: string[] = [];
  for (const name of readdirSync(join(root, 'packages'))) {
    const src = join(root, 'packages', name, 'src');
    if (existsSync(src)) walk(src, (p) => p.endsWith('.ts') && !/\.(test|testutil)\.ts$/.test(p), sources);
  }
  const out: Example[] = [];
  for (const p of md.sort()) out.push(...extractMarkdown(relative(root, p), readFileSync(p, 'utf8')));
  for (const p of sources.sort()) out.push(...extractTsdoc(relative(root, p), readFileSync(p, 'utf8')));
  return out;
}
