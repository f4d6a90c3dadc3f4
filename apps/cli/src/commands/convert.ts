/**
 * `owlet convert SRC DST`: the official PyTorch `.bin` shards → safetensors, sharded like the
 * input, streamed (peak memory near one tensor) and all-or-nothing: DST is built as a temporary
 * sibling folder and renamed into place when complete, with copies of the files beside the weights
 * (config.json, tokenizer.model, …), so DST is a complete model folder or untouched. A non-empty
 * DST is refused unless --force; a second convert into the same DST fails while one runs.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import { convertBinToSafetensors } from '@owlet/checkpoint';

import { EXIT, UsageError } from '../errors.js';
import { parseFlags } from '../flags.js';
import { progressReporter } from '../progress.js';

export const CONVERT_HELP = `owlet convert SRC DST [--force] [--quiet] [--json]

  SRC      a folder with pytorch_model.bin (or pytorch_model-*.bin + pytorch_model.bin.index.json)
  DST      the output folder: gets model*.safetensors (+ model.safetensors.index.json) and copies
           of config.json, the tokenizer files and the other non-weight files; written whole or not
           at all (an interrupted conversion leaves DST as it was)
  --force  replace DST when it exists and is not empty (default: refuse)`;

export async function convertCommand(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      force: { type: 'boolean' },
      quiet: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    { command: 'convert', positionals: 2 },
  );
  if (values.help) {
    process.stdout.write(`${CONVERT_HELP}\n`);
    return EXIT.OK;
  }
  if (positionals.length !== 2)
    throw new UsageError(`convert needs SRC and DST, got ${positionals.length} argument(s)`, 'owlet convert SRC DST');
  const [src, dst] = positionals.map((p) => resolve(p)) as [string, string];
  if (!existsSync(src)) throw new UsageError(`source not found: ${positionals[0]}`);
  if (src === dst) throw new UsageError('SRC and DST must be different folders');
  if (dst.startsWith(`${src}/`)) throw new UsageError('DST must not be inside SRC');
  const quiet = values.quiet === true || values.json === true;
  const t0 = performance.now();
  const result = await convertBinToSafetensors(src, dst, {
    onProgress: progressReporter({ quiet, tty: Boolean(process.stderr.isTTY) }),
    signal,
    force: values.force === true,
    copySideFiles: true,
  });
  const secs = (performance.now() - t0) / 1000;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...result, seconds: secs })}\n`);
  } else if (!values.quiet) {
    process.stdout.write(
      `converted ${result.tensors} tensors (${(result.bytes / 1e6).toFixed(1)} MB) into ${result.files.length} safetensors file(s) in ${secs.toFixed(1)} s${result.copied.length ? `; copied ${result.copied.join(', ')}` : ''}\n`,
    );
  }
  return EXIT.OK;
}
