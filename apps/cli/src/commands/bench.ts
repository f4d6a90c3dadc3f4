/**
 * `owlet bench`: time to load, ms per image (preprocessing; vision + abstractor), prefill and
 * decode tokens/s, peak memory, on the chosen backend. Prints a table and writes JSON.
 */
import { resolve } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { writeFileAtomic } from '@owlet/checkpoint';
import { getBackendInfo } from '@owlet/core';

import { intFlag } from '../args.js';
import { EXIT, UsageError } from '../errors.js';
import { benchPlanCommand } from './bench-plan.js';
import { parseFlags } from '../flags.js';
import { RANDOM_WEIGHTS_NOTICE, backendReport, loadModel, parseBackend } from '../model.js';

export const BENCH_HELP = `owlet bench [options]

  --model DIR_OR_URL   checkpoint folder (default: the bundled random-weights model)
  --backend NAME       auto | webgpu | wasm | cpu | tensorflow
  --runs N             timed runs per figure, median reported (default 3)
  --prompt-tokens N    prefill length (default 64)
  --new-tokens N       decode steps (default 16)
  --out FILE           where to write the JSON (default owlet-bench.json)
  --json               print the JSON instead of the table
  --quiet              nothing on stderr but errors
  --verbose            the full backend reasoning on stderr (the table names the backend)
  --plan               print the GPU memory plan instead (owlet bench --plan --help)`;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

export async function benchCommand(argv: string[], signal: AbortSignal): Promise<number> {
  if (argv.includes('--plan')) return benchPlanCommand(argv);
  const { values } = parseFlags(
    argv,
    {
      model: { type: 'string' },
      backend: { type: 'string' },
      runs: { type: 'string' },
      'prompt-tokens': { type: 'string' },
      'new-tokens': { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    { command: 'bench' },
  );
  if (values.help) {
    process.stdout.write(`${BENCH_HELP}\n`);
    return EXIT.OK;
  }
  const backend = parseBackend(values.backend);
  const runs = intFlag('runs', values.runs, 1) ?? 3;
  const promptTokens = intFlag('prompt-tokens', values['prompt-tokens'], 1) ?? 64;
  const newTokens = intFlag('new-tokens', values['new-tokens'], 1) ?? 16;
  const quiet = values.quiet === true || values.json === true;
  const loaded = await loadModel(values.model, { backend, quiet, signal });
  const { model } = loaded;
  try {
    const info = getBackendInfo();
    if (info && values.verbose && !quiet) process.stderr.write(backendReport(info, true));
    if (loaded.randomWeights && !quiet) process.stderr.write(`${RANDOM_WEIGHTS_NOTICE}\n`);
    const size = model.config.vision_config.image_size;
    const processor = model.imageProcessor;
    if (!processor) throw new UsageError('the model has no image processor (preprocessor_config.json)');
    // A synthetic 640×480 RGB image (a gradient) for the preprocessing figure.
    const [w, h] = [640, 480];
    const raw = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) {
      raw[i * 3] = i % 251;
      raw[i * 3 + 1] = (i >> 3) % 253;
      raw[i * 3 + 2] = (i >> 7) % 255;
    }
    const preprocessMs: number[] = [];
    const imageMs: number[] = [];
    const prefill: number[] = [];
    const decode: number[] = [];
    const vocab = model.config.text_config.vocab_size;
    const ids = [1, ...Array.from({ length: promptTokens - 1 }, (_, i) => 3 + ((i * 7919) % (vocab - 3)))];
    for (let r = 0; r <= runs; r++) {
      const warm = r === 0; // the first round compiles kernels and is not counted
      let t0 = performance.now();
      await processor.preprocess({ data: raw, width: w, height: h, channels: 3 });
      if (!warm) preprocessMs.push(performance.now() - t0);
      const pixels = tf.randomNormal([1, 3, size, size], 0, 1, 'float32', r);
      t0 = performance.now();
      const feats = model.encodeImages(pixels);
      await feats.data();
      if (!warm) imageMs.push(performance.now() - t0);
      tf.dispose([pixels, feats]);
      const out = await model.generate({ input_ids: ids, max_new_tokens: newTokens, eos_token_id: null, signal });
      if (!warm) {
        prefill.push(out.usage.prefill_tokens_per_s);
        decode.push(out.usage.decode_tokens_per_s);
      }
    }
    const weightBytes = model.numParameters() * 4;
    const result = {
      model: loaded.source,
      model_type: model.config.model_type,
      random_weights: loaded.randomWeights,
      backend: getBackendInfo()?.name,
      backend_reason: getBackendInfo()?.reason,
      node: process.version,
      runs,
      parameters: model.numParameters(),
      load_ms: Math.round(loaded.loadMs),
      preprocess_ms_per_image: +median(preprocessMs).toFixed(2),
      vision_abstractor_ms_per_image: +median(imageMs).toFixed(2),
      prompt_tokens: promptTokens,
      new_tokens: newTokens,
      prefill_tokens_per_s: +median(prefill).toFixed(2),
      decode_tokens_per_s: +median(decode).toFixed(2),
      peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
      tf_bytes_mb: +(tf.memory().numBytes / 1e6).toFixed(1),
      weight_bytes_mb: +(weightBytes / 1e6).toFixed(1),
      date: new Date().toISOString(),
    };
    const outPath = resolve(values.out ?? 'owlet-bench.json');
    await writeFileAtomic(outPath, `${JSON.stringify(result, null, 2)}\n`);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      const rows: [string, string][] = [
        [
          'model',
          `${result.model_type}${result.random_weights ? ' (random weights)' : ''}, ${(result.parameters / 1e6).toFixed(1)}M parameters`,
        ],
        ['backend', `${result.backend}`],
        ['load', `${result.load_ms} ms`],
        [`preprocess (640×480 → ${size})`, `${result.preprocess_ms_per_image} ms/image`],
        ['vision + abstractor', `${result.vision_abstractor_ms_per_image} ms/image`],
        [`prefill (${promptTokens} tokens)`, `${result.prefill_tokens_per_s} tokens/s`],
        [`decode (${newTokens} tokens)`, `${result.decode_tokens_per_s} tokens/s`],
        ['peak RSS', `${result.peak_rss_mb} MB`],
        ['tf memory', `${result.tf_bytes_mb} MB (weights ${result.weight_bytes_mb} MB)`],
      ];
      const wdt = Math.max(...rows.map(([k]) => k.length));
      for (const [k, v] of rows) process.stdout.write(`${k.padEnd(wdt)}  ${v}\n`);
      process.stdout.write(`JSON written to ${outPath} (median of ${runs} run(s))\n`);
    }
    return EXIT.OK;
  } finally {
    model.dispose();
  }
}
