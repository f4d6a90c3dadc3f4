/**
 * PEFT LoRA adapter folders: `adapter_config.json` + `adapter_model.safetensors` (or the older
 * `adapter_model.bin`), keys `base_model.model.<module>.lora_A.weight` / `lora_B.weight`, as
 * `PeftModel.save_pretrained` writes them and `PeftModel.from_pretrained` reads them.
 */
import {
  CheckpointError,
  CheckpointErrorCode,
  openCheckpoint,
  openCheckpointFolder,
  writeFolderAtomic,
  writeSafetensorsFile,
  type CheckpointSource,
} from '@owlet/checkpoint';
import type * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from './errors.js';
import type { Module } from './module.js';
import {
  injectLora,
  loadPeftAdapterTensors,
  loraModules,
  peftAdapterConfigJson,
  peftAdapterTensors,
  removeLora,
  resolveLoraConfig,
  type LoraConfig,
} from './nn/lora.js';

export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
export const ADAPTER_SAFETENSORS_NAME = 'adapter_model.safetensors';
export const ADAPTER_BIN_NAME = 'adapter_model.bin';

const MAX_CONFIG_BYTES = 1 << 20;

export interface LoadPeftAdapterOptions {
  signal?: AbortSignal;
  fetch?: typeof fetch;
  /** Fold the adapter into the base weights after loading (the wrappers stay; see `removeLora`). */
  merge?: boolean;
}

/**
 * Reads a PEFT LoRA adapter folder into `root`: wraps the targeted Linears (unless the tree
 * already has LoRA wrappers) and loads `lora_A` / `lora_B` strictly (every adapter tensor present
 * with its shape). Returns the adapter's config. Nothing changes when it throws.
 */
export async function loadPeftAdapter(
  root: Module,
  source: CheckpointSource,
  options: LoadPeftAdapterOptions = {},
): Promise<LoraConfig> {
  const folder = await openCheckpointFolder(source, options.fetch ? { fetch: options.fetch } : {});
  const cfgSrc = await folder.open(ADAPTER_CONFIG_NAME, options.signal);
  if (!cfgSrc) {
    throw new CheckpointError(
      CheckpointErrorCode.CHECKPOINT_NOT_FOUND,
      `no ${ADAPTER_CONFIG_NAME} in ${folder.description}: is this a PEFT adapter folder?`,
    );
  }
  let json: unknown;
  try {
    if (cfgSrc.size > MAX_CONFIG_BYTES) {
      throw new OwletError(
        ErrorCode.INVALID_CONFIG,
        `${ADAPTER_CONFIG_NAME} is ${cfgSrc.size} bytes; expected a small JSON file`,
      );
    }
    json = JSON.parse(new TextDecoder().decode(await cfgSrc.read(0, cfgSrc.size, options.signal)));
  } catch (e) {
    if (e instanceof OwletError) throw e;
    throw new OwletError(
      ErrorCode.INVALID_CONFIG,
      `${ADAPTER_CONFIG_NAME} is not valid JSON: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  } finally {
    await cfgSrc.close();
  }
  const config = resolveLoraConfig(json);
  const weightsName = (await folder.exists(ADAPTER_SAFETENSORS_NAME, options.signal))
    ? ADAPTER_SAFETENSORS_NAME
    : (await folder.exists(ADAPTER_BIN_NAME, options.signal))
      ? ADAPTER_BIN_NAME
      : undefined;
  const src = weightsName ? await folder.open(weightsName, options.signal) : undefined;
  if (!src) {
    throw new CheckpointError(
      CheckpointErrorCode.CHECKPOINT_NOT_FOUND,
      `no ${ADAPTER_SAFETENSORS_NAME} or ${ADAPTER_BIN_NAME} in ${folder.description}`,
    );
  }
  const ckpt = await openCheckpoint(src, options.signal ? { signal: options.signal } : {});
  const tensors: [string, tf.Tensor][] = [];
  const injected = loraModules(root).length === 0;
  try {
    for await (const [k, t] of ckpt.tensors(options.signal ? { signal: options.signal } : {})) {
      if (/\.lora_[AB]\./.test(k)) tensors.push([k, t]);
      else t.dispose();
    }
    if (injected) injectLora(root, config);
    try {
      loadPeftAdapterTensors(root, tensors);
    } catch (e) {
      if (injected) removeLora(root);
      throw e;
    }
  } finally {
    for (const [, t] of tensors) t.dispose();
    await ckpt.close();
  }
  if (options.merge) for (const [, m] of loraModules(root)) m.merge();
  return config;
}

/**
 * Writes the LoRA adapters of `root` as the PEFT adapter folder `dir`, all or nothing (built in a
 * temporary sibling, fsynced, renamed; an existing `dir` is replaced whole). Node only.
 */
export async function savePeftAdapter(root: Module, dir: string, config: LoraConfig): Promise<void> {
  if (loraModules(root).length === 0) {
    throw new OwletError(ErrorCode.INVALID_ARGUMENT, 'savePeftAdapter: the model has no LoRA adapters');
  }
  const json = `${JSON.stringify(peftAdapterConfigJson(config), null, 2)}\n`;
  await writeFolderAtomic(
    dir,
    async (tmp) => {
      const { writeFile } = await import('node:fs/promises');
      const { join } = await import('node:path');
      const tensors = peftAdapterTensors(root);
      try {
        await writeSafetensorsFile(join(tmp, ADAPTER_SAFETENSORS_NAME), tensors, { format: 'pt' });
      } finally {
        for (const t of tensors.values()) t.dispose();
      }
      await writeFile(join(tmp, ADAPTER_CONFIG_NAME), json, 'utf8');
    },
    { force: true },
  );
}
