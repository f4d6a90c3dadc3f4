/** `owlet run`: one answer about one or more images, streamed to the terminal. */

import { getBackendInfo } from '@owlet/core';
import type { ContentPart } from '@owlet/tokenizer';
import type { DecodedImage } from '@owlet/vision-encoder';

import { SAMPLING_OPTIONS, samplingFlags } from '../args.js';
import { parseFlags } from '../flags.js';
import { EXIT, UsageError } from '../errors.js';
import {
  NETWORK_OPTIONS,
  RANDOM_WEIGHTS_NOTICE,
  backendReport,
  loadModelFromFlags,
  networkLimits,
  parseBackend,
  readAndDecodeImage,
} from '../model.js';

export const RUN_HELP = `owlet run --image PATH_OR_URL --prompt TEXT [options]

  --image PATH_OR_URL   an image (file, http(s) URL or data: URL); repeat for several images
  --prompt TEXT         the question
  --model DIR_OR_URL    checkpoint folder (default: the bundled random-weights model)
  --backend NAME        auto | webgpu | wasm | cpu | tensorflow (default auto)
  --dtype D             fp32 | fp16 | q8 | q4: the language model's weights, quantized while loading
  --threads N           threads of the CPU engine (cpu/wasm backends; default: every core)
  --max-new-tokens N    default from generation_config.json
  --temperature T       0 = greedy (default), > 0 samples
  --top-p P  --top-k K  sampling filters
  --seed S              reproducible sampling
  --fetch-timeout S     give up on a URL that sends nothing for S seconds (images 5/10 s, model files 10/30 s)
  --allow-redirect ORIGIN  follow redirects to this origin too (default: same origin only); repeatable
  --json                print one JSON object instead of streaming text
  --quiet               nothing on stderr but errors (no progress, backend or notices)
  --verbose             the full backend reasoning (every backend tried, and why)`;

export async function runCommand(argv: string[], signal: AbortSignal): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      image: { type: 'string', multiple: true },
      prompt: { type: 'string' },
      model: { type: 'string' },
      backend: { type: 'string' },
      dtype: { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
      quiet: { type: 'boolean' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...SAMPLING_OPTIONS,
      ...NETWORK_OPTIONS,
    },
    { command: 'run' },
  );
  if (values.help) {
    process.stdout.write(`${RUN_HELP}\n`);
    return EXIT.OK;
  }
  if (values.prompt === undefined || values.prompt.trim() === '')
    throw new UsageError('--prompt is required', RUN_HELP.split('\n')[0]);
  const backend = parseBackend(values.backend);
  const sampling = samplingFlags(values);
  const quiet = values.quiet === true;
  const network = networkLimits(values);
  // Read and decode every image before loading the model: a missing file, a file that is not an
  // image, an image over the pixel cap fail in a moment, not after the weights have loaded.
  const images: DecodedImage[] = [];
  for (const arg of values.image ?? []) images.push(await readAndDecodeImage(arg, signal, network));

  const loaded = await loadModelFromFlags(values, { backend, quiet, signal, network });
  const { model } = loaded;
  try {
    if (!quiet) {
      const info = getBackendInfo();
      if (info) process.stderr.write(backendReport(info, values.verbose === true));
      if (loaded.randomWeights) process.stderr.write(`${RANDOM_WEIGHTS_NOTICE}\n`);
    }
    const content: ContentPart[] = [
      ...images.map(() => ({ type: 'image' }) as const),
      { type: 'text', text: values.prompt },
    ];
    const stream = model.chat({ messages: [{ role: 'user', content }], images, ...sampling, signal });
    if (values.json) {
      for await (const _ of stream) {
        // drain: the JSON is printed once at the end
      }
    } else {
      for await (const delta of stream) process.stdout.write(delta);
      process.stdout.write('\n');
    }
    const r = await stream.result;
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({
          model: loaded.source,
          model_type: model.config.model_type,
          random_weights: loaded.randomWeights,
          backend: getBackendInfo()?.name,
          prompt: values.prompt,
          images: values.image ?? [],
          answer: r.text,
          finish_reason: r.finish_reason,
          load_ms: Math.round(loaded.loadMs),
          usage: r.usage,
        })}\n`,
      );
    } else if (!quiet) {
      const u = r.usage;
      process.stderr.write(
        `[${u.prompt_tokens} prompt + ${u.completion_tokens} generated tokens, first token ${u.time_to_first_token_s.toFixed(2)} s, ${u.decode_tokens_per_s.toFixed(1)} tokens/s]\n`,
      );
    }
    return EXIT.OK;
  } finally {
    model.dispose();
  }
}
