import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { isOwletError } from '@owlet/errors';
import { fromPretrained } from '@owlet/mplug-owl';
import { REPO_ROOT } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bundledModelDir } from '../../model.config.js';
import { redCircle } from '../../test/shapes.js';
import { checkTensorsFitDevice } from './device-limits.js';
import { LocalOwletEngine } from './engine.js';
import { EngineErrorCode, type EngineError } from './errors.js';
import { OwletEngineHandler } from './handler.js';
import type { EngineProgress, WorkerRequest, WorkerResponse } from './protocol.js';
import { WebWorkerOwletEngine } from './worker-engine.js';

const MODEL_DIR = bundledModelDir(resolve(REPO_ROOT, 'apps/web'));
const IMAGE = new Blob([redCircle(64).png as BlobPart], { type: 'image/png' });
const Q = [
  {
    role: 'user' as const,
    content: [{ type: 'image' as const }, { type: 'text' as const, text: 'What color is the circle?' }],
  },
];

/** The model folder as a folder picker gives it (File objects with relative paths). */
function pickedFolder(): File[] {
  return readdirSync(MODEL_DIR).map((n) => {
    const f = new File([readFileSync(join(MODEL_DIR, n)) as BlobPart], n);
    Object.defineProperty(f, 'webkitRelativePath', { value: `model/${n}` });
    return f;
  });
}

/** Greedy answers of @owlet/mplug-owl itself, for 2 and 12 new tokens. */
let reference: { short: string; long: string };
beforeAll(async () => {
  const model = await fromPretrained(MODEL_DIR, { backend: 'wasm' });
  const ask = async (n: number) => {
    model.resetChat();
    const s = model.chat({ messages: Q, images: [IMAGE], max_new_tokens: n });
    for await (const _ of s) {
      // drain
    }
    return (await s.result).text;
  };
  reference = { short: await ask(2), long: await ask(12) };
  model.dispose();
});

describe('checkTensorsFitDevice', () => {
  const limits = { maxStorageBufferBindingSize: 128 * 2 ** 20, maxBufferSize: 256 * 2 ** 20 };
  it('passes a model whose largest float32 tensor fits the binding limit', () => {
    expect(() => checkTensorsFitDevice([{ key: 'a', shape: [4096, 8192] }], limits)).not.toThrow();
  });
  it('names the tensor, its size and the limit it breaks', () => {
    let err: unknown;
    try {
      checkTensorsFitDevice(
        [
          { key: 'small', shape: [10] },
          { key: 'model.layers.0.mlp.up_proj.weight', shape: [11008, 4096] },
        ],
        limits,
      );
    } catch (e) {
      err = e;
    }
    expect(isOwletError(err, EngineErrorCode.EXCEEDS_DEVICE_LIMITS)).toBe(true);
    expect((err as Error).message).toMatch(
      /model\.layers\.0\.mlp\.up_proj\.weight needs a 172\.0 MiB float32 buffer.*at most 128\.0 MiB \(maxStorageBufferBindingSize\)/,
    );
  });
});

describe('LocalOwletEngine (wasm, a picked folder)', () => {
  const engine = new LocalOwletEngine();
  afterAll(() => engine.unload());

  it('refuses to answer before a model is loaded', async () => {
    const err = await engine.chat({ messages: Q, images: [IMAGE] }).catch((e) => e);
    expect(isOwletError(err, EngineErrorCode.NOT_READY)).toBe(true);
  });

  it('loads with progress in two phases, answers as @owlet/mplug-owl does, and reports tokens', async () => {
    const events: EngineProgress[] = [];
    const info = await engine.load(
      { kind: 'files', files: pickedFolder() },
      { device: 'wasm', progress_callback: (e) => events.push(e) },
    );
    expect(info.backend.name).toBe('wasm');
    expect(info.model).toMatchObject({
      id: 'model',
      type: 'mplug_owl2',
      verified: false,
      files: readdirSync(MODEL_DIR).length,
    });
    expect(events.some((e) => e.phase === 'fetch' && e.status === 'done')).toBe(true);
    expect(events.some((e) => e.phase === 'load' && e.status === 'progress' && e.file.endsWith('.safetensors'))).toBe(
      true,
    );
    const updates: { output: string; numTokens: number }[] = [];
    let started = 0;
    const r = await engine.chat(
      { messages: Q, images: [IMAGE], max_new_tokens: 2 },
      { onStart: () => started++, onUpdate: (u) => updates.push(u) },
    );
    expect(started).toBe(1);
    expect(r.output).toBe(reference.short);
    expect(r.numTokens).toBe(2);
    expect(
      updates
        .map((u) => u.output)
        .join('')
        .trim(),
    ).toBe(r.output);
    expect(updates.at(-1)?.numTokens).toBeLessThanOrEqual(2);
  });

  it('interruptGenerate right after chat starts (the Stop pressed with Ask) answers nothing: no token, no turn', async () => {
    await engine.resetChat();
    let tokens = 0;
    const pending = engine.chat(
      { messages: Q, images: [IMAGE], max_new_tokens: 12 },
      { onUpdate: (u) => (tokens = u.numTokens) },
    );
    engine.interruptGenerate(); // the same task: the image has not been read yet
    const r = await pending;
    expect(r).toMatchObject({ output: '', finish_reason: 'abort', numTokens: 0 });
    expect(tokens).toBe(0);
    // The engine is free again and the conversation was not touched: the next answer is the reference.
    const next = await engine.chat({ messages: Q, images: [IMAGE], max_new_tokens: 2 });
    expect(next.output).toBe(reference.short);
  });

  it('interruptGenerate from another task ends the answer between tokens, keeping what came', async () => {
    await engine.resetChat();
    let busy: unknown;
    const r = await engine.chat(
      { messages: Q, images: [IMAGE], max_new_tokens: 12 },
      {
        onUpdate: () => {
          // As the worker's onmessage would: a separate task, not a call inside the loop.
          setTimeout(() => engine.interruptGenerate(), 0);
          busy ??= engine.chat({ messages: Q, images: [IMAGE] }).catch((e) => e);
        },
      },
    );
    expect(r.finish_reason).toBe('abort');
    expect(r.numTokens).toBeLessThan(12);
    expect(reference.long.startsWith(r.output)).toBe(true);
    expect(isOwletError(await busy, EngineErrorCode.BUSY)).toBe(true);
  });

  it('unload releases every tensor (an intentional unload is no error)', async () => {
    await engine.unload();
    expect(tf.memory().numTensors).toBe(0);
    const err = await engine.chat({ messages: Q, images: [IMAGE] }).catch((e) => e);
    expect(isOwletError(err, EngineErrorCode.NOT_READY)).toBe(true);
  });

  it('a folder without config.json is refused with a clear message and nothing loaded', async () => {
    const err = await engine
      .load({ kind: 'files', files: pickedFolder().filter((f) => f.name !== 'config.json') }, { device: 'wasm' })
      .catch((e) => e);
    expect(isOwletError(err, EngineErrorCode.INVALID_MODEL_SOURCE)).toBe(true);
    expect(tf.memory().numTensors).toBe(0);
  });
});

/** A Worker stand-in: messages go to an OwletEngineHandler in this thread, asynchronously both ways. */
class InThreadWorker {
  onmessage: ((ev: MessageEvent<WorkerResponse>) => void) | null = null;
  onerror: ((ev: ErrorEvent) => void) | null = null;
  onmessageerror: (() => void) | null = null;
  readonly received: WorkerRequest[] = [];
  terminated = false;
  readonly handler = new OwletEngineHandler((m) =>
    setTimeout(() => this.onmessage?.({ data: structuredClone(m) } as MessageEvent<WorkerResponse>), 0),
  );
  postMessage(m: WorkerRequest): void {
    this.received.push(m);
    // Node's structuredClone turns a File into a Blob (browsers keep File); pass files as they are.
    const copy =
      m.type === 'load' && m.source.kind === 'files'
        ? { ...m, source: { ...m.source, files: [...m.source.files] } }
        : structuredClone(m);
    setTimeout(() => void this.handler.onmessage(copy), 0);
  }
  terminate(): void {
    this.terminated = true;
  }
  crash(message: string): void {
    this.onerror?.({ message, preventDefault() {} } as ErrorEvent);
  }
}

describe('WebWorkerOwletEngine ↔ OwletEngineHandler (the worker protocol)', () => {
  const workers: InThreadWorker[] = [];
  const engine = new WebWorkerOwletEngine(() => {
    const w = new InThreadWorker();
    workers.push(w);
    return w as unknown as Worker;
  });
  afterAll(() => engine.unload());

  it('load, generate (start, update…, complete), reset and typed errors cross the boundary', async () => {
    const phases = new Set<string>();
    const info = await engine.load(
      { kind: 'files', files: pickedFolder() },
      { device: 'wasm', progress_callback: (e) => phases.add(`${e.phase}:${e.status}`) },
    );
    expect(info.model.type).toBe('mplug_owl2');
    expect([...phases]).toEqual(
      expect.arrayContaining(['backend:loading', 'fetch:initiate', 'fetch:done', 'load:progress']),
    );
    const seen: string[] = [];
    const r = await engine.chat(
      { messages: Q, images: [IMAGE], max_new_tokens: 2 },
      { onStart: () => seen.push('start'), onUpdate: (u) => seen.push(`update:${u.numTokens}`) },
    );
    expect(r.output).toBe(reference.short);
    expect(seen[0]).toBe('start');
    expect(seen.length).toBeGreaterThan(1);
    expect(workers[0]?.received.map((m) => m.type)).toEqual(['load', 'generate']);
    await engine.resetChat();
    expect((await engine.memory()).numTensors).toBeGreaterThan(0);
    await engine.unload();
    expect((await engine.memory()).numTensors).toBe(0);
    const err = (await engine.chat({ messages: Q, images: [IMAGE] }).catch((e) => e)) as EngineError;
    expect(err.code).toBe(EngineErrorCode.NOT_READY);
    expect(err.message).toMatch(/no model is loaded/);
  });

  it('a crashed worker fails its pending calls with WORKER_CRASHED; the next call starts a new worker', async () => {
    const pending = engine.memory();
    workers.at(-1)?.crash('out of memory');
    const err = (await pending.catch((e) => e)) as EngineError;
    expect(err.code).toBe(EngineErrorCode.WORKER_CRASHED);
    expect(err.message).toContain('out of memory');
    expect(workers.at(-1)?.terminated).toBe(true);
    const n = workers.length;
    expect((await engine.memory()).numTensors).toBe(0);
    expect(workers.length).toBe(n + 1);
  });
});
