/**
 * Trainer checkpoints: `output_dir/checkpoint-<step>/`, written with the crash-safe folder writer.
 *
 * | file | content |
 * |------|---------|
 * | `model.safetensors` (or `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`) | the trainable parameters other than LoRA adapters, checkpoint layout, float32 |
 * | `adapter_model.safetensors`, `adapter_config.json` | the LoRA adapters in the PEFT layout (when there are any) |
 * | `optimizer.safetensors` | AdamW `exp_avg/<key>`, `exp_avg_sq/<key>` |
 * | `trainer_state.json` | global step, epoch, data position, schedule, per-parameter optimizer steps, log history, trainable keys |
 * | `training_args.json` | the resolved training arguments |
 * | `checkpoint_complete.json` | the completion marker (every file's size and SHA-256) |
 *
 * Frozen parameters are not saved: a resume starts from the same base weights. Values are stored
 * bit for bit, so a resumed run on the cpu backend continues bit-identically.
 */
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors, safetensorsLayout, type SafetensorsTensorSpec } from '@owlet/checkpoint';
import {
  OwletError,
  loadPeftAdapterTensors,
  loraModules,
  peftAdapterConfigJson,
  peftAdapterTensors,
} from '@owlet/core';

import { TrainerErrorCode } from '../errors.js';
import type { Trainer } from '../Trainer.js';
import {
  NODE_FS,
  checkCompleteFolder,
  sweepStaleTemps,
  writeCheckpointFolder,
  type CheckpointFs,
} from './atomic-folder.js';

export const CHECKPOINT_PREFIX = 'checkpoint-';
const CHECKPOINT_RE = /^checkpoint-(\d+)$/;
const STATE_VERSION = 1;

/** Tensors in write order with a way to get each one's bytes (read from the device one at a time). */
export interface TensorSource {
  key: string;
  shape: readonly number[];
  bytes: () => Promise<Uint8Array>;
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A tensor source that reads `make()` (a tensor it disposes) when its bytes are needed. */
export function lazyTensor(key: string, shape: readonly number[], make: () => tf.Tensor): TensorSource {
  return {
    key,
    shape,
    bytes: async () => {
      const t = make();
      try {
        return f32Bytes((await t.data()) as Float32Array);
      } finally {
        t.dispose();
      }
    },
  };
}

/** Streams a safetensors file: header, then each tensor's bytes. */
export async function* safetensorsChunks(
  tensors: readonly TensorSource[],
  metadata: Record<string, string> = { format: 'pt' },
): AsyncGenerator<Uint8Array> {
  const specs: SafetensorsTensorSpec[] = tensors.map((t) => ({ key: t.key, dtype: 'F32', shape: t.shape }));
  yield safetensorsLayout(specs, metadata).header;
  for (const t of tensors) yield await t.bytes();
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Splits tensors into shards of at most `maxShardSize` bytes (a larger tensor gets a shard of its
 * own), named as transformers does: `model.safetensors` for one shard, else
 * `model-00001-of-00003.safetensors` … plus an index.
 */
export function planShards(
  tensors: readonly TensorSource[],
  maxShardSize: number,
  stem = 'model',
): { name: string; tensors: TensorSource[] }[] {
  const shards: TensorSource[][] = [];
  let cur: TensorSource[] = [];
  let size = 0;
  for (const t of tensors) {
    const b = numel(t.shape) * 4;
    if (cur.length > 0 && size + b > maxShardSize) {
      shards.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(t);
    size += b;
  }
  if (cur.length > 0 || shards.length === 0) shards.push(cur);
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  return shards.map((s, i) => ({
    name: n === 1 ? `${stem}.safetensors` : `${stem}-${pad(i + 1)}-of-${pad(n)}.safetensors`,
    tensors: s,
  }));
}

/** The index JSON of sharded weights. */
export function shardIndexJson(shards: { name: string; tensors: TensorSource[] }[]): string {
  const weight_map: Record<string, string> = {};
  let total = 0;
  for (const s of shards) {
    for (const t of s.tensors) {
      weight_map[t.key] = s.name;
      total += numel(t.shape) * 4;
    }
  }
  return `${JSON.stringify({ metadata: { total_size: total }, weight_map }, null, 2)}\n`;
}

const encoder = new TextEncoder();
const json = (v: unknown) => encoder.encode(`${JSON.stringify(v, null, 2)}\n`);

export interface SavedTrainerState {
  owlet_trainer_state_version: number;
  global_step: number;
  epoch: number;
  max_steps: number;
  data_position: { epoch: number; index: number };
  seed: number;
  trainable_keys: string[];
  lora: Record<string, unknown> | null;
  optimizer_steps: Record<string, number>;
  param_groups: { name: string; keys: number; lr: number; lr_scale: number; weight_decay: number }[];
  log_history: unknown[];
}

/** Writes `outputDir/checkpoint-<step>` and rotates old ones (save_total_limit). Returns its path. */
export async function saveTrainerCheckpoint(trainer: Trainer, outputDir: string): Promise<string> {
  const fs = trainer.checkpointFs ?? NODE_FS;
  const step = trainer.state.global_step;
  const dir = join(outputDir, `${CHECKPOINT_PREFIX}${step}`);
  const loraKeys = new Set<string>();
  for (const [name] of loraModules(trainer.model)) {
    loraKeys.add(`${name}.lora_A.weight`);
    loraKeys.add(`${name}.lora_B.weight`);
  }
  const modelTensors: TensorSource[] = [];
  for (const [k, p] of trainer.params) {
    if (loraKeys.has(k)) continue;
    modelTensors.push(lazyTensor(k, p.shape, () => p.canonical()));
  }
  await writeCheckpointFolder(
    dir,
    async (w) => {
      if (modelTensors.length > 0) {
        const shards = planShards(modelTensors, trainer.args.max_shard_size);
        for (const s of shards) await w.writeFile(s.name, safetensorsChunks(s.tensors));
        if (shards.length > 1)
          await w.writeFile('model.safetensors.index.json', encoder.encode(shardIndexJson(shards)));
      }
      if (trainer.lora && loraKeys.size > 0) {
        const adapter = peftAdapterTensors(trainer.model);
        try {
          const src = [...adapter].map(([k, t]) => lazyTensor(k, t.shape, () => tf.clone(t)));
          await w.writeFile('adapter_model.safetensors', safetensorsChunks(src));
        } finally {
          for (const t of adapter.values()) t.dispose();
        }
        await w.writeFile('adapter_config.json', json(peftAdapterConfigJson(trainer.lora)));
      }
      const opt = trainer.optimizer.stateDict(trainer.params);
      try {
        const src = [...opt.tensors].map(([k, t]) => lazyTensor(k, t.shape, () => tf.clone(t)));
        await w.writeFile('optimizer.safetensors', safetensorsChunks(src));
      } finally {
        for (const t of opt.tensors.values()) t.dispose();
      }
      const state: SavedTrainerState = {
        owlet_trainer_state_version: STATE_VERSION,
        global_step: step,
        epoch: trainer.state.epoch,
        max_steps: trainer.state.max_steps,
        data_position: { ...trainer.state.data_position },
        seed: trainer.args.seed,
        trainable_keys: trainer.trainableKeys,
        lora: trainer.lora ? peftAdapterConfigJson(trainer.lora) : null,
        optimizer_steps: opt.steps,
        param_groups: trainer.optimizer.groups.map((g) => ({
          name: g.name,
          keys: g.keys.length,
          lr: g.lr,
          lr_scale: g.lr_scale,
          weight_decay: g.weight_decay,
        })),
        log_history: trainer.state.log_history,
      };
      await w.writeFile('trainer_state.json', json(state));
      await w.writeFile('training_args.json', json(trainer.args));
    },
    { fs },
  );
  await rotateCheckpoints(outputDir, trainer.args.save_total_limit, fs);
  return dir;
}

/** Complete `checkpoint-<n>` folders of `outputDir`, oldest first. */
export async function listCheckpoints(
  outputDir: string,
  fs: CheckpointFs = NODE_FS,
): Promise<{ step: number; dir: string }[]> {
  let names: string[];
  try {
    names = await fs.readdir(outputDir);
  } catch {
    return [];
  }
  const out: { step: number; dir: string }[] = [];
  for (const name of names) {
    const m = CHECKPOINT_RE.exec(name);
    if (!m) continue;
    const dir = join(outputDir, name);
    if ((await checkCompleteFolder(dir, { fs })).ok) out.push({ step: Number(m[1]), dir });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The newest complete checkpoint (HF's error when there is none). */
export async function latestCheckpoint(outputDir: string, fs: CheckpointFs = NODE_FS): Promise<string> {
  const all = await listCheckpoints(outputDir, fs);
  const last = all[all.length - 1];
  if (!last) {
    throw new OwletError(
      TrainerErrorCode.CHECKPOINT_NOT_FOUND,
      `No valid checkpoint found in output directory (${outputDir})`,
      { details: { output_dir: outputDir } },
    );
  }
  return last.dir;
}

async function rotateCheckpoints(outputDir: string, limit: number | null, fs: CheckpointFs): Promise<void> {
  if (limit === null) return;
  const all = await listCheckpoints(outputDir, fs);
  for (const c of all.slice(0, Math.max(0, all.length - limit))) {
    await fs.rm(c.dir, { recursive: true, force: true });
  }
}

/** Removes what crashed writers left in `outputDir` (see `sweepStaleTemps`). */
export async function sweepOutputDir(outputDir: string, fs: CheckpointFs = NODE_FS): Promise<void> {
  await sweepStaleTemps(outputDir, fs);
}

async function readJson<T>(fs: CheckpointFs, path: string): Promise<T> {
  return JSON.parse(new TextDecoder().decode(await fs.readFile(path))) as T;
}

async function readTensors(fs: CheckpointFs, path: string): Promise<Map<string, tf.Tensor>> {
  const archive = readSafetensors(await fs.readFile(path));
  return new Map(archive.keys().map((k: string) => [k, archive.tensor(k)] as const));
}

/**
 * Restores a trainer from a checkpoint folder: trainable parameters, LoRA adapters, optimizer
 * state, schedule position, data position and log history. The folder must be complete and
 * match the trainer's trainable keys; nothing changes when it throws.
 */
export async function loadTrainerCheckpoint(trainer: Trainer, dir: string): Promise<void> {
  const fs = trainer.checkpointFs ?? NODE_FS;
  const check = await checkCompleteFolder(dir, { fs, verifyHashes: true });
  if (!check.ok || !check.marker) {
    throw new OwletError(
      TrainerErrorCode.CHECKPOINT_NOT_FOUND,
      `Can't find a valid checkpoint at ${dir} (${check.reason})`,
      {
        details: { path: dir, reason: check.reason },
      },
    );
  }
  const files = check.marker.files;
  const state = await readJson<SavedTrainerState>(fs, join(dir, 'trainer_state.json'));
  if (state.owlet_trainer_state_version !== STATE_VERSION) {
    throw new OwletError(
      TrainerErrorCode.CHECKPOINT_MISMATCH,
      `${dir}: trainer state version ${state.owlet_trainer_state_version}, expected ${STATE_VERSION}`,
    );
  }
  const want = trainer.trainableKeys;
  const same = want.length === state.trainable_keys.length && want.every((k, i) => state.trainable_keys[i] === k);
  if (!same) {
    const missing = want.filter((k) => !state.trainable_keys.includes(k));
    const extra = state.trainable_keys.filter((k) => !want.includes(k));
    throw new OwletError(
      TrainerErrorCode.CHECKPOINT_MISMATCH,
      `${dir} was saved with other trainable parameters (${missing.length} not in the checkpoint, e.g. ${missing[0] ?? '-'}; ${extra.length} unknown here, e.g. ${extra[0] ?? '-'})`,
    );
  }
  const owned: tf.Tensor[] = [];
  try {
    const model = new Map<string, tf.Tensor>();
    const weightFiles = Object.keys(files).filter((f) => /^model(-\d{5}-of-\d{5})?\.safetensors$/.test(f));
    for (const f of weightFiles) {
      for (const [k, t] of await readTensors(fs, join(dir, f))) {
        owned.push(t);
        model.set(k, t);
      }
    }
    const adapter: [string, tf.Tensor][] = [];
    if (files['adapter_model.safetensors']) {
      for (const [k, t] of await readTensors(fs, join(dir, 'adapter_model.safetensors'))) {
        owned.push(t);
        adapter.push([k, t]);
      }
    }
    const opt = await readTensors(fs, join(dir, 'optimizer.safetensors'));
    owned.push(...opt.values());
    // validate everything before assigning anything
    const loraKeys = new Set<string>();
    for (const [name] of loraModules(trainer.model)) {
      loraKeys.add(`${name}.lora_A.weight`);
      loraKeys.add(`${name}.lora_B.weight`);
    }
    for (const [k, p] of trainer.params) {
      if (loraKeys.has(k)) continue;
      const t = model.get(k);
      if (!t) throw new OwletError(TrainerErrorCode.CHECKPOINT_MISMATCH, `${dir} has no ${k}`);
      if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
        throw new OwletError(
          TrainerErrorCode.CHECKPOINT_MISMATCH,
          `expected [${p.shape.join(', ')}], checkpoint has [${t.shape.join(', ')}] for ${k}`,
        );
      }
    }
    if (model.size !== trainer.params.size - loraKeys.size) {
      throw new OwletError(
        TrainerErrorCode.CHECKPOINT_MISMATCH,
        `${dir} holds ${model.size} parameters, expected ${trainer.params.size - loraKeys.size}`,
      );
    }
    if (loraKeys.size > 0 && adapter.length === 0) {
      throw new OwletError(
        TrainerErrorCode.CHECKPOINT_MISMATCH,
        `${dir} has no adapter_model.safetensors for the LoRA adapters`,
      );
    }
    // Optimizer first: it validates everything it is given before changing anything.
    trainer.optimizer.loadStateDict(trainer.params, { tensors: opt, steps: state.optimizer_steps });
    if (adapter.length > 0) loadPeftAdapterTensors(trainer.model, adapter);
    for (const [k, t] of model) trainer.params.get(k)?.assign(t);
    trainer.state = {
      global_step: state.global_step,
      epoch: state.epoch,
      max_steps: state.max_steps,
      data_position: { ...state.data_position },
      log_history: state.log_history as Trainer['state']['log_history'],
    };
  } finally {
    tf.dispose(owned);
  }
}
