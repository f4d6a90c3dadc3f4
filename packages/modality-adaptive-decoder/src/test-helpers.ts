/** Test-only helpers: load the fixture LLMs, read tensors, compare. Not exported from the package. */
import * as tf from '@tensorflow/tfjs-core';
import type { SafetensorsArchive } from '@owlet/checkpoint';
import { Module } from '@owlet/core';
import { loadFixture, loadFixtureJson, maxAbsDiff, randn } from '@owlet/test-utils';

import { resolveLlamaConfig, type LlamaConfig } from './config.js';
import { LlamaForCausalLM } from './LlamaForCausalLM.js';
import type { LlamaModelOptions } from './LlamaModel.js';

/** Registers a LlamaForCausalLM under `language_model` (the mPLUG-Owl v1 key layout). */
export class LanguageModelRoot extends Module {
  readonly language_model: LlamaForCausalLM;
  constructor(config: LlamaConfig, options: LlamaModelOptions = {}) {
    super();
    this.language_model = this.registerModule('language_model', new LlamaForCausalLM(config, options));
  }
}

const isLlmKey = (k: string) =>
  (k.startsWith('model.') && !k.startsWith('model.vision_model.') && !k.startsWith('model.visual_abstractor.')) ||
  k === 'lm_head.weight';

export interface LoadedLlm {
  model: LlamaForCausalLM;
  /** What holds the parameters (the model itself, or the v1 root). */
  root: Module;
  config: LlamaConfig;
}

/** Loads `owl2_tiny` (keys `model.…`, `lm_head.weight`) or `owl1_tiny` (keys `language_model.…`). */
export function loadTinyLlm(
  which: 'owl2_tiny' | 'owl1_tiny',
  options: LlamaModelOptions & { configOverride?: Partial<LlamaConfig> } = {},
): LoadedLlm {
  const config = {
    ...resolveLlamaConfig(loadFixtureJson(`${which}/config.json`)),
    ...(options.configOverride ?? {}),
  } as LlamaConfig;
  const archive = loadFixture(`${which}/model.safetensors`);
  const v1 = which === 'owl1_tiny';
  const root: Module = v1 ? new LanguageModelRoot(config, options) : new LlamaForCausalLM(config, options);
  const model = v1 ? (root as LanguageModelRoot).language_model : (root as LlamaForCausalLM);
  const keys = archive.keys().filter((k) => (v1 ? k.startsWith('language_model.') : isLlmKey(k)));
  const tensors = new Map(keys.map((k) => [k, archive.tensor(k)]));
  try {
    root.loadStateDict(tensors, { ignore: [/\.rotary_emb\.inv_freq$/] });
  } finally {
    tf.dispose([...tensors.values()]);
  }
  return { model, root, config };
}

export interface Case {
  archive: SafetensorsArchive;
  json: Record<string, unknown>;
}

export function loadCase(which: 'owl2_tiny' | 'owl1_tiny', name: string): Case {
  return {
    archive: loadFixture(`${which}/case_${name}.safetensors`),
    json: loadFixtureJson(`${which}/case_${name}.json`),
  };
}

/** Reads a tensor's data and disposes it. */
export async function take(t: tf.Tensor): Promise<Float32Array> {
  const d = (await t.data()) as Float32Array;
  t.dispose();
  return d;
}

export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b).maxAbs;
}

/** Rows [B][L] of an integer fixture tensor. */
export function intRows(archive: SafetensorsArchive, key: string): number[][] {
  const info = archive.info(key);
  const a = Array.from(archive.array(key));
  const [b, l] = info.shape.length === 2 ? (info.shape as [number, number]) : [1, info.shape[0] as number];
  return Array.from({ length: b }, (_, i) => a.slice(i * l, (i + 1) * l));
}

/** Parity figures collected by the tests, printed at the end of a file when OWLET_PRINT_PARITY is set. */
export const parityLog: string[] = [];
export function logParity(label: string, value: number): void {
  parityLog.push(`${label}: ${value.toExponential(2)}`);
}

/** A tiny random LLaMA config (GQA 4/2 heads) with or without the modality-adaptive module. */
export function tinyConfig(overrides: Record<string, unknown> = {}, multiway = true): LlamaConfig {
  return resolveLlamaConfig({
    model_type: multiway ? 'mplug_owl2' : 'llama',
    vocab_size: 50,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    ...overrides,
  });
}

/** Fills every parameter with seeded N(0, std) values (norm weights 1 + 0.2·N(0, 1)), so outputs are O(1). */
export function randomize(root: Module, seed: number, std = 0.3): void {
  let i = 0;
  for (const [key, p] of root.namedParameters()) {
    i++;
    const n = p.shape.reduce((a, b) => a * b, 1);
    const isNorm = /norm/.test(key);
    const vals = randn(n, seed * 1000 + i, isNorm ? 0.2 : std);
    if (isNorm) for (let j = 0; j < n; j++) vals[j] = (vals[j] as number) + 1;
    const t = tf.tensor(Float32Array.from(vals), [...p.shape]);
    p.assign(t);
    t.dispose();
  }
}

/** Seeded float32 tensor of shape. */
export function randTensor(shape: number[], seed: number, std = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from(randn(n, seed, std)), shape);
}

/** Model tests on webgpu run on SwiftShader (a CPU Vulkan) on a shared machine: allow 15 minutes. */
export function slow(it: (name: string, fn: () => unknown, timeout?: number) => void) {
  return (name: string, fn: () => unknown) => it(name, fn, 900_000);
}
