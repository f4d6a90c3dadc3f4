/**
 * Bounded time and memory for hostile or careless model folders and prompts (issue 23 / checklist
 * L3): the context window, config values checked before anything is built, nested JSON.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { isOwletError, type OwletError } from '@owlet/core';
import { REPO_ROOT } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { resolveMplugOwlModelConfig } from './config.js';
import { fromPretrained, type MplugOwlModel } from './pretrained.js';

const MODEL_DIR = join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random');
const IMAGE = readFileSync(join(REPO_ROOT, 'apps/cli/assets/owl.png'));
const CONFIG = JSON.parse(readFileSync(join(MODEL_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
const WINDOW = 96;

const tmp = mkdtempSync(join(tmpdir(), 'owlet-bounds-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of the bundled model with some files replaced. */
function modelWith(name: string, files: Record<string, string>): string {
  const dir = join(tmp, name);
  cpSync(MODEL_DIR, dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  return dir;
}

async function collect(stream: AsyncIterable<string>): Promise<void> {
  for await (const _ of stream) {
    // drain
  }
}

describe('L3: the context window', () => {
  let model: MplugOwlModel;
  beforeAll(async () => {
    // A small window, and generation_config.json asking for 1e12 new tokens.
    const dir = modelWith('window', {
      'config.json': JSON.stringify({ ...CONFIG, max_position_embeddings: WINDOW }),
      'generation_config.json': JSON.stringify({ eos_token_id: 2, do_sample: false, max_new_tokens: 1e12 }),
    });
    model = await fromPretrained(dir, { backend: 'wasm' });
  });
  afterAll(() => model.dispose());

  it('max_new_tokens from generation_config.json (1e12) stops at the window with finish reason length', async () => {
    model.resetChat();
    const chatGuard = new AbortController();
    let chatTokens = 0;
    const s = model.chat({
      messages: [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is it?' }] }],
      images: [IMAGE],
      signal: chatGuard.signal,
    });
    for await (const _ of s) {
      if (++chatTokens > WINDOW) chatGuard.abort(new Error(`chat ran past the ${WINDOW}-token window`));
    }
    const r = await s.result;
    // The random weights may emit EOS by chance; without it the answer runs to the window exactly.
    if (r.finish_reason !== 'eos') {
      expect(r.finish_reason).toBe('length');
      expect(r.usage.prompt_tokens + r.usage.completion_tokens).toBe(WINDOW);
    }
    expect(r.usage.total_tokens).toBeLessThanOrEqual(WINDOW);
    // The guard aborts a run that goes past the window (a missing cap fails here, never runs for ever).
    const guard = new AbortController();
    let steps = 0;
    const g = await model.generate({
      input_ids: [1, 306, 763],
      eos_token_id: null,
      streamer: () => {
        if (++steps > WINDOW) guard.abort(new Error(`generation ran past the ${WINDOW}-token window`));
      },
      signal: guard.signal,
    });
    expect(g.finish_reason).toBe('length');
    expect(g.generated_ids).toHaveLength(WINDOW - 3);
  });

  it('a prompt that does not fit is refused before prefill (typed), and the conversation survives', async () => {
    model.resetChat();
    const turn1 = [
      { role: 'user' as const, content: [{ type: 'image' as const }, { type: 'text' as const, text: 'Hi' }] },
    ];
    const first = model.chat({ messages: turn1, images: [IMAGE], max_new_tokens: 3 });
    await collect(first);
    const a1 = (await first.result).text;
    const long = 'describe the owl '.repeat(6250);
    const bad = model.chat({
      messages: [...turn1, { role: 'assistant', content: a1 }, { role: 'user', content: long }],
      images: [IMAGE],
    });
    const err = await collect(bad).catch((e: unknown) => e);
    expect(isOwletError(err, 'CONTEXT_WINDOW_EXCEEDED')).toBe(true);
    expect((err as OwletError).message).toMatch(new RegExp(`context window is ${WINDOW} tokens`));
    expect((err as OwletError).details.prompt_tokens).toBeGreaterThan(25000);
    // The earlier turn is still cached: a follow-up that fits reuses it.
    const next = model.chat({
      messages: [...turn1, { role: 'assistant', content: a1 }, { role: 'user', content: 'And?' }],
      images: [IMAGE],
      max_new_tokens: 2,
    });
    await collect(next);
    expect((await next.result).usage.cached_prompt_tokens).toBeGreaterThan(9);
    // The low-level generate refuses too.
    const g = await model.generate({ input_ids: Array.from({ length: WINDOW }, () => 306) }).catch((e: unknown) => e);
    expect(isOwletError(g, 'CONTEXT_WINDOW_EXCEEDED')).toBe(true);
  });
});

describe('config values are bounded before anything is built (INVALID_CONFIG)', () => {
  /** The bundled config with fields replaced; keys are dotted paths (`visual_config.visual_model.image_size`). */
  const v2 = (patch: Record<string, number>) => {
    const c = structuredClone(CONFIG);
    for (const [path, value] of Object.entries(patch)) {
      const keys = path.split('.');
      let o = c;
      for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
      o[keys[keys.length - 1] as string] = value;
    }
    return c;
  };
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['num_hidden_layers 1e6', v2({ num_hidden_layers: 1_000_000 }), /llama config: num_hidden_layers/],
    [
      'vision layers 1e7',
      v2({ 'visual_config.visual_model.num_hidden_layers': 10_000_000 }),
      /vision config: num_hidden_layers/,
    ],
    [
      'abstractor layers 1e6',
      v2({ 'visual_config.visual_abstractor.num_hidden_layers': 1_000_000 }),
      /visual abstractor config: num_hidden_layers/,
    ],
    ['vocab 1e9', v2({ vocab_size: 1e9 }), /vocab_size/],
    ['hidden size 2^40', v2({ hidden_size: 2 ** 40, num_attention_heads: 1 }), /hidden_size/],
    ['intermediate 1e12', v2({ intermediate_size: 1e12 }), /intermediate_size/],
    ['window 1e12', v2({ max_position_embeddings: 1e12 }), /max_position_embeddings/],
    ['image 1e6 px', v2({ 'visual_config.visual_model.image_size': 1_000_000 }), /vision config: image_size/],
    [
      'abstractor grid 1e5',
      v2({ 'visual_config.visual_abstractor.grid_size': 100_000 }),
      /visual abstractor config: grid_size/,
    ],
    [
      'queries 1e7',
      v2({ 'visual_config.visual_abstractor.num_learnable_queries': 10_000_000 }),
      /num_learnable_queries/,
    ],
    [
      'each count within its cap, the product far over the parameter budget',
      v2({ num_hidden_layers: 1000, hidden_size: 65536, num_attention_heads: 512, intermediate_size: 262144 }),
      /implies about .* parameters/,
    ],
    ['heads that do not divide the width', v2({ num_attention_heads: 7 }), /multiple of num_attention_heads/],
  ];
  for (const [name, json, message] of cases) {
    it(name, () => {
      let err: unknown;
      try {
        resolveMplugOwlModelConfig(json);
      } catch (e) {
        err = e;
      }
      expect(isOwletError(err, 'INVALID_CONFIG'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message.length).toBeLessThan(400);
    });
  }

  it('the released sizes stay accepted', () => {
    expect(() => resolveMplugOwlModelConfig({ model_type: 'mplug_owl2' })).not.toThrow();
    expect(() => resolveMplugOwlModelConfig({ model_type: 'mplug-owl', text_config: {} })).not.toThrow();
  });

  it('through fromPretrained: typed INVALID_CONFIG, nothing loaded', async () => {
    const dir = modelWith('layers', { 'config.json': JSON.stringify({ ...CONFIG, num_hidden_layers: 1_000_000 }) });
    const err = await fromPretrained(dir, { backend: 'cpu' }).catch((e: unknown) => e);
    expect(isOwletError(err, 'INVALID_CONFIG')).toBe(true);
  });

  it('deeply nested JSON (10^5 levels) in config.json, generation_config.json or preprocessor_config.json is INVALID_CONFIG', async () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    for (const [file, text] of [
      ['config.json', `{"model_type":${deep}}`],
      ['config.json', `{"model_type":"mplug_owl2","x":${deep}}`],
      ['generation_config.json', `{"max_new_tokens":${deep}}`],
      ['preprocessor_config.json', `{"size":${deep}}`],
    ] as const) {
      const dir = modelWith(`deep-${file}-${text.length}-${text.slice(2, 6)}`, { [file]: text });
      const err = await fromPretrained(dir, { backend: 'cpu' }).catch((e: unknown) => e);
      expect(isOwletError(err, 'INVALID_CONFIG'), `${file}: ${String(err)}`).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`${file.replace('.', '\\.')}.*nest`));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('B29/L7: side files fetched from a URL are capped while they stream', () => {
  it('an endless config.json (no Range support, no length) stops at 64 MiB with a typed error', async () => {
    let sent = 0;
    const chunk = Buffer.alloc(256 * 1024, 0x20); // JSON whitespace, forever
    const server = createServer((req, res) => {
      if (!req.url?.endsWith('/config.json')) {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      if (req.method === 'HEAD') return void res.end();
      const pump = () => {
        // bounded: stops when the client goes away, or after 1 GiB
        while (!res.destroyed && sent < 2 ** 30) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/model/`;
      const err = await fromPretrained(url, { backend: 'cpu' }).catch((e: unknown) => e);
      expect(isOwletError(err, 'FETCH_TOO_LARGE'), String(err)).toBe(true);
      expect(sent).toBeLessThan(64 * 2 ** 20 + 32 * 2 ** 20);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
