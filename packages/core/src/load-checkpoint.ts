/**
 * `loadCheckpointInto(module, source)`: a checkpoint read by `@owlet/checkpoint`, checked against a
 * Module's keys and shapes, then streamed into its parameters.
 */
import {
  Checkpoint,
  openCheckpoint,
  type CheckpointSource,
  type OpenCheckpointOptions,
  type ReadTensorsOptions,
} from '@owlet/checkpoint';

import type { LoadStateDictOptions, Module, StateDictReport } from './module.js';

export interface LoadCheckpointOptions extends OpenCheckpointOptions, LoadStateDictOptions {}

/**
 * Loads a checkpoint into `module`: opens it (unless given an open Checkpoint), checks keys and
 * shapes with `module.checkStateDict` (strict by default; nothing is assigned if it throws), then
 * streams the tensors in with `module.loadParameter`, disposing each after assignment. Emits
 * `ready` at the end. A read error midway leaves the parameters loaded so far assigned.
 */
export async function loadCheckpointInto(
  module: Module,
  source: CheckpointSource | Checkpoint,
  options: LoadCheckpointOptions = {},
): Promise<StateDictReport> {
  const ckpt = source instanceof Checkpoint ? source : await openCheckpoint(source, options);
  try {
    const report = module.checkStateDict(ckpt.shapes(), {
      strict: options.strict ?? true,
      ignore: options.ignore ?? [],
    });
    const readOpts: ReadTensorsOptions = { keys: report.loaded };
    if (options.signal) readOpts.signal = options.signal;
    for await (const [key, t] of ckpt.tensors(readOpts)) {
      try {
        module.loadParameter(key, t);
      } finally {
        t.dispose();
      }
    }
    options.onProgress?.({ status: 'ready', name: ckpt.name });
    return report;
  } finally {
    if (!(source instanceof Checkpoint)) await ckpt.close();
  }
}
