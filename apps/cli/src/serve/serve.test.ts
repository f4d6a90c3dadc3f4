/**
 * `owlet serve` end to end: the real server as a subprocess on loopback, driven by the official
 * `openai` client (non-streaming, streaming, images from data: URLs, usage, an API key) and by raw
 * HTTP for every row of the reliability checklist that applies to an HTTP API: B29–B34, F15,
 * L1–L4 and L6–L10 (L5, the soak, is soak.test.ts). Every wait is a bounded poll.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DEFAULT_MODEL_DIR } from '../model.js';
import {
  type RawResponse,
  type RunningServer,
  metric,
  raw,
  serveExit,
  sleep,
  startServer,
  until,
} from './serve.testutil.js';
import { dataUrl, makePng, writeTinyModel } from './test-model.testutil.js';

const tmp = mkdtempSync(join(tmpdir(), 'owlet-serve-'));
const MODEL = join(tmp, 'owlet-test-tiny');
const KEY = 'test-key-0123456789';
const SMALL_PNG = makePng(40, 30, (x, y) => [x * 6, y * 8, 128]);
const LIMIT = 1024 * 1024; // --max-body-bytes of the main server

let main: RunningServer;
let client: OpenAI;
let media: Server; // a hostile/helpful image host on loopback
let mediaPort: number;
const mediaSockets = new Set<Socket>();

beforeAll(async () => {
  await writeTinyModel(MODEL, { imageSize: 56, contextWindow: 2048, maxNewTokens: 16 });
  media = createServer((req, res) => {
    if (req.url === '/owl.png') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(SMALL_PNG);
    } else if (req.url === '/redirect') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
      res.end();
    } else if (req.url === '/stall') {
      // never answers
    } else {
      res.writeHead(404);
      res.end('not found');
    }
  });
  media.on('connection', (s) => {
    mediaSockets.add(s);
    s.on('close', () => mediaSockets.delete(s));
  });
  media.listen(0, '127.0.0.1');
  await once(media, 'listening');
  mediaPort = (media.address() as AddressInfo).port;
  main = await startServer([
    '--model',
    MODEL,
    '--backend',
    'wasm',
    '--max-queue',
    '3',
    '--max-images',
    '2',
    '--max-body-bytes',
    String(LIMIT),
    '--sse-ping-interval',
    '0.1',
    '--request-timeout',
    '2',
    '--allowed-media-domains',
    'localhost',
  ]);
  client = new OpenAI({ baseURL: `${main.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

afterAll(async () => {
  await main?.stop();
  for (const s of mediaSockets) s.destroy();
  media?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const MODEL_ID = basename(MODEL);
const chat = (extra: Record<string, unknown> = {}, text = 'What is in the picture?') =>
  JSON.stringify({ model: MODEL_ID, messages: [{ role: 'user', content: text }], max_tokens: 4, ...extra });
const withImage = (url: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: MODEL_ID,
    messages: [
      {
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url } },
          { type: 'text', text: 'What is it?' },
        ],
      },
    ],
    max_tokens: 3,
    ...extra,
  });
const post = (body: string | Buffer, headers: Record<string, string> = {}, server = main) =>
  raw(`${server.url}/v1/chat/completions`, { body, headers });
const metricsText = async (server = main, headers: Record<string, string> = {}) =>
  (await raw(`${server.url}/metrics`, { headers })).body;

function expectError(r: RawResponse, status: number, param?: string | null) {
  expect(r.status).toBe(status);
  const e = r.json().error;
  expect(typeof e.message).toBe('string');
  expect(typeof e.type).toBe('string');
  expect('param' in e && 'code' in e).toBe(true);
  if (param !== undefined) expect(e.param).toBe(param);
  return e as { message: string; type: string; param: string | null; code: string | null };
}

/** A streaming request read through a raw socket, so the test controls when it goes away. */
function openStream(server: RunningServer, body: string, headers: Record<string, string> = {}) {
  const sock = connect(server.port, '127.0.0.1');
  let data = '';
  sock.on('data', (d: Buffer) => (data += d.toString()));
  sock.on('error', () => {});
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  const hdrs = Object.entries({ 'content-type': 'application/json', ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  sock.write(
    `POST /v1/chat/completions HTTP/1.1\r\nhost: localhost:${server.port}\r\n${hdrs}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  return {
    sock,
    closed,
    text: () => data,
    hasContent: () => /"delta":\{"content":"[^"]/.test(data),
    close: () => sock.destroy(),
  };
}

describe('with the official openai client', () => {
  it('lists the model and answers a text question, with usage and owlet timing extras', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL_ID]);
    const r = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Describe an owl.' }],
      max_tokens: 5,
      temperature: 0,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]?.message.role).toBe('assistant');
    expect(typeof r.choices[0]?.message.content).toBe('string');
    expect(r.choices[0]?.finish_reason).toBe('length'); // random weights do not say EOS
    expect(r.usage?.completion_tokens).toBe(5);
    expect(r.usage?.total_tokens).toBe((r.usage?.prompt_tokens ?? 0) + 5);
    const extra = (r.usage as unknown as { extra: Record<string, number> }).extra;
    for (const k of [
      'prefill_tokens_per_s',
      'decode_tokens_per_s',
      'time_to_first_token_s',
      'time_per_output_token_s',
      'e2e_latency_s',
    ]) {
      expect(extra[k], k).toBeGreaterThan(0);
    }
    expect(extra.e2e_latency_s).toBeGreaterThanOrEqual(extra.time_to_first_token_s ?? Number.NaN);
  });

  it('streams chunks that join to the non-streamed answer, with usage last (include_usage)', async () => {
    const params = {
      model: MODEL_ID,
      messages: [{ role: 'user' as const, content: 'Describe an owl in detail.' }],
      max_tokens: 12,
      temperature: 0,
    };
    const full = await client.chat.completions.create(params);
    const stream = await client.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(full.choices[0]?.message.content);
    const last = chunks[chunks.length - 1];
    expect(last?.choices).toEqual([]);
    expect(last?.usage?.completion_tokens).toBe(12);
    expect(last?.usage?.prompt_tokens).toBe(full.usage?.prompt_tokens);
    expect(chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0]?.finish_reason)).toEqual([
      'length',
    ]);
    for (const c of chunks.slice(0, -1)) expect(c.usage).toBeNull();
  });

  it('answers about an image given as a data: URL, which costs the image tokens in the prompt', async () => {
    const text = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is it?' }] }],
      max_tokens: 3,
    });
    const img = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: dataUrl(SMALL_PNG) } },
            { type: 'text', text: 'What is it?' },
          ],
        },
      ],
      max_tokens: 3,
    });
    expect(img.choices[0]?.message.content?.length).toBeGreaterThan(0);
    // the tiny model's abstractor makes 4 queries + 1 eos token per image
    expect((img.usage?.prompt_tokens ?? 0) - (text.usage?.prompt_tokens ?? 0)).toBeGreaterThanOrEqual(4);
  });

  it('samples n choices, honours stop, and reports errors as typed SDK errors', async () => {
    const r = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 4,
      n: 3,
      temperature: 1,
      seed: 5,
    });
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(r.usage?.completion_tokens).toBe(12);
    const greedy = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 10,
      temperature: 0,
    });
    const answer = greedy.choices[0]?.message.content ?? '';
    const stopAt = answer.slice(4, 7);
    const stopped = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 10,
      temperature: 0,
      stop: [stopAt],
    });
    expect(stopped.choices[0]?.finish_reason).toBe('stop');
    expect(stopped.choices[0]?.message.content).toBe(answer.slice(0, answer.indexOf(stopAt)).trim());

    await expect(
      client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
    await expect(
      client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'x' }], n: 9 }),
    ).rejects.toMatchObject({ status: 400, param: 'n' });
  });
});

describe('image URLs (B29, B30)', () => {
  it('refuses what is not an image, malformed and empty URLs, file: URLs, 404s and off-list redirects', async () => {
    const param = 'messages[0].content[0].image_url.url';
    const cases = [
      'data:text/plain;base64,aGVsbG8=',
      dataUrl(new TextEncoder().encode('<!doctype html><p>hi</p>')), // HTML labelled image/png
      'malformed',
      '',
      'file:///etc/passwd',
      'file://../x.png',
      `http://localhost:${mediaPort}/missing.png`,
      `http://localhost:${mediaPort}/redirect`,
      `http://127.0.0.1:${mediaPort}/owl.png`, // a host that is not on the list
    ];
    for (const url of cases) expectError(await post(withImage(url)), 400, param);
    // the allowed host works
    const ok = await post(withImage(`http://localhost:${mediaPort}/owl.png`));
    expect(ok.status, ok.body).toBe(200);
  });
});

describe('bad requests never reach the engine (B31, B32)', () => {
  it('refuses bad numbers, unknown fields, wrong types and unsupported features with 400', async () => {
    const before = metric(await metricsText(), 'owlet_queue_wait_seconds_count');
    const bad: [Record<string, unknown>, string][] = [
      [{ max_tokens: -1 }, 'max_tokens'],
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ max_tokens: 1.5 }, 'max_tokens'],
      [{ max_tokens: 1e9 }, 'max_tokens'], // over the context window
      [{ max_tokens: '5' }, 'max_tokens'], // no type coercion
      [{ n: 0 }, 'n'],
      [{ n: -1 }, 'n'],
      [{ n: 1.5 }, 'n'],
      [{ n: 9 }, 'n'],
      [{ top_k: -1 }, 'top_k'],
      [{ top_k: 1.5 }, 'top_k'],
      [{ top_p: 0 }, 'top_p'],
      [{ temperature: -0.5 }, 'temperature'],
      [{ temperature: 3 }, 'temperature'],
      [{ logit_bias: { '5': 101 } }, 'logit_bias[5]'],
      [{ logit_bias: { abc: 1 } }, 'logit_bias'],
      [{ logit_bias: { '5': 1 } }, 'logit_bias'], // well-formed but not implemented
      [{ top_logprobs: 6 }, 'top_logprobs'],
      [{ logprobs: true }, 'logprobs'],
      [{ presence_penalty: 1 }, 'presence_penalty'],
      [{ response_format: { type: 'json_object' } }, 'response_format'],
      [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
      [{ n_discard: 5 }, 'n_discard'],
      [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      [{ seed: 'x' }, 'seed'],
      [{ messages: 'hello' }, 'messages'],
      [{ messages: [] }, 'messages'],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
      [{ messages: [{ role: 'user', content: [{ type: 'audio', data: 'x' }] }] }, 'messages[0].content'],
      [{ messages: [{ role: 'assistant', content: 'x' }] }, 'messages[0].role'],
      [{ stream_options: { include_usage: true } }, 'stream_options'], // without stream
    ];
    for (const [extra, param] of bad) {
      const r = await post(chat(extra));
      const e = expectError(r, 400);
      expect(e.type).toBe('invalid_request_error');
      expect(e.param, JSON.stringify(extra)).toBe(param);
    }
    // temperature: Infinity through JSON (1e999 parses to Infinity)
    expectError(await post(chat().replace('"max_tokens":4', '"max_tokens":4,"temperature":1e999')), 400, 'temperature');
    // JSON that is not JSON, and __proto__ keys
    expectError(await post('{"model": '), 400);
    expectError(await post(`{"model":"${MODEL_ID}","messages":[],"__proto__":{"x":1}}`), 400);
    // 10^4 levels of nesting
    const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    expectError(await post(chat().replace('"max_tokens":4', `"max_tokens":4,"extra":${deep}`)), 400, 'extra');
    expectError(await post(`{"model":"${MODEL_ID}","messages":${deep}}`), 400);
    // not JSON at all
    expectError(await post('hello', { 'content-type': 'text/plain' }), 415);
    const after = metric(await metricsText(), 'owlet_queue_wait_seconds_count');
    expect(after).toBe(before); // none of them was queued
    // a system message: the model's chat template refuses it (its system prompt is fixed)
    expectError(
      await post(
        JSON.stringify({
          model: MODEL_ID,
          messages: [
            { role: 'system', content: 'be brief' },
            { role: 'user', content: 'x' },
          ],
        }),
      ),
      400,
    );
    expect((await raw(`${main.url}/health`)).status).toBe(200);
  });

  it('answers 413 one byte over the body limit and serves a body exactly at it', async () => {
    const base = chat({ max_tokens: 1 });
    const atLimit = base + ' '.repeat(LIMIT - Buffer.byteLength(base));
    expect(Buffer.byteLength(atLimit)).toBe(LIMIT);
    expect((await post(atLimit)).status).toBe(200);
    const over = `${atLimit} `;
    const r = await post(over);
    expectError(r, 413);
    expect(r.json().error.code).toBe('request_too_large');
  });
});

describe('host and origin checks (B34)', () => {
  it('refuses a rebinding Host and a foreign Origin with 403, and serves loopback names', async () => {
    const evil = await raw(`${main.url}/v1/models`, {
      headers: { host: 'evil.example', origin: 'http://evil.example' },
    });
    expectError(evil, 403);
    expect(evil.json().error.code).toBe('host_not_allowed');
    expectError(await raw(`${main.url}/health`, { headers: { host: `evil.example:${main.port}` } }), 403);
    const origin = await post(chat(), { origin: 'http://evil.example' });
    expectError(origin, 403);
    expect(origin.json().error.code).toBe('origin_not_allowed');
    for (const host of [`localhost:${main.port}`, `127.0.0.1:${main.port}`, `[::1]:${main.port}`]) {
      expect((await raw(`${main.url}/v1/models`, { headers: { host } })).status, host).toBe(200);
    }
    expect((await raw(`${main.url}/v1/models`, { headers: { origin: `http://localhost:5173` } })).status).toBe(200);
  });
});

describe('load (L1, L2, L3, L8, L9) and faults (F15)', () => {
  it('queues FIFO up to --max-queue and answers 503 with Retry-After at once beyond it (L1)', async () => {
    const blocker = openStream(main, chat({ stream: true, max_tokens: 1900 }));
    await until(blocker.hasContent, 'the first request to start');
    const order: string[] = [];
    const queued = ['B', 'C', 'D'].map((name, i) => {
      const p = post(chat({ max_tokens: 2 })).then((r) => {
        order.push(name);
        return r;
      });
      return { name, p, depth: i + 1 };
    });
    for (const q of queued) {
      // wait until this one is in the queue before sending the next: the arrival order is known
      await until(async () => metric(await metricsText(), 'owlet_queue_depth') >= q.depth, `${q.name} queued`);
    }
    const refused = await post(chat({ max_tokens: 2 }));
    expectError(refused, 503);
    expect(refused.json().error.code).toBe('server_busy');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    blocker.close();
    const results = await Promise.all(queued.map((q) => q.p));
    for (const r of results) expect(r.status).toBe(200);
    expect(order).toEqual(['B', 'C', 'D']);
  });

  it('serves n at the cap (8) and refuses 9 (L2)', async () => {
    const r = await post(chat({ n: 8, max_tokens: 1, temperature: 1, seed: 1 }));
    expect(r.status).toBe(200);
    expect(r.json().choices).toHaveLength(8);
    expectError(await post(chat({ n: 9, max_tokens: 1 })), 400, 'n');
  });

  it('caps max_tokens at the context window minus the prompt, and refuses a prompt that does not fit (L3)', async () => {
    const probe = (await post(chat({ max_tokens: 1 }, 'owl '.repeat(1000)))).json();
    const per = probe.usage.prompt_tokens;
    const words = Math.floor((1000 * (2048 - 6)) / per);
    const r = await post(chat({ max_tokens: 2000 }, 'owl '.repeat(words)));
    expect(r.status, r.body).toBe(200);
    const u = r.json().usage;
    expect(u.prompt_tokens).toBeLessThan(2048);
    expect(u.completion_tokens).toBe(2048 - u.prompt_tokens);
    expect(r.json().choices[0].finish_reason).toBe('length');
    const e = expectError(await post(chat({ max_tokens: 5 }, 'owl '.repeat(2100))), 400, 'messages');
    expect(e.code).toBe('context_length_exceeded');
    // absent: generation_config.json's 16
    expect((await post(chat({ max_tokens: undefined }))).json().usage.completion_tokens).toBe(16);
  });

  it('refuses images over --max-images before decoding any (L8)', async () => {
    const junk = dataUrl(new Uint8Array([1, 2, 3]));
    const body = JSON.stringify({
      model: MODEL_ID,
      messages: [
        {
          role: 'user',
          content: [junk, junk, junk].map((url) => ({ type: 'image_url', image_url: { url } })),
        },
      ],
    });
    const e = expectError(await post(body), 400, 'messages');
    expect(e.code).toBe('too_many_images'); // not a decode error: the images were never read
  });

  it('sends SSE keep-alive pings while a streamed request waits (L9)', async () => {
    const blocker = openStream(main, chat({ stream: true, max_tokens: 1900 }));
    await until(blocker.hasContent, 'the blocker to start');
    const waiting = openStream(main, chat({ stream: true, max_tokens: 2 }));
    await until(() => /: ping/.test(waiting.text()), 'a ping');
    expect(waiting.text()).toMatch(/^HTTP\/1\.1 200/);
    expect(waiting.text()).not.toMatch(/data: \{/); // nothing else came yet
    blocker.close();
    await until(() => waiting.text().includes('data: [DONE]'), 'the answer');
    waiting.close();
    // and the openai client reads a stream with pings in it
    const s = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 3,
      stream: true,
    });
    let n = 0;
    for await (const c of s) n += c.choices[0]?.delta.content ? 1 : 0;
    expect(n).toBeGreaterThan(0);
  });

  it('one request that fails in decoding does not disturb the others (F15)', async () => {
    const broken = dataUrl(SMALL_PNG.slice(0, 40)); // a valid PNG header, then nothing
    const [a, bad, b, c] = await Promise.all([
      post(chat({ max_tokens: 3 })),
      post(withImage(broken)),
      post(withImage(dataUrl(SMALL_PNG))),
      post(chat({ max_tokens: 3 })),
    ]);
    expect([a.status, b.status, c.status]).toEqual([200, 200, 200]);
    const e = expectError(bad, 400);
    expect(e.code).toBe('image_decode_failed');
    expect((await raw(`${main.url}/health`)).status).toBe(200);
  });
});

describe('slow and oversized uploads (L6, L7)', () => {
  it('cuts off a slow-loris upload at --request-timeout and stays responsive', async () => {
    const sock = connect(main.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.on('error', () => {});
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: localhost:${main.port}\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{"mo`,
    );
    const ticker = setInterval(() => sock.write(' '), 200); // a byte now and then, never the whole body
    try {
      expect((await raw(`${main.url}/health`)).status).toBe(200);
      let isClosed = false;
      void closed.then(() => (isClosed = true));
      await until(() => isClosed, 'the server to drop the slow upload', 1000);
    } finally {
      clearInterval(ticker);
      sock.destroy();
    }
    expect(got).toMatch(/^HTTP\/1\.1 408|^$/);
    expect((await raw(`${main.url}/health`)).status).toBe(200);
  });

  it('gives up on a stalled image fetch after 5 s', async () => {
    const e = expectError(await post(withImage(`http://localhost:${mediaPort}/stall`)), 400);
    expect(e.message).toMatch(/timed out \((no response within|the whole fetch took over) 5 s\)/);
  });

  it('serves a base64 image body at 1x the limit and refuses 2x with 413 while it streams (L7)', async () => {
    const png = makePng(450, 450); // noise: ~600 KB, ~810 KB as base64
    const one = withImage(dataUrl(png));
    expect(Buffer.byteLength(one)).toBeLessThan(LIMIT);
    expect(Buffer.byteLength(one)).toBeGreaterThan(LIMIT * 0.7);
    const ok = await post(one);
    expect(ok.status, ok.body).toBe(200);

    // 2x, sent chunked (no Content-Length), a piece at a time: the 413 comes before the end
    const two = Buffer.from(withImage(dataUrl(makePng(740, 740))));
    expect(two.length).toBeGreaterThan(2 * LIMIT * 0.9);
    const sock = connect(main.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.on('error', () => {});
    sock.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: localhost:${main.port}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n`,
    );
    let sent = 0;
    const piece = 64 * 1024;
    while (sent < two.length && got === '' && !sock.destroyed) {
      const part = two.subarray(sent, sent + piece);
      sock.write(`${part.length.toString(16)}\r\n`);
      sock.write(part);
      sock.write('\r\n');
      sent += part.length;
      await sleep(15);
    }
    await until(() => got.length > 0 || sock.destroyed, 'the 413');
    sock.destroy();
    expect(got).toMatch(/^HTTP\/1\.1 413/);
    expect(sent).toBeLessThan(two.length);
  });
});

describe('with an API key and CORS (B33, L4)', () => {
  let secure: RunningServer;
  beforeAll(async () => {
    secure = await startServer([
      '--model',
      MODEL,
      '--backend',
      'wasm',
      '--dtype',
      'q8', // quantized weights behind the same API
      '--api-key',
      KEY,
      '--cors-origin',
      'http://app.example',
      '--max-queue',
      '128',
    ]);
  });
  afterAll(async () => {
    await secure?.stop();
  });
  const auth = { authorization: `Bearer ${KEY}` };

  it('needs the key on every route but /health, as Bearer or X-Api-Key (B33)', async () => {
    const routes: [string, string, string?][] = [
      ['POST', '/v1/chat/completions', chat()],
      ['GET', '/v1/models'],
      ['GET', `/v1/models/${MODEL_ID}`],
      ['GET', '/metrics'],
      ['POST', '/v1/completions', '{}'],
      ['GET', '/nothing-here'],
    ];
    for (const [method, path, body] of routes) {
      const attempts: Record<string, string>[] = [
        {},
        { authorization: 'Bearer wrong-key-000' },
        { 'x-api-key': 'wrong' },
        { authorization: KEY }, // no "Bearer"
      ];
      for (const headers of attempts) {
        const r = await raw(secure.url, { method, path, ...(body ? { body } : {}), headers });
        const e = expectError(r, 401);
        expect(e.type).toBe('authentication_error');
        expect(e.code).toBe('invalid_api_key');
        expect(r.headers['www-authenticate']).toBe('Bearer');
      }
    }
    expect((await raw(`${secure.url}/health`)).status).toBe(200);
    expect(secure.stderr()).toMatch(/ready in .* q8 weights/);
    expect((await raw(`${secure.url}/v1/models`, { headers: auth })).status).toBe(200);
    expect((await raw(`${secure.url}/v1/models`, { headers: { 'x-api-key': KEY } })).status).toBe(200);
    expect((await post(chat(), { 'x-api-key': KEY }, secure)).status).toBe(200);

    const ok = new OpenAI({ baseURL: `${secure.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const r = await ok.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 2,
    });
    expect(r.usage?.completion_tokens).toBe(2);
    const wrong = new OpenAI({ baseURL: `${secure.url}/v1`, apiKey: 'not-the-key', maxRetries: 0 });
    await expect(wrong.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('answers CORS preflights for the listed origin only; other origins get 403', async () => {
    const pre = await raw(`${secure.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('http://app.example');
    expect(String(pre.headers['access-control-allow-headers']).toLowerCase()).toContain('authorization');
    const get = await raw(`${secure.url}/v1/models`, { headers: { ...auth, origin: 'http://app.example' } });
    expect(get.status).toBe(200);
    expect(get.headers['access-control-allow-origin']).toBe('http://app.example');
    expectError(await raw(`${secure.url}/v1/models`, { headers: { ...auth, origin: 'http://other.example' } }), 403);
    // without --cors-origin there are no CORS headers at all
    const plain = await raw(`${main.url}/v1/models`, { headers: { origin: 'http://localhost:3000' } });
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('frees the queue slot, the engine and its tensors when 100 streaming clients disconnect (L4)', async () => {
    const headers = { authorization: `Bearer ${KEY}` };
    const m0 = await metricsText(secure, headers);
    const tensors0 = metric(m0, 'owlet_tf_tensors');
    const gone0 = metric(m0, 'owlet_client_disconnects_total');
    const blocker = openStream(secure, chat({ stream: true, max_tokens: 1900 }), headers);
    await until(blocker.hasContent, 'the blocker to start');
    const clients = Array.from({ length: 100 }, () =>
      openStream(secure, chat({ stream: true, max_tokens: 500 }), headers),
    );
    await until(async () => metric(await metricsText(secure, headers), 'owlet_queue_depth') === 100, '100 queued');
    // 40 leave while still queued: their slots free at once
    for (const c of clients.slice(0, 40)) c.close();
    await until(async () => metric(await metricsText(secure, headers), 'owlet_queue_depth') === 60, 'slots freed');
    // 60 leave mid-stream, each right after its first token
    const watchers = clients.slice(40).map(async (c) => {
      await until(c.hasContent, 'a first token', 6000);
      c.close();
    });
    blocker.close();
    await Promise.all(watchers);
    await until(async () => {
      const m = await metricsText(secure, headers);
      return metric(m, 'owlet_queue_depth') === 0 && metric(m, 'owlet_requests_running') === 0;
    }, 'the engine to go idle');
    const m1 = await metricsText(secure, headers);
    expect(metric(m1, 'owlet_tf_tensors')).toBe(tensors0);
    await until(
      async () => metric(await metricsText(secure, headers), 'owlet_client_disconnects_total') === gone0 + 101,
      'every disconnect counted',
    );
    const ok = await post(chat({ max_tokens: 2 }), headers, secure);
    expect(ok.status).toBe(200);
  });
});

describe('starting up and shutting down (L10, §7.4)', () => {
  it('answers 503 "Loading model" on /health and inference while the weights load (L10)', async () => {
    // The model folder served over HTTP; the weights file is held until the test lets it go.
    let release: () => void = () => {};
    const released = new Promise<void>((r) => (release = r));
    const files = Object.fromEntries(readdirSync(MODEL).map((f) => [f, readFileSync(join(MODEL, f))]));
    const host = createServer((req, res) => {
      const name = (req.url ?? '/').slice(1);
      const body = files[name];
      if (!body) {
        res.writeHead(404);
        res.end();
        return;
      }
      const send = () => {
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      };
      if (name.endsWith('.safetensors')) void released.then(send);
      else send();
    });
    host.listen(0, '127.0.0.1');
    await once(host, 'listening');
    const port = (host.address() as AddressInfo).port;
    const s = await startServer(['--model', `http://127.0.0.1:${port}/`, '--backend', 'wasm'], { waitReady: false });
    try {
      for (let i = 0; i < 3; i++) {
        const h = await raw(`${s.url}/health`);
        expect(h.status).toBe(503);
        expect(h.json()).toMatchObject({ error: { code: 503, message: 'Loading model' } });
        const c = await post(chat(), {}, s);
        expect(c.status).toBe(503);
        expect(c.json().error.message).toBe('Loading model');
      }
      release();
      await until(async () => (await raw(`${s.url}/health`)).status === 200, 'the model to load');
      const id = (await raw(`${s.url}/v1/models`)).json().data[0].id;
      const r = await post(
        JSON.stringify({ model: id, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
        {},
        s,
      );
      expect(r.status, r.body).toBe(200);
    } finally {
      await s.stop();
      host.close();
    }
  });

  it('refuses to listen beyond loopback without an API key, and bad flags', async () => {
    const open = await serveExit(['--host', '0.0.0.0', '--port', '0']);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/--host 0\.0\.0\.0 .* needs an API key.*--api-key/);
    const port = await serveExit(['--port', '70000']);
    expect(port.code).toBe(2);
    const short = await serveExit(['--api-key', 'abc']);
    expect(short.code).toBe(2);
  });

  it('serves the CLI default model without --model, then drains on SIGTERM and exits 0', async () => {
    const s = await startServer(['--backend', 'wasm', '--sse-ping-interval', '60']);
    const id = basename(DEFAULT_MODEL_DIR.replace(/[\\/]+$/, ''));
    const models = (await raw(`${s.url}/v1/models`)).json();
    expect(models.data[0].id).toBe(id);
    const body = JSON.stringify({
      model: id,
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 40,
      stream: true,
    });
    const inflight = openStream(s, body);
    await until(inflight.hasContent, 'the answer to start');
    s.proc.kill('SIGTERM');
    await until(() => /shutting down/.test(s.stderr()), 'the drain to begin');
    // new requests are refused (503 on a kept connection, or no listener at all)
    const late = await raw(`${s.url}/health`).catch((e: Error) => ({ status: 0, error: e }));
    expect([0, 503]).toContain(late.status);
    await until(() => inflight.text().includes('data: [DONE]'), 'the answer in flight to finish');
    expect(inflight.text()).toContain('"finish_reason":"length"');
    inflight.close();
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toMatch(/stopped/);
  });
});
