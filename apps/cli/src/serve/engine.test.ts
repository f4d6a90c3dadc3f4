/**
 * The engine in-process (its worker thread is real): FIFO order, the queue bound, cancelling a
 * queued job, and surviving the death of the worker mid-answer (F15: the request fails with a
 * 500, a new worker loads the model and the next request is answered).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';

import { REPO_ROOT } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type ChoiceResult, Engine, type JobSink, QueueFullError } from './engine.js';
import type { EngineJob, WireError } from './protocol.js';
import { until } from './serve.testutil.js';
import { writeTinyModel } from './test-model.testutil.js';

const tmp = mkdtempSync(join(tmpdir(), 'owlet-engine-'));
let engine: Engine;

beforeAll(async () => {
  const dir = await writeTinyModel(join(tmp, 'model'));
  // the worker runs the TypeScript sources through tsx: give it the workspace paths
  process.env.TSX_TSCONFIG_PATH = join(REPO_ROOT, 'tsconfig.base.json');
  engine = new Engine({ model: dir, backend: 'cpu', quiet: true, maxQueue: 2 });
  engine.start();
  await engine.ready;
});
afterAll(async () => {
  await engine?.close();
  rmSync(tmp, { recursive: true, force: true });
});

interface Recorded {
  sink: JobSink;
  deltas: string[];
  choices: ChoiceResult[];
  result: Promise<{ aborted?: boolean; error?: WireError }>;
}

function record(): Recorded {
  let settle: (r: { aborted?: boolean; error?: WireError }) => void = () => {};
  const r: Recorded = {
    deltas: [],
    choices: [],
    result: new Promise((res) => (settle = res)),
    sink: {
      dispatched: () => {},
      started: () => {},
      delta: (_i, t) => r.deltas.push(t),
      choice: (c) => r.choices.push(c),
      done: (aborted) => settle({ aborted }),
      failed: (error) => settle({ error }),
    },
  };
  return r;
}

const job = (max_tokens: number, stream = true): Omit<EngineJob, 'id'> => ({
  messages: [{ role: 'user', content: 'Tell me about owls' }],
  images: [],
  n: 1,
  stream,
  max_tokens,
});

describe('Engine', () => {
  it('runs jobs in arrival order, refuses past the queue bound, and drops a cancelled queued job', async () => {
    const order: number[] = [];
    const long = record();
    const a = engine.submit(job(1500), long.sink);
    await until(() => long.deltas.length > 0, 'the first job to start');
    const recs = [record(), record()];
    const handles = recs.map((r, i) => {
      void r.result.then(() => order.push(i));
      return engine.submit(job(2, false), r.sink);
    });
    expect(engine.queueDepth).toBe(2);
    expect(() => engine.submit(job(2), record().sink)).toThrow(QueueFullError);
    const third = record();
    handles[0]?.cancel(); // leaves the queue at once
    expect(await recs[0]?.result).toEqual({ aborted: true });
    expect(engine.queueDepth).toBe(1);
    void third.result.then(() => order.push(2));
    engine.submit(job(2, false), third.sink);
    a.cancel();
    expect((await long.result).aborted).toBe(true);
    await Promise.all([recs[1]?.result, third.result]);
    expect(order).toEqual([0, 1, 2]); // the cancelled one first, then arrival order
    expect(recs[1]?.choices[0]?.usage.completion_tokens).toBe(2);
    expect(third.choices[0]?.usage.completion_tokens).toBe(2);
    await engine.idle();
  });

  it('fails the running request with a 500 when the worker dies, restarts, and answers the next one', async () => {
    const victim = record();
    const waiting = record();
    engine.submit(job(1500), victim.sink);
    await until(() => victim.deltas.length > 0, 'the job to start');
    engine.submit(job(3, false), waiting.sink);
    // a native crash, as far as the HTTP side can tell
    const worker = (engine as unknown as { worker: Worker }).worker;
    await worker.terminate();
    const r = await victim.result;
    expect(r.error?.status).toBe(500);
    expect(r.error?.message).toMatch(/engine stopped/);
    // the queued request waits for the new worker and is then answered
    const w = await waiting.result;
    expect(w.error).toBeUndefined();
    expect(waiting.choices[0]?.usage.completion_tokens).toBe(3);
    expect(engine.restarts).toBe(1);
    expect(engine.state).toBe('ready');
  });
});
