/**
 * `owlet convert SRC DST`: the official PyTorch `.bin` shards → safetensors, sharded like the
 * input, streamed (peak memory near one tensor) and atomic per file. The files beside the weights
 * (config.json, tokenizer.model, …) are copied so DST is a complete model folder.
 */
import { copyFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { convertBinToSafetensors } from '@owlet/checkpoint';

import { parseFlags } from '../flags.js';
import { EXIT, UsageError } from '../errors.js';
import { progressReporter } from '../progress.js';

export const CONVERT_HELP = `owlet convert SRC DST [--quiet] [--json]

  SRC   a folder with pytorch_model.bin (or pytorch_model-*.bin + pytorch_model.bin.index.json)
  DST   the output folder (created); gets model*.safetensors (+ model.safetensors.index.json)
        and copies of config.json, tokenizer files and the other non-weight files`;

const SIDE_FILE = /\.(json|model|txt|md)$/;
const WEIGHT_FILE = /^pytorch_model.*\.bin(\.index\.json)?$/;

export async function convertCommand(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    { quiet: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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
  if (resolve(src) === resolve(dst)) throw new UsageError('SRC and DST must be different folders');
  const quiet = values.quiet === true || values.json === true;
  const t0 = performance.now();
  const result = await convertBinToSafetensors(src, dst, {
    onProgress: progressReporter({ quiet, tty: Boolean(process.stderr.isTTY) }),
    signal,
  });
  const copied: string[] = [];
  if (statSync(src).isDirectory()) {
    for (const name of readdirSync(src)) {
      if (!SIDE_FILE.test(name) || WEIGHT_FILE.test(name)) continue;
      if (!statSync(join(src, name)).isFile()) continue;
      copyFileSync(join(src, name), join(dst, name));
      copied.push(name);
    }
  }
  const secs = (performance.now() - t0) / 1000;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...result, copied, seconds: secs })}\n`);
  } else if (!values.quiet) {
    process.stdout.write(
      `converted ${result.tensors} tensors (${(result.bytes / 1e6).toFixed(1)} MB) into ${result.files.length} safetensors file(s) in ${secs.toFixed(1)} s${copied.length ? `; copied ${copied.join(', ')}` : ''}\n`,
    );
  }
  return EXIT.OK;
}
