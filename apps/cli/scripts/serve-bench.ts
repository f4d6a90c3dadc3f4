/**
 * Throughput and latency of `owlet serve` on the CLI's default model (not a test: it prints
 * figures). Starts the server from source on a free loopback port, warms it up, then sends
 * sequential requests (text-only, and image + text with the bundled owl picture) and a
 * concurrent batch, and prints requests/s with p50/p99 latency per scenario, plus one JSON line.
 *
 *   pnpm --filter owlet serve-bench [-- --requests 100 --max-tokens 16 --concurrency 4 --model DIR]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== '--'), // pnpm passes its own --
  options: {
    requests: { type: 'string' },
    'max-tokens': { type: 'string' },
    concurrency: { type: 'string' },
    model: { type: 'string' },
    backend: { type: 'string' },
  },
});
const N = Number(values.requests ?? 100);
const MAX_TOKENS = Number(values['max-tokens'] ?? 16);
const CONCURRENCY = Number(values.concurrency ?? 4);
const owl = `data:image/png;base64,${readFileSync(join(here, '..', 'assets', 'owl.png')).toString('base64')}`;

const proc = spawn(
  join(root, 'node_modules', '.bin', 'tsx'),
  [
    '--tsconfig',
    join(root, 'tsconfig.base.json'),
    join(here, '..', 'src', 'main.ts'),
    'serve',
    '--port',
    '0',
    '--quiet',
    '--max-queue',
    String(Math.max(64, CONCURRENCY)),
    ...(values.model ? ['--model', values.model] : []),
    ...(values.backend ? ['--backend', values.backend] : []),
  ],
  { stdio: ['ignore', 'ignore', 'pipe'] },
);
let err = '';
proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
const started = Date.now();
while (!/ ready in /.test(err)) {
  if (proc.exitCode !== null || Date.now() - started > 120_000) throw new Error(`the server did not start:\n${err}`);
  await new Promise((r) => setTimeout(r, 50));
}
const url = /listening on (http:\/\/\S+)/.exec(err)?.[1] ?? '';
const modelId = ((await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] }).data[0]?.id;

function body(image: boolean, i: number): string {
  const text = `Question ${i}: what is in the picture?`;
  return JSON.stringify({
    model: modelId,
    messages: [
      {
        role: 'user',
        content: image
          ? [
              { type: 'image_url', image_url: { url: owl } },
              { type: 'text', text },
            ]
          : text,
      },
    ],
    max_tokens: MAX_TOKENS,
  });
}

async function one(image: boolean, i: number): Promise<{ ms: number; tokens: number }> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body(image, i),
  });
  const j = (await r.json()) as { usage?: { completion_tokens: number } };
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${JSON.stringify(j)}`);
  return { ms: performance.now() - t0, tokens: j.usage?.completion_tokens ?? 0 };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? 0;
};

interface Row {
  scenario: string;
  requests: number;
  concurrency: number;
  req_per_s: number;
  p50_ms: number;
  p99_ms: number;
  completion_tokens_per_s: number;
}
const rows: Row[] = [];
async function scenario(name: string, image: boolean, concurrency: number): Promise<void> {
  for (let i = 0; i < 5; i++) await one(image, i); // warm-up
  const lat: number[] = [];
  let tokens = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < N) {
        const r = await one(image, next++);
        lat.push(r.ms);
        tokens += r.tokens;
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  rows.push({
    scenario: name,
    requests: N,
    concurrency,
    req_per_s: N / s,
    p50_ms: pct(lat, 50),
    p99_ms: pct(lat, 99),
    completion_tokens_per_s: tokens / s,
  });
}

try {
  await scenario('text', false, 1);
  await scenario('image+text', true, 1);
  await scenario('image+text', true, CONCURRENCY);
} finally {
  proc.kill('SIGTERM');
}
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
process.stdout.write(`owlet serve on ${modelId}, max_tokens ${MAX_TOKENS}, load average ${load}\n`);
process.stdout.write(
  '| scenario | concurrency | requests/s | p50 ms | p99 ms | completion tokens/s |\n|---|---|---|---|---|---|\n',
);
for (const r of rows)
  process.stdout.write(
    `| ${r.scenario} | ${r.concurrency} | ${r.req_per_s.toFixed(2)} | ${r.p50_ms.toFixed(0)} | ${r.p99_ms.toFixed(0)} | ${r.completion_tokens_per_s.toFixed(1)} |\n`,
  );
process.stdout.write(`${JSON.stringify({ model: modelId, max_tokens: MAX_TOKENS, load, rows })}\n`);
