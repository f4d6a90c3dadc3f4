/**
 * Export of a trained model as a Hugging Face checkpoint folder: `config.json` and the weights as
 * safetensors (`model.safetensors`, or `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`
 * above `max_shard_size`), under the exact checkpoint keys of the module tree — plus the persistent
 * buffers the official checkpoints carry (`rotary_emb.inv_freq`) when the model lists them. LoRA
 * adapters are folded into their base weights on the fly (the model is not changed). Each file is
 * written atomically (temporary name, fsync, rename); the index last. Node only.
 */
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { createSafetensorsFileWriter, type SafetensorsTensorSpec } from '@owlet/checkpoint';
import { type LoraLinear, type Module, OwletError, loraModules } from '@owlet/core';

import { TrainerErrorCode } from './errors.js';
import { lazyTensor, planShards, shardIndexJson, type TensorSource } from './checkpoint/trainer-checkpoint.js';

export interface ExportOptions {
  /** The config.json object (default: `model.config.raw`, which the mPLUG-Owl models keep). */
  config?: Record<string, unknown>;
  /** Largest shard in bytes (default 10 GB, as transformers' `max_shard_size`). */
  max_shard_size?: number;
  /** Also write the model's persistent buffers (default true). */
  include_buffers?: boolean;
}

export interface ExportResult {
  dir: string;
  files: string[];
  tensors: number;
  bytes: number;
}

/** The checkpoint-layout weights of `model` as lazily read sources, LoRA folded in. */
export function exportTensorSources(model: Module, includeBuffers = true): TensorSource[] {
  const lora = new Map<string, LoraLinear>();
  for (const [name, m] of loraModules(model)) lora.set(`${name}.weight`, m);
  const skip = new Set<string>();
  for (const [name] of loraModules(model)) {
    skip.add(`${name}.lora_A.weight`);
    skip.add(`${name}.lora_B.weight`);
  }
  const out: TensorSource[] = [];
  for (const [k, p] of model.namedParameters()) {
    if (skip.has(k)) continue;
    if (!p.isMaterialized) {
      throw new OwletError(TrainerErrorCode.INVALID_TRAINING_ARGS, `cannot export ${k}: the parameter has no value`);
    }
    const adapter = lora.get(k);
    out.push(
      lazyTensor(k, p.shape, () =>
        tf.tidy(() => {
          const w = p.canonical();
          if (!adapter || adapter.merged || !adapter.enabled) return w;
          const delta = tf.matMul(adapter.lora_B.weight.canonical(), adapter.lora_A.weight.canonical()); // [out, in]
          return tf.add(w, tf.mul(delta, adapter.scaling));
        }),
      ),
    );
  }
  const withBuffers = model as unknown as { persistentBuffers?: () => Map<string, tf.Tensor> };
  if (includeBuffers && typeof withBuffers.persistentBuffers === 'function') {
    const buffers = withBuffers.persistentBuffers();
    for (const [k, t] of buffers) {
      const copy = tf.clone(t);
      t.dispose();
      out.push(lazyTensor(k, copy.shape, () => copy));
    }
  }
  return out;
}

/** Writes `model` to `dir` as a Hugging Face checkpoint that `fromPretrained` (and transformers) read. */
export async function exportPretrained(model: Module, dir: string, options: ExportOptions = {}): Promise<ExportResult> {
  const config = options.config ?? (model as unknown as { config?: { raw?: Record<string, unknown> } }).config?.raw;
  if (!config) {
    throw new OwletError(
      TrainerErrorCode.INVALID_TRAINING_ARGS,
      'exportPretrained needs options.config (no model.config.raw)',
    );
  }
  const { mkdir, rename, open, rm } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  const sources = exportTensorSources(model, options.include_buffers ?? true);
  const shards = planShards(sources, options.max_shard_size ?? 10_000_000_000);
  const files: string[] = [];
  let bytes = 0;
  for (const s of shards) {
    const specs: SafetensorsTensorSpec[] = s.tensors.map((t) => ({ key: t.key, dtype: 'F32', shape: t.shape }));
    const w = await createSafetensorsFileWriter(join(dir, s.name), specs, { format: 'pt' });
    try {
      for (const t of s.tensors) await w.write(t.key, await t.bytes());
      await w.commit();
    } catch (e) {
      await w.abort();
      throw e;
    }
    files.push(s.name);
    bytes += w.fileSize;
  }
  const writeText = async (name: string, text: string) => {
    const tmp = join(dir, `.${name}.${process.pid}.tmp`);
    const h = await open(tmp, 'w');
    try {
      await h.writeFile(text, 'utf8');
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, join(dir, name)).catch(async (e: unknown) => {
      await rm(tmp, { force: true });
      throw e;
    });
    files.push(name);
  };
  // A previous export with the other layout must not shadow this one.
  if (shards.length > 1) {
    await rm(join(dir, 'model.safetensors'), { force: true });
    await writeText('model.safetensors.index.json', shardIndexJson(shards));
  } else await rm(join(dir, 'model.safetensors.index.json'), { force: true });
  await writeText('config.json', `${JSON.stringify(config, null, 2)}\n`);
  return { dir, files, tensors: sources.length, bytes };
}
