/**
 * owlet side by side with llama.cpp (node-llama-cpp) and ONNX Runtime (onnxruntime-node) on this
 * machine, same weights, same thread count, runs interleaved, medians. Prints a table and writes
 * JSON. `--quick`: the ~100M decoder and a 2-layer ViT-L/14-448 (+ full abstractor), 3 runs.
 *
 *   pnpm --filter @owlet/bench bench [--quick] [--runs N] [--threads 1,2] [--models …] [--cache-dir DIR] [--out FILE]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, platform, arch, release, loadavg } from 'node:os';

import type { WeightDType } from '@owlet/core';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

import { ggmlTensorBytes, type GgmlTypeName } from './gguf.js';
import { llamaGgufTensorPlan } from './llama-gguf.js';
import { measureStreamingRead } from './roofline.js';
import { LLAMA_PRESETS, defaultCacheDir, ensureCachedLlama, numLlamaParameters, type LlamaPreset } from './weights.js';
import type { Memory, Reply, Request } from './worker.js';

const here = dirname(fileURLToPath(import.meta.url));
type RequestBody = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;
const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// options

const argv = process.argv.slice(2);
const USAGE = `usage: pnpm bench [--quick] [--runs N] [--threads 1,2] [--models a,b] [--no-vision] [--cache-dir DIR] [--out FILE]

  --quick        ~100M (fp32/q8/q4) and ~1B (q8/q4, 1 run) decoders, a 2-layer ViT-L/14-448 (+ full abstractor)
  --runs N       timed runs per figure (median reported; default 3)
  --threads L    thread counts every engine runs at (default 1,2)
  --models L     only these decoder presets (llama-134m, llama-953m, llama2-7b)
  --no-vision    skip the vision figures
  --cache-dir    where random weights, GGUF and ONNX files are cached (default ~/.cache/owlet-bench)
  --out FILE     JSON output (default packages/bench/bench-results/latest[-quick].json)`;
{
  const known = new Set([
    '--quick',
    '--runs',
    '--threads',
    '--cache-dir',
    '--out',
    '--models',
    '--no-vision',
    '--help',
    '-h',
  ]);
  const valued = new Set(['--runs', '--threads', '--cache-dir', '--out', '--models']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!known.has(a)) {
      process.stderr.write(`bench: unknown argument ${a}\n${USAGE}\n`);
      process.exit(2);
    }
    if (valued.has(a)) i++;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
}
const flag = (name: string) => argv.includes(`--${name}`);
const opt = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : fallback;
};
const quick = flag('quick');
const runs = Number(opt('runs', '3'));
// Every engine runs at each of these thread counts (owlet: its CPU engine's threads).
const threadList = opt('threads', '1,2')
  .split(',')
  .map(Number)
  .filter((n) => Number.isInteger(n) && n > 0);
const cacheDir = resolve(opt('cache-dir', defaultCacheDir()));
const outPath = resolve(opt('out', join(here, '..', 'bench-results', quick ? 'latest-quick.json' : 'latest.json')));
const SEED = 20240611;
const PROMPTS = [128, 512];
const NEW_TOKENS = 64;
const VISION_LAYERS = quick ? 2 : 24;

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// engine processes

class EngineProcess {
  private readonly child: ChildProcess;
  private next = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void }>();
  lastMem: Memory | null = null;

  constructor(readonly name: string) {
    this.child = fork(join(here, 'worker.ts'), [], {
      execArgv: ['--import', 'tsx', '--max-old-space-size=16384'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (r: Reply) => {
      this.pending.get(r.id)?.resolve(r);
      this.pending.delete(r.id);
    });
    this.child.on('exit', (code, signal) => {
      for (const p of this.pending.values())
        p.resolve({ id: -1, ok: false, error: `${this.name} exited (code ${code}, signal ${signal})` });
      this.pending.clear();
    });
  }

  async call<T extends Record<string, unknown>>(req: RequestBody): Promise<T> {
    const id = this.next++;
    const reply = await new Promise<Reply>((resolve) => {
      this.pending.set(id, { resolve });
      this.child.send({ ...req, id });
    });
    if (!reply.ok) throw new Error(`${this.name}: ${reply.error}`);
    this.lastMem = reply.mem;
    return reply.result as T;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const done = new Promise((r) => this.child.once('exit', r));
    this.child.kill();
    await done;
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const GB = 1e9;

function tokens(n: number, vocab: number, seed: number): number[] {
  let a = seed >>> 0;
  return Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return 3 + (a % (vocab - 3));
  });
}

/** Bytes a decode step streams: every weight except the embedding table (a gather of one row). */
function decodeBytesPerToken(p: LlamaPreset, type: GgmlTypeName): number {
  return llamaGgufTensorPlan(p.config, type)
    .filter((t) => t.gguf !== 'token_embd.weight')
    .reduce((n, t) => n + ggmlTensorBytes(t.type, t.shape), 0);
}

function fileBytes(p: LlamaPreset, type: GgmlTypeName): number {
  return llamaGgufTensorPlan(p.config, type).reduce((n, t) => n + ggmlTensorBytes(t.type, t.shape), 0);
}

interface Figure {
  engine: string;
  format: string;
  threads: number;
  values: number[];
  median: number;
  unit: string;
}

/** One owlet ÷ peer ratio (> 1: owlet faster; vision: peer ms ÷ owlet ms). */
interface Ratio {
  figure: 'decode' | 'prefill128' | 'prefill512' | 'vision';
  model: string;
  dtype: WeightDType;
  threads: number;
  ratio: number;
}

interface DecoderResult {
  model: string;
  label: string;
  params: number;
  skipped?: string;
  notes: string[];
  figures: Record<string, Figure[]>;
  roofline: Record<string, { bytesPerToken: number; gbPerS: number; percent: number }>;
  memory: Record<string, { weightBytes: number; peakRssBytes: number; rssPerWeight: number }>;
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** owlet dtype ↔ the GGUF type llama.cpp runs on the same weights. */
const PAIRS: readonly [WeightDType, GgmlTypeName][] = [
  ['fp32', 'F32'],
  ['q8', 'Q8_0'],
  ['q4', 'Q4_0'],
];

const ggmlTypeOf = (d: WeightDType): GgmlTypeName => (PAIRS.find(([x]) => x === d) ?? ['fp32', 'F32'])[1];

// ---------------------------------------------------------------------------------------------
// decoder

interface DecoderPlan {
  preset: LlamaPreset;
  runs: number;
  prompts: number[];
  newTokens: number;
  dtypes: readonly WeightDType[];
  /** Weights generated in owlet's process (no files; llama.cpp not run): for the 7B shape. */
  random?: boolean;
}

async function benchDecoder(plan: DecoderPlan, roofGbPerS: number, ratios: Ratio[]): Promise<DecoderResult> {
  const p = plan.preset;
  const params = numLlamaParameters(p.config);
  const res: DecoderResult = {
    model: p.name,
    label: p.label,
    params,
    notes: [],
    figures: {},
    roofline: {},
    memory: {},
  };
  const pairs = PAIRS.filter(([d]) => plan.dtypes.includes(d));
  const cached = plan.random
    ? { safetensors: '', gguf: {} as Partial<Record<GgmlTypeName, string>> }
    : await ensureCachedLlama(
        p,
        SEED,
        pairs.map(([, t]) => t),
        cacheDir,
        log,
      );
  if (plan.random) {
    res.notes.push(
      'owlet only: weights generated in its process tensor by tensor (streamed into q4); llama.cpp needs a GGUF file written from 27 GB of float32, about an hour on this machine',
    );
  }
  const samples = new Map<string, number[]>();
  const add = (k: string, v: number) => samples.set(k, [...(samples.get(k) ?? []), v]);
  const engines: { key: string; engine: string; format: string; dtype: WeightDType; threads: number }[] = [];
  for (const t of threadList) {
    const group: {
      key: string;
      engine: string;
      format: string;
      dtype: WeightDType;
      proc: EngineProcess;
      path: string;
    }[] = [];
    try {
      for (const [dtype, type] of pairs) {
        const o = new EngineProcess(`owlet-${dtype}-${t}t`);
        // wasm backend for the tfjs ops around the owned kernels; weights packed in the CPU engine
        await o.call({ cmd: 'init', engine: 'owlet', backend: 'cpu', dtype, threads: t });
        group.push({
          key: `owlet-${dtype}-${t}t`,
          engine: 'owlet',
          format: dtype,
          dtype,
          proc: o,
          path: cached.safetensors,
        });
        if (plan.random) continue;
        const l = new EngineProcess(`llama.cpp-${type}-${t}t`);
        await l.call({ cmd: 'init', engine: 'llamacpp', threads: t });
        group.push({
          key: `llama.cpp-${type}-${t}t`,
          engine: 'llama.cpp',
          format: type,
          dtype,
          proc: l,
          path: cached.gguf[type] as string,
        });
      }
      for (const e of [...group]) {
        try {
          const r = await e.proc.call<{ loadMs: number; weightBytes?: number }>(
            plan.random
              ? { cmd: 'llama.random', config: p.config, seed: SEED }
              : { cmd: 'llama.load', config: p.config, path: e.path, contextSize: 1024 },
          );
          log(`${p.name}: ${e.key} loaded in ${(r.loadMs / 1000).toFixed(1)} s`);
          if (r.weightBytes) res.memory[e.key] = { weightBytes: r.weightBytes, peakRssBytes: 0, rssPerWeight: 0 };
          await e.proc.call({ cmd: 'llama.run', prompt: tokens(16, p.config.vocab_size, 1), newTokens: 4 }); // warm-up
        } catch (err) {
          const why = `${e.key} could not run this model: ${(err as Error).message.split('\n')[0]}`;
          res.notes.push(why);
          log(`${p.name}: ${why}`);
          await e.proc.close().catch(() => {});
          group.splice(group.indexOf(e), 1);
        }
      }
      for (let r = 0; r < plan.runs; r++) {
        for (const len of plan.prompts) {
          const prompt = tokens(len, p.config.vocab_size, 100 + r * 7 + len);
          // interleaved: owlet and its peer alternate, dtype by dtype
          for (const e of group) {
            const m = await e.proc.call<{ prefillMs: number; decodeMs: number; decodeTokens: number }>({
              cmd: 'llama.run',
              prompt,
              newTokens: plan.newTokens,
            });
            add(`${e.key}|prefill${len}`, (len / m.prefillMs) * 1000);
            add(`${e.key}|decode@${len}`, (m.decodeTokens / m.decodeMs) * 1000);
            log(
              `${p.name} run ${r + 1}/${plan.runs} prompt ${len}: ${e.key} prefill ${((len / m.prefillMs) * 1000).toFixed(1)} tok/s, decode ${((m.decodeTokens / m.decodeMs) * 1000).toFixed(2)} tok/s (load ${loadAverage()})`,
            );
          }
        }
      }
      for (const e of group) {
        const weightBytes =
          res.memory[e.key]?.weightBytes ??
          fileBytes(p, e.engine === 'owlet' ? ggmlTypeOf(e.dtype) : (e.format as GgmlTypeName));
        const peak = e.proc.lastMem?.maxRssBytes ?? 0;
        res.memory[e.key] = { weightBytes, peakRssBytes: peak, rssPerWeight: peak / weightBytes };
        engines.push({ key: e.key, engine: e.engine, format: e.format, dtype: e.dtype, threads: t });
      }
    } finally {
      for (const e of group) await e.proc.close();
    }
  }
  const figs = [...plan.prompts.map((l) => `prefill${l}`), ...plan.prompts.map((l) => `decode@${l}`)];
  for (const fig of figs) {
    res.figures[fig] = engines
      .filter((e) => samples.has(`${e.key}|${fig}`))
      .map((e) => {
        const values = samples.get(`${e.key}|${fig}`) as number[];
        return {
          engine: e.engine,
          format: e.format,
          threads: e.threads,
          values,
          median: median(values),
          unit: 'tokens/s',
        };
      });
    for (const f of res.figures[fig] ?? []) {
      if (!fig.startsWith('decode')) continue;
      const type = f.engine === 'owlet' ? ggmlTypeOf(f.format as WeightDType) : (f.format as GgmlTypeName);
      const bytes = decodeBytesPerToken(p, type);
      const gbs = (bytes * f.median) / GB;
      res.roofline[`${f.engine} ${f.format} ${f.threads}t ${fig}`] = {
        bytesPerToken: bytes,
        gbPerS: gbs,
        percent: (100 * gbs) / roofGbPerS,
      };
    }
  }
  for (const t of threadList) {
    for (const [dtype, type] of pairs) {
      const get = (fig: string, engine: string, format: string) =>
        res.figures[fig]?.find((f) => f.engine === engine && f.format === format && f.threads === t);
      const figure = (fig: string, name: Ratio['figure']) => {
        const o = get(fig, 'owlet', dtype);
        const l = get(fig, 'llama.cpp', type);
        if (o && l) ratios.push({ figure: name, model: p.name, dtype, threads: t, ratio: o.median / l.median });
      };
      figure(`decode@${plan.prompts[0]}`, 'decode');
      if (plan.prompts.includes(128)) figure('prefill128', 'prefill128');
      if (plan.prompts.includes(512)) figure('prefill512', 'prefill512');
    }
  }
  return res;
}

function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

// ---------------------------------------------------------------------------------------------
// vision

interface VisionResult {
  layers: number;
  note: string;
  figures: Figure[];
  memory: Record<string, { weightBytes: number; peakRssBytes: number; rssPerWeight: number }>;
}

async function benchVision(ratios: Ratio[]): Promise<VisionResult> {
  const dir = join(cacheDir, `vit-l14-448-abstractor-${VISION_LAYERS}l`);
  mkdirSync(dir, { recursive: true });
  const weights = join(dir, 'model');
  const onnx = join(dir, 'model.onnx');
  const figures: Figure[] = [];
  const memory: VisionResult['memory'] = {};
  for (const t of threadList) {
    const owl = new EngineProcess(`owlet-vision-${t}t`);
    const rt = new EngineProcess(`onnxruntime-${t}t`);
    try {
      // the towers' Linears as fp32 in the CPU engine (threaded); convolution, norms, attention: tfjs-wasm
      await owl.call({ cmd: 'init', engine: 'owlet', backend: 'wasm', dtype: 'fp32', threads: t });
      await rt.call({ cmd: 'init', engine: 'ort', threads: t });
      const lo = await owl.call<{ loadMs: number; weightBytes: number }>({
        cmd: 'vision.load',
        layers: VISION_LAYERS,
        seed: SEED,
        weights,
        onnx,
      });
      log(`vision (${VISION_LAYERS} ViT layers, ${t}t): owlet ready in ${(lo.loadMs / 1000).toFixed(1)} s`);
      await rt.call({ cmd: 'vision.load', layers: VISION_LAYERS, seed: SEED, weights, onnx });
      await owl.call({ cmd: 'vision.run' });
      await rt.call({ cmd: 'vision.run' });
      const o: number[] = [];
      const x: number[] = [];
      for (let r = 0; r < runs; r++) {
        o.push((await owl.call<{ ms: number }>({ cmd: 'vision.run' })).ms);
        x.push((await rt.call<{ ms: number }>({ cmd: 'vision.run' })).ms);
        log(
          `vision ${t}t run ${r + 1}/${runs}: owlet ${o.at(-1)?.toFixed(0)} ms, onnxruntime ${x.at(-1)?.toFixed(0)} ms (load ${loadAverage()})`,
        );
      }
      figures.push({ engine: 'owlet', format: 'fp32', threads: t, values: o, median: median(o), unit: 'ms/image' });
      figures.push({
        engine: 'onnxruntime',
        format: 'f32',
        threads: t,
        values: x,
        median: median(x),
        unit: 'ms/image',
      });
      ratios.push({
        figure: 'vision',
        model: `vit-l14-448-${VISION_LAYERS}l+abstractor`,
        dtype: 'fp32',
        threads: t,
        ratio: median(x) / median(o),
      });
      for (const [k, proc] of [
        [`owlet-${t}t`, owl],
        [`onnxruntime-${t}t`, rt],
      ] as const) {
        const peak = proc.lastMem?.maxRssBytes ?? 0;
        memory[k] = { weightBytes: lo.weightBytes, peakRssBytes: peak, rssPerWeight: peak / lo.weightBytes };
      }
    } finally {
      await owl.close();
      await rt.close();
    }
  }
  return {
    layers: VISION_LAYERS,
    note:
      VISION_LAYERS === 24
        ? 'full ViT-L/14-448 (24 layers) + 6-layer abstractor'
        : `ViT-L/14-448 cut to ${VISION_LAYERS} layers (--quick) + full 6-layer abstractor`,
    figures,
    memory,
  };
}

// ---------------------------------------------------------------------------------------------
// report

function fmt(n: number, digits = 1): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

function table(rows: string[][]): string {
  const w = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r, j) => {
      const line = `| ${r.map((c, i) => c.padEnd(w[i] as number)).join(' | ')} |`;
      return j === 0 ? `${line}\n|${w.map((x) => '-'.repeat(x + 2)).join('|')}|` : line;
    })
    .join('\n');
}

function render(decoders: DecoderResult[], vision: VisionResult | null, ratios: Ratio[], roof: number): string {
  const out: string[] = [];
  const rows: string[][] = [
    ['model', 'figure', 'threads', ...PAIRS.flatMap(([d, t]) => [`owlet ${d}`, `llama.cpp ${t}`, 'ratio'])],
  ];
  for (const d of decoders) {
    if (d.skipped) {
      rows.push([d.label, 'skipped', d.skipped]);
      continue;
    }
    for (const fig of Object.keys(d.figures)) {
      for (const t of threadList) {
        const cells: string[] = [];
        for (const [dt, gt] of PAIRS) {
          const o = d.figures[fig]?.find((f) => f.engine === 'owlet' && f.format === dt && f.threads === t);
          const l = d.figures[fig]?.find((f) => f.engine === 'llama.cpp' && f.format === gt && f.threads === t);
          const pct = (f: Figure | undefined) => {
            const r = f && d.roofline[`${f.engine} ${f.format} ${f.threads}t ${fig}`];
            return r ? ` (${fmt(r.percent, 0)}%)` : '';
          };
          cells.push(
            o ? fmt(o.median, 2) + pct(o) : '—',
            l ? fmt(l.median, 2) + pct(l) : '—',
            o && l ? `${(o.median / l.median).toFixed(2)}×` : '—',
          );
        }
        rows.push([
          d.label,
          fig.replace('decode@', 'decode tok/s after ').replace(/^prefill(\d+)/, 'prefill tok/s ($1)'),
          String(t),
          ...cells,
        ]);
      }
    }
  }
  out.push(table(rows));
  for (const d of decoders) for (const n of d.notes) out.push(`note (${d.label}): ${n}`);
  out.push(
    `ratio > 1: owlet faster. (%) = weight bytes streamed per decode token × tokens/s ÷ the ${roof.toFixed(2)} GB/s single-thread roofline.`,
  );
  if (vision) {
    out.push('');
    const vr: string[][] = [
      ['vision (1 image, 448×448)', 'threads', 'owlet fp32', 'onnxruntime f32', 'speed ratio (ORT ms ÷ owlet ms)'],
    ];
    for (const t of threadList) {
      const o = vision.figures.find((f) => f.engine === 'owlet' && f.threads === t);
      const x = vision.figures.find((f) => f.engine === 'onnxruntime' && f.threads === t);
      if (o && x)
        vr.push([
          vision.note,
          String(t),
          `${fmt(o.median)} ms`,
          `${fmt(x.median)} ms`,
          `${(x.median / o.median).toFixed(2)}×`,
        ]);
    }
    out.push(table(vr));
  }
  out.push('');
  const mrows: string[][] = [['memory', 'engine', 'weight bytes', 'peak RSS', 'RSS / weights']];
  for (const d of decoders) {
    for (const [k, m] of Object.entries(d.memory)) {
      mrows.push([
        d.label,
        k,
        `${(m.weightBytes / 2 ** 20).toFixed(0)} MiB`,
        `${(m.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
        m.rssPerWeight.toFixed(2),
      ]);
    }
  }
  if (vision) {
    for (const [k, m] of Object.entries(vision.memory)) {
      mrows.push([
        'vision',
        k,
        `${(m.weightBytes / 2 ** 20).toFixed(0)} MiB`,
        `${(m.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
        m.rssPerWeight.toFixed(2),
      ]);
    }
  }
  out.push(table(mrows));
  void ratios;
  return out.join('\n');
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const loadAtStart = loadAverage();
  log(
    `${quick ? 'quick' : 'full'} run, ${runs} runs, threads ${threadList.join(',')}, cache ${cacheDir}, load ${loadAtStart}`,
  );
  const roof = measureStreamingRead();
  log(
    `roofline: ${roof.gbPerS.toFixed(2)} GB/s (JS loop ${roof.jsLoopGbPerS.toFixed(2)}, native scan ${roof.nativeScanGbPerS.toFixed(2)})`,
  );
  const [small, onebn, seven] = LLAMA_PRESETS as [LlamaPreset, LlamaPreset, LlamaPreset];
  const all: WeightDType[] = ['fp32', 'q8', 'q4'];
  const plans: DecoderPlan[] = quick
    ? [
        { preset: small, runs, prompts: PROMPTS, newTokens: NEW_TOKENS, dtypes: all },
        // ~1B: the quantized formats the targets are about, one run (≤ 10 min in all)
        { preset: onebn, runs: 1, prompts: PROMPTS, newTokens: 32, dtypes: ['q8', 'q4'] },
      ]
    : [
        { preset: small, runs, prompts: PROMPTS, newTokens: NEW_TOKENS, dtypes: all },
        { preset: onebn, runs, prompts: PROMPTS, newTokens: NEW_TOKENS, dtypes: all },
        { preset: seven, runs: 1, prompts: [128], newTokens: 32, dtypes: ['q4'], random: true },
      ];
  const only = opt('models', '');
  const decoders: DecoderResult[] = [];
  const ratios: Ratio[] = [];
  for (const plan of plans) {
    if (only && !only.split(',').includes(plan.preset.name)) continue;
    decoders.push(await benchDecoder(plan, roof.gbPerS, ratios));
  }
  const vision = flag('no-vision') ? null : await benchVision(ratios);
  const seconds = (performance.now() - t0) / 1000;
  const report = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    seconds,
    machine: {
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      memoryBytes: totalmem(),
      platform: platform(),
      arch: arch(),
      kernel: release(),
    },
    load: { start: loadAtStart, end: loadAverage() },
    settings: {
      threads: threadList,
      runs,
      promptLengths: PROMPTS,
      newTokens: NEW_TOKENS,
      seed: SEED,
      cacheDir,
      llamaCppKvCache: 'F32',
      flashAttention: false,
    },
    backend: {
      owlet:
        'linear: owlet CPU engine (WASM SIMD128 kernels, worker_threads over shared memory); other ops: tfjs-backend-wasm',
    },
    versions: {
      node: process.version,
      tfjs: pkgVersion('@tensorflow/tfjs-core'),
      'node-llama-cpp': pkgVersion('node-llama-cpp'),
      'onnxruntime-node': pkgVersion('onnxruntime-node'),
    },
    roofline: roof,
    ratios,
    decoders,
    vision,
  };
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${render(decoders, vision, ratios, roof.gbPerS)}\n`);
  process.stdout.write(`\n${quick ? 'quick' : 'full'} run took ${(seconds / 60).toFixed(1)} min; JSON: ${outPath}\n`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
