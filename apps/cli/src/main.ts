/**
 * The `owlet` command: run, chat, serve, convert, bench, train.
 * Exit codes: 0 ok, 1 internal failure, 2 bad input (with a one-line fix), 130 interrupted.
 */
import * as tf from '@tensorflow/tfjs-core';

import { benchCommand, BENCH_HELP } from './commands/bench.js';
import { chatCommand, CHAT_HELP } from './commands/chat.js';
import { convertCommand, CONVERT_HELP } from './commands/convert.js';
import { runCommand, RUN_HELP } from './commands/run.js';
import { serveCommand, SERVE_HELP } from './commands/serve.js';
import { trainCommand, TRAIN_HELP } from './commands/train.js';
import { EXIT, UsageError, classify } from './errors.js';

const HELP = `owlet — mPLUG-Owl2 and mPLUG-Owl in TypeScript

usage: owlet <command> [options]

commands:
  run       answer one question about one or more images
  chat      an interactive conversation (/image PATH attaches an image)
  serve     an OpenAI-compatible HTTP server (chat completions with images)
  convert   official PyTorch .bin shards → safetensors
  train     run a training recipe (checkpoints, resume, Hugging Face export)
  bench     load time, ms per image, prefill/decode tokens/s, peak memory

owlet <command> --help shows a command's options.

${RUN_HELP}

${CHAT_HELP}

${SERVE_HELP}

${CONVERT_HELP}

${BENCH_HELP}

${TRAIN_HELP}`;

const COMMANDS: Record<string, (argv: string[], signal: AbortSignal) => Promise<number>> = {
  run: runCommand,
  chat: chatCommand,
  serve: serveCommand,
  convert: convertCommand,
  bench: benchCommand,
  train: trainCommand,
};

export async function main(argv: string[]): Promise<number> {
  // tfjs prints a banner recommending tfjs-node on first CPU use; a CLI does not want it on stdout.
  tf.env().set('PROD', true);
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${HELP}\n`);
    return cmd === undefined ? EXIT.BAD_INPUT : EXIT.OK;
  }
  if (cmd === '--version' || cmd === '-v') {
    process.stdout.write('owlet 0.0.0\n');
    return EXIT.OK;
  }
  const command = COMMANDS[cmd];
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    controller.abort();
  };
  // chat handles Ctrl-C itself (it stops the current answer); the others stop.
  if (cmd !== 'chat') process.on('SIGINT', onSigint);
  try {
    if (!command)
      throw new UsageError(
        `unknown command ${JSON.stringify(cmd)}`,
        'use run, chat, serve, convert, bench or train (owlet --help)',
      );
    return await command(rest, controller.signal);
  } catch (e) {
    const c = classify(e);
    if (interrupted) {
      process.stderr.write('interrupted\n');
      return EXIT.INTERRUPTED;
    }
    process.stderr.write(`owlet: error: ${c.message}\n`);
    if (c.exitCode === EXIT.INTERNAL && (process.env.OWLET_DEBUG || rest.includes('--debug'))) {
      process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
    }
    return c.exitCode;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`owlet: internal error: ${(e as Error)?.message ?? String(e)}\n`);
    process.exitCode = EXIT.INTERNAL;
  },
);
