/**
 * owlet side by side with llama.cpp (node-llama-cpp) and ONNX Runtime (onnxruntime-node) on this
 * machine, same weights, same thread count, runs interleaved, medians. Prints a table and writes
 * JSON. `--quick`: the ~100M decoder and a 2-layer ViT-L/14-448 (+ full abstractor), 3 runs.
 *
 *   pnpm --filter @owlet/bench bench [--quick] [--runs N] [--threads N] [--cache-dir DIR] [--out FILE]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, platform, arch, release } from 'node:os';
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
const USAGE = `usage: pnpm bench [--quick] [--runs N] [--threads N] [--cache-dir DIR] [--out FILE]

  --quick        the ~100M decoder and a 2-layer ViT-L/14-448 (+ full abstractor), 3 runs
  --runs N       timed runs per figure (median reported; default 3)
  --threads N    threads for every engine (default 1: tfjs-wasm is single-threaded in Node)
  --cache-dir    where random weights, GGUF and ONNX files are cached (default ~/.cache/owlet-bench)
  --out FILE     JSON output (default packages/bench/bench-results/latest[-quick].json)`;
{
  const known = new Set(['--quick', '--runs', '--threads', '--cache-dir', '--out', '--help', '-h']);
  const valued = new Set(['--runs', '--threads', '--cache-dir', '--out']);
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
// tfjs-backend-wasm runs single-threaded in Node (its threaded build needs web workers), so the
// peers get 1 thread as well unless asked otherwise.
const threads = Number(opt('threads', '1'));
const cacheDir = resolve(opt('cache-dir', defaultCacheDir()));
const outPath = resolve(opt('out', join(here, '..', 'bench-results', quick ? 'latest-quick.json' : 'latest.json')));
const SEED = 20240611;
const PROMPTS = [128, 512];
const NEW_TOKENS = 64;
const VISION_LAYERS = quick ? 2 : 24;
const WASM_HEAP_MAX = 4294901760; // tfjs-backend-wasm's getHeapMax()

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
  values: number[];
  median: number;
  unit: string;
}

interface DecoderResult {
  model: string;
  label: string;
  params: number;
  skipped?: string;
  notes: string[];
  figures: Record<string, Figure[]>;
  ratios: Record<string, number | null>;
  roofline: Record<string, { bytesPerToken: number; gbPerS: number; percent: number }>;
  memory: Record<
    string,
    { weightBytes: number; peakRssBytes: number; rssPerWeight: number; tfPeakBytes?: number; tfPerWeight?: number }
  >;
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------
// decoder

async function benchDecoder(p: LlamaPreset, roofGbPerS: number, backends: ('wasm' | 'cpu')[]): Promise<DecoderResult> {
  const params = numLlamaParameters(p.config);
  const f32Bytes = params * 4;
  const res: DecoderResult = {
    model: p.name,
    label: p.label,
    params,
    notes: [],
    figures: {},
    ratios: {},
    roofline: {},
    memory: {},
  };
  if (f32Bytes > WASM_HEAP_MAX) {
    res.skipped =
      `float32 weights are ${(f32Bytes / 2 ** 30).toFixed(1)} GiB: over the wasm backend's 4 GiB heap and ${f32Bytes > totalmem() * 0.7 ? `this machine's ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM (with llama.cpp's copy)` : 'the cpu backend is impractically slow'}; ` +
      'llama.cpp could run Q8_0 (7.2 GB) / Q4_0 (3.8 GB) files, but owlet has no quantized weight format yet, so there is nothing to compare them with';
    log(`${p.name}: skipped (${res.skipped})`);
    return res;
  }
  const types: GgmlTypeName[] = ['F32', 'Q8_0', 'Q4_0'];
  const cached = await ensureCachedLlama(p, SEED, types, cacheDir, log);
  res.notes.push('Q8_0 / Q4_0 run only in llama.cpp: owlet has no quantized weight format yet (ratio n/a)');

  const engines: { key: string; engine: string; format: string; proc: EngineProcess; runs: number }[] = [];
  for (const b of backends) {
    const proc = new EngineProcess(`owlet-${b}`);
    await proc.call({ cmd: 'init', engine: 'owlet', backend: b });
    engines.push({ key: `owlet-${b}`, engine: `owlet (${b})`, format: 'f32', proc, runs: b === 'cpu' ? 1 : runs });
  }
  for (const t of types) {
    const proc = new EngineProcess(`llama.cpp-${t}`);
    await proc.call({ cmd: 'init', engine: 'llamacpp', threads });
    engines.push({ key: `llama.cpp-${t}`, engine: 'llama.cpp', format: t, proc, runs });
  }
  try {
    for (const e of [...engines]) {
      const path = e.key.startsWith('owlet') ? cached.safetensors : (cached.gguf[e.format as GgmlTypeName] as string);
      try {
        const r = await e.proc.call<{ loadMs: number; weightBytes?: number }>({
          cmd: 'llama.load',
          config: p.config,
          path,
          contextSize: 1024,
        });
        log(`${p.name}: ${e.key} loaded in ${(r.loadMs / 1000).toFixed(1)} s`);
        // warm-up (JIT, allocator, page cache), not measured
        await e.proc.call({ cmd: 'llama.run', prompt: tokens(16, p.config.vocab_size, 1), newTokens: 4 });
      } catch (err) {
        // e.g. ~1B float32 weights plus XNNPACK's packed copies overflow tfjs-wasm's 4 GiB heap:
        // report the engine as failed for this model and measure the others.
        const why = `${e.key} could not run this model: ${(err as Error).message.split('\n')[0]}`;
        res.notes.push(why);
        log(`${p.name}: ${why}`);
        await e.proc.close().catch(() => {});
        engines.splice(engines.indexOf(e), 1);
      }
    }
    const samples = new Map<string, number[]>();
    const add = (k: string, v: number) => samples.set(k, [...(samples.get(k) ?? []), v]);
    for (let r = 0; r < runs; r++) {
      for (const len of PROMPTS) {
        const prompt = tokens(len, p.config.vocab_size, 100 + r * 7 + len);
        for (const e of engines) {
          if (r >= e.runs) continue;
          const t = await e.proc.call<{ prefillMs: number; decodeMs: number; decodeTokens: number }>({
            cmd: 'llama.run',
            prompt,
            newTokens: NEW_TOKENS,
          });
          add(`${e.key}|prefill${len}`, (len / t.prefillMs) * 1000);
          add(`${e.key}|decode@${len}`, (t.decodeTokens / t.decodeMs) * 1000);
          log(
            `${p.name} run ${r + 1}/${runs} prompt ${len}: ${e.key} prefill ${((len / t.prefillMs) * 1000).toFixed(1)} tok/s, decode ${((t.decodeTokens / t.decodeMs) * 1000).toFixed(2)} tok/s`,
          );
        }
      }
    }
    // memory: one profiled owlet run (tf peak bytes), then every process's peak RSS
    for (const e of engines) {
      let tfPeak: number | undefined;
      if (e.key.startsWith('owlet')) {
        const prof = await e.proc.call<{ tfPeakBytes: number }>({
          cmd: 'llama.run',
          prompt: tokens(512, p.config.vocab_size, 3),
          newTokens: 8,
          profile: true,
        });
        tfPeak = prof.tfPeakBytes;
      }
      const weightBytes = e.key.startsWith('owlet') ? f32Bytes : fileBytes(p, e.format as GgmlTypeName);
      const peakRss = e.proc.lastMem?.maxRssBytes ?? 0;
      res.memory[e.key] = {
        weightBytes,
        peakRssBytes: peakRss,
        rssPerWeight: peakRss / weightBytes,
        ...(tfPeak !== undefined ? { tfPeakBytes: tfPeak, tfPerWeight: tfPeak / weightBytes } : {}),
      };
    }
    for (const fig of ['prefill128', 'prefill512', 'decode@128', 'decode@512']) {
      res.figures[fig] = engines
        .filter((e) => samples.has(`${e.key}|${fig}`))
        .map((e) => {
          const values = samples.get(`${e.key}|${fig}`)!;
          return { engine: e.engine, format: e.format, values, median: median(values), unit: 'tokens/s' };
        });
      const owl = res.figures[fig]!.find((f) => f.engine === 'owlet (wasm)');
      const ref = res.figures[fig]!.find((f) => f.engine === 'llama.cpp' && f.format === 'F32');
      res.ratios[fig] = owl && ref ? owl.median / ref.median : null;
      if (fig.startsWith('decode')) {
        for (const f of res.figures[fig]!) {
          const bytes = f.engine.startsWith('owlet')
            ? decodeBytesPerToken(p, 'F32')
            : decodeBytesPerToken(p, f.format as GgmlTypeName);
          const gbs = (bytes * f.median) / GB;
          res.roofline[`${f.engine} ${f.format} ${fig}`] = {
            bytesPerToken: bytes,
            gbPerS: gbs,
            percent: (100 * gbs) / roofGbPerS,
          };
        }
      }
    }
  } finally {
    for (const e of engines) await e.proc.close();
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// vision

interface VisionResult {
  layers: number;
  note: string;
  figures: Figure[];
  ratio: number;
  memory: Record<
    string,
    { weightBytes: number; peakRssBytes: number; rssPerWeight: number; tfPeakBytes?: number; tfPerWeight?: number }
  >;
}

async function benchVision(): Promise<VisionResult> {
  const dir = join(cacheDir, `vit-l14-448-abstractor-${VISION_LAYERS}l`);
  mkdirSync(dir, { recursive: true });
  const weights = join(dir, 'model');
  const onnx = join(dir, 'model.onnx');
  const owl = new EngineProcess('owlet-vision');
  const rt = new EngineProcess('onnxruntime');
  try {
    await owl.call({ cmd: 'init', engine: 'owlet', backend: 'wasm' });
    await rt.call({ cmd: 'init', engine: 'ort', threads });
    const lo = await owl.call<{ loadMs: number; weightBytes: number }>({
      cmd: 'vision.load',
      layers: VISION_LAYERS,
      seed: SEED,
      weights,
      onnx,
    });
    log(
      `vision (${VISION_LAYERS} ViT layers): owlet ready in ${(lo.loadMs / 1000).toFixed(1)} s, ${(lo.weightBytes / 2 ** 20).toFixed(0)} MiB`,
    );
    const lr = await rt.call<{ loadMs: number }>({
      cmd: 'vision.load',
      layers: VISION_LAYERS,
      seed: SEED,
      weights,
      onnx,
    });
    log(`vision: onnxruntime session ready in ${(lr.loadMs / 1000).toFixed(1)} s`);
    await owl.call({ cmd: 'vision.run' });
    await rt.call({ cmd: 'vision.run' });
    const o: number[] = [];
    const x: number[] = [];
    for (let r = 0; r < runs; r++) {
      o.push((await owl.call<{ ms: number }>({ cmd: 'vision.run' })).ms);
      x.push((await rt.call<{ ms: number }>({ cmd: 'vision.run' })).ms);
      log(`vision run ${r + 1}/${runs}: owlet ${o.at(-1)!.toFixed(0)} ms, onnxruntime ${x.at(-1)!.toFixed(0)} ms`);
    }
    const prof = await owl.call<{ tfPeakBytes: number }>({ cmd: 'vision.run', profile: true });
    const wb = lo.weightBytes;
    return {
      layers: VISION_LAYERS,
      note:
        VISION_LAYERS === 24
          ? 'full ViT-L/14-448 (24 layers) + 6-layer abstractor'
          : `ViT-L/14-448 cut to ${VISION_LAYERS} layers (--quick) + full 6-layer abstractor`,
      figures: [
        { engine: 'owlet (wasm)', format: 'f32', values: o, median: median(o), unit: 'ms/image' },
        { engine: 'onnxruntime', format: 'f32', values: x, median: median(x), unit: 'ms/image' },
      ],
      ratio: median(o) / median(x),
      memory: {
        'owlet-wasm': {
          weightBytes: wb,
          peakRssBytes: owl.lastMem!.maxRssBytes,
          rssPerWeight: owl.lastMem!.maxRssBytes / wb,
          tfPeakBytes: prof.tfPeakBytes,
          tfPerWeight: prof.tfPeakBytes / wb,
        },
        onnxruntime: {
          weightBytes: wb,
          peakRssBytes: rt.lastMem!.maxRssBytes,
          rssPerWeight: rt.lastMem!.maxRssBytes / wb,
        },
      },
    };
  } finally {
    await owl.close();
    await rt.close();
  }
}

// ---------------------------------------------------------------------------------------------
// report

function fmt(n: number, digits = 1): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(digits);
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r, j) => {
      const line = `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
      return j === 0 ? `${line}\n|${w.map((x) => '-'.repeat(x + 2)).join('|')}|` : line;
    })
    .join('\n');
}

function render(decoders: DecoderResult[], vision: VisionResult | null, roof: number): string {
  const out: string[] = [];
  const rows: string[][] = [
    [
      'model',
      'figure',
      'owlet wasm f32',
      'llama.cpp F32',
      'owlet / llama.cpp',
      'llama.cpp Q8_0',
      'llama.cpp Q4_0',
      'owlet cpu f32',
    ],
  ];
  for (const d of decoders) {
    if (d.skipped) {
      rows.push([d.label, 'skipped', d.skipped, '', '', '', '', '']);
      continue;
    }
    for (const [fig, title] of [
      ['prefill128', 'prefill tok/s (128)'],
      ['prefill512', 'prefill tok/s (512)'],
      ['decode@128', 'decode tok/s (64 new)'],
    ] as const) {
      const f = d.figures[fig] ?? [];
      const get = (engine: string, format: string) => f.find((x) => x.engine === engine && x.format === format);
      const cell = (x: Figure | undefined) => (x ? fmt(x.median, 2) : '—');
      const ratio = d.ratios[fig];
      const pct = (x: Figure | undefined) =>
        x && fig.startsWith('decode')
          ? ` (${fmt(d.roofline[`${x.engine} ${x.format} ${fig}`]!.percent, 0)}% roof)`
          : '';
      const o = get('owlet (wasm)', 'f32');
      const l = get('llama.cpp', 'F32');
      const q8 = get('llama.cpp', 'Q8_0');
      const q4 = get('llama.cpp', 'Q4_0');
      const c = get('owlet (cpu)', 'f32');
      rows.push([
        d.label,
        title,
        cell(o) + pct(o),
        cell(l) + pct(l),
        ratio === null || ratio === undefined ? '—' : `${ratio.toFixed(2)}×`,
        cell(q8) + pct(q8),
        cell(q4) + pct(q4),
        cell(c) + pct(c),
      ]);
    }
  }
  out.push(table(rows));
  for (const d of decoders)
    for (const n of d.notes.filter((x) => x.includes('could not run'))) out.push(`note (${d.label}): ${n}`);
  out.push(
    `ratio > 1: owlet faster (throughputs). Roofline (single-thread streaming read): ${roof.toFixed(2)} GB/s; "% roof" = weight bytes streamed per decode token × tokens/s ÷ roofline.`,
  );
  if (vision) {
    out.push('');
    out.push(
      table([
        ['vision (1 image, 448×448)', 'owlet wasm f32', 'onnxruntime f32', 'owlet / onnxruntime (time)'],
        [
          vision.note,
          `${fmt(vision.figures[0]!.median)} ms`,
          `${fmt(vision.figures[1]!.median)} ms`,
          `${vision.ratio.toFixed(2)}× (> 1: owlet slower)`,
        ],
      ]),
    );
  }
  out.push('');
  const mrows: string[][] = [
    ['memory', 'engine', 'weight bytes', 'peak RSS', 'RSS / weights', 'tfjs peak bytes / weights'],
  ];
  for (const d of decoders) {
    for (const [k, m] of Object.entries(d.memory)) {
      mrows.push([
        d.label,
        k,
        `${(m.weightBytes / 2 ** 20).toFixed(0)} MiB`,
        `${(m.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
        m.rssPerWeight.toFixed(2),
        m.tfPerWeight ? m.tfPerWeight.toFixed(2) : '—',
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
        m.tfPerWeight ? m.tfPerWeight.toFixed(2) : '—',
      ]);
    }
  }
  out.push(table(mrows));
  return out.join('\n');
}

async function main(): Promise<void> {
  const t0 = performance.now();
  log(`${quick ? 'quick' : 'full'} run, ${runs} runs, ${threads} thread(s), cache ${cacheDir}`);
  const roof = measureStreamingRead();
  log(
    `roofline: ${roof.gbPerS.toFixed(2)} GB/s (JS loop ${roof.jsLoopGbPerS.toFixed(2)}, native scan ${roof.nativeScanGbPerS.toFixed(2)})`,
  );
  const presets = quick ? LLAMA_PRESETS.slice(0, 1) : LLAMA_PRESETS;
  const decoders: DecoderResult[] = [];
  for (const p of presets) {
    const backends: ('wasm' | 'cpu')[] = !quick && p === LLAMA_PRESETS[0] ? ['wasm', 'cpu'] : ['wasm'];
    decoders.push(await benchDecoder(p, roof.gbPerS, backends));
  }
  const vision = await benchVision();
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
    settings: {
      threads,
      runs,
      promptLengths: PROMPTS,
      newTokens: NEW_TOKENS,
      seed: SEED,
      cacheDir,
      llamaCppKvCache: 'F32',
      flashAttention: false,
    },
    backend: { owlet: 'wasm (tfjs-backend-wasm, SIMD, single-threaded in Node); cpu where listed' },
    versions: {
      node: process.version,
      tfjs: pkgVersion('@tensorflow/tfjs-core'),
      'node-llama-cpp': pkgVersion('node-llama-cpp'),
      'onnxruntime-node': pkgVersion('onnxruntime-node'),
    },
    roofline: roof,
    decoders,
    vision,
  };
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${render(decoders, vision, roof.gbPerS)}\n`);
  process.stdout.write(`\n${quick ? 'quick' : 'full'} run took ${(seconds / 60).toFixed(1)} min; JSON: ${outPath}\n`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
