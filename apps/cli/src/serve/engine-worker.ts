/**
 * The engine worker: loads the model the way `owlet run` does (the CLI's own default model and
 * `--model` handling) and runs the jobs the HTTP thread sends, one at a time.
 */
import { parentPort, workerData } from 'node:worker_threads';

import * as tf from '@tensorflow/tfjs-core';
import { getBackendInfo } from '@owlet/core';
import type { MplugOwlModel } from '@owlet/mplug-owl';

import { classify } from '../errors.js';
import { loadModel, parseBackend } from '../model.js';
import { modelLimits, runJob, tfMemory } from './job.js';
import type { EngineJob, MainToWorker, WorkerInit, WorkerToMain } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('engine-worker.ts runs as a worker thread of owlet serve');
const init = workerData as WorkerInit;
const abortSlot = new Int32Array(init.abort);
const post = (m: WorkerToMain) => port.postMessage(m);

tf.env().set('PROD', true);

let model: MplugOwlModel | null = null;
let chain: Promise<void> = Promise.resolve();

port.on('message', (m: MainToWorker) => {
  if (m.type === 'job') {
    const job: EngineJob = m.job;
    chain = chain.then(async () => {
      if (!model) return;
      await runJob(model, job, modelLimits(model), {
        post,
        shouldStop: () => Atomics.load(abortSlot, 0) === job.id,
      });
    });
  } else if (m.type === 'shutdown') {
    chain = chain.then(() => {
      model?.dispose();
      model = null;
      port.close();
    });
  }
});

try {
  const loaded = await loadModel(init.model, {
    backend: parseBackend(init.backend),
    quiet: init.quiet,
    ...(init.dtype !== undefined ? { dtype: init.dtype } : {}),
  });
  model = loaded.model;
  const backend = getBackendInfo();
  const limits = modelLimits(model);
  post({
    type: 'ready',
    info: {
      source: loaded.source,
      model_type: model.config.model_type,
      context_window: limits.context_window,
      default_max_tokens: limits.default_max_tokens,
      random_weights: loaded.randomWeights,
      backend: backend?.name ?? tf.getBackend(),
      backend_reason: backend?.reason ?? '',
      dtype: init.dtype ?? 'auto',
      load_ms: loaded.loadMs,
    },
    memory: tfMemory(),
  });
} catch (e) {
  const c = classify(e);
  post({ type: 'load-failed', exitCode: c.exitCode, message: c.message });
  port.close();
}
