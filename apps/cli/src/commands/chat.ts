/**
 * `owlet chat`: an interactive conversation. `/image PATH` attaches an image to the next message;
 * answers stream; the model keeps the conversation's KV cache between turns; Ctrl-C stops the
 * current answer without quitting (Ctrl-C twice at the prompt, /exit or end of input quits).
 * Works with piped stdin too (one message per line), which is how it is tested.
 */
import { createInterface } from 'node:readline';

import { getBackendInfo } from '@owlet/core';
import type { ChatMessage, ContentPart } from '@owlet/tokenizer';
import type { DecodedImage } from '@owlet/vision-encoder';

import { SAMPLING_OPTIONS, samplingFlags } from '../args.js';
import { parseFlags } from '../flags.js';
import { EXIT, classify } from '../errors.js';
import {
  NETWORK_OPTIONS,
  RANDOM_WEIGHTS_NOTICE,
  backendReport,
  loadModelFromFlags,
  networkLimits,
  parseBackend,
  readAndDecodeImage,
} from '../model.js';

export const CHAT_HELP = `owlet chat [options]

  --model DIR_OR_URL  --backend NAME  --dtype fp32|fp16|q8|q4  --threads N  --max-new-tokens N  --temperature T  --top-p P  --top-k K  --seed S
  --quiet (nothing on stderr but errors)  --verbose (the full backend reasoning)
  --fetch-timeout S  --allow-redirect ORIGIN   (as in owlet run)

In the conversation:
  /image PATH_OR_URL   attach an image to your next message
  /reset               start a new conversation
  /exit                quit (also Ctrl-D; Ctrl-C twice at the prompt)
  Ctrl-C               stop the answer being written`;

export async function chatCommand(argv: string[], signal: AbortSignal): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      model: { type: 'string' },
      backend: { type: 'string' },
      dtype: { type: 'string' },
      threads: { type: 'string' },
      quiet: { type: 'boolean' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...SAMPLING_OPTIONS,
      ...NETWORK_OPTIONS,
    },
    { command: 'chat' },
  );
  if (values.help) {
    process.stdout.write(`${CHAT_HELP}\n`);
    return EXIT.OK;
  }
  const backend = parseBackend(values.backend);
  const sampling = samplingFlags(values);
  const quiet = values.quiet === true;
  const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const network = networkLimits(values);
  const loaded = await loadModelFromFlags(values, { backend, quiet, signal, network });
  const { model } = loaded;
  const info = getBackendInfo();
  if (info && !quiet) process.stderr.write(backendReport(info, values.verbose === true));
  if (loaded.randomWeights && !quiet) process.stderr.write(`${RANDOM_WEIGHTS_NOTICE}\n`);
  if (tty && !quiet) process.stderr.write('type a message, /image PATH to attach an image, /help for commands\n');

  const messages: ChatMessage[] = [];
  const images: DecodedImage[] = [];
  let pendingImages: DecodedImage[] = [];
  let answering: AbortController | null = null;
  let interruptsAtPrompt = 0;

  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: tty ? '> ' : '' });
  const onInterrupt = () => {
    if (answering) {
      answering.abort();
      return;
    }
    interruptsAtPrompt++;
    if (interruptsAtPrompt >= 2) {
      rl.close();
      return;
    }
    process.stderr.write('\n(press Ctrl-C again or type /exit to quit)\n');
    rl.prompt();
  };
  rl.on('SIGINT', onInterrupt);
  process.on('SIGINT', onInterrupt);

  try {
    rl.prompt();
    for await (const raw of rl) {
      interruptsAtPrompt = 0;
      const line = raw.trim();
      if (line === '') {
        rl.prompt();
        continue;
      }
      if (line === '/exit' || line === '/quit') break;
      if (line === '/help') {
        process.stdout.write(`${CHAT_HELP}\n`);
        rl.prompt();
        continue;
      }
      if (line === '/reset') {
        messages.length = 0;
        images.length = 0;
        pendingImages = [];
        model.resetChat();
        if (!quiet) process.stderr.write('(new conversation)\n');
        rl.prompt();
        continue;
      }
      if (line.startsWith('/image')) {
        const arg = line.slice('/image'.length).trim();
        try {
          if (!arg) throw new Error('usage: /image PATH_OR_URL');
          // Decoded now: an image that does not decode is never attached.
          pendingImages.push(await readAndDecodeImage(arg, signal, network));
          if (!quiet) process.stderr.write(`(image attached: ${arg})\n`);
        } catch (e) {
          const c = classify(e);
          process.stderr.write(
            `error: ${c.exitCode === EXIT.INTERNAL ? (e as Error).message : c.message} (not attached)\n`,
          );
        }
        rl.prompt();
        continue;
      }
      if (line.startsWith('/')) {
        process.stderr.write(`error: unknown command ${line.split(/\s/)[0]} (/help lists them)\n`);
        rl.prompt();
        continue;
      }
      const content: ContentPart[] = [
        ...pendingImages.map(() => ({ type: 'image' }) as const),
        { type: 'text', text: line },
      ];
      const turnImages = [...images, ...pendingImages];
      answering = new AbortController();
      const turnSignal = AbortSignal.any([signal, answering.signal]);
      try {
        const stream = model.chat({
          messages: [...messages, { role: 'user', content }],
          images: turnImages,
          ...sampling,
          signal: turnSignal,
        });
        for await (const delta of stream) process.stdout.write(delta);
        const r = await stream.result;
        process.stdout.write(r.finish_reason === 'abort' ? ' [stopped]\n' : '\n');
        messages.push({ role: 'user', content }, { role: 'assistant', content: r.text });
        images.push(...pendingImages);
        pendingImages = [];
        if (!quiet && tty) {
          const u = r.usage;
          process.stderr.write(
            `[${u.completion_tokens} tokens, ${u.decode_tokens_per_s.toFixed(1)} tokens/s, ${u.cached_prompt_tokens}/${u.prompt_tokens} prompt tokens cached]\n`,
          );
        }
      } catch (e) {
        const c = classify(e);
        if (c.exitCode === EXIT.INTERRUPTED) process.stdout.write(' [stopped]\n');
        else process.stderr.write(`error: ${c.message}\n`);
        // The failed message is not part of the conversation; nor are the attachments it carried,
        // so the next message does not fail the same way.
        if (pendingImages.length > 0) {
          process.stderr.write(
            `(dropped ${pendingImages.length} attachment(s) of the failed message; /image attaches again)\n`,
          );
          pendingImages = [];
        }
        if (c.exitCode === EXIT.INTERNAL) throw e;
      } finally {
        answering = null;
      }
      if (signal.aborted) break;
      rl.prompt();
    }
  } finally {
    rl.close();
    process.off('SIGINT', onInterrupt);
    model.dispose();
  }
  return EXIT.OK;
}
