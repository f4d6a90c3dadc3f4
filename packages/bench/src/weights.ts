/**
 * Deterministic random weights for benchmark and test models, and the on-disk cache: each model's
 * weights are generated once into `<cacheDir>/<name>/model.safetensors` (HF / owlet keys) and the
 * GGUF files llama.cpp runs are derived from that file.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import type { Module } from '@owlet/core';
import { createSafetensorsFileWriter, openCheckpoint } from '@owlet/checkpoint';
import { resolveLlamaConfig, LlamaForCausalLM, type LlamaConfig } from '@owlet/modality-adaptive-decoder';

import type { GgmlTypeName } from './gguf.js';
import { writeLlamaGguf } from './llama-gguf.js';

/** FNV-1a of a string (seeds per tensor key). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * `n` float32 values, uniform with mean `mean` and standard deviation `std`, from a mulberry32
 * stream seeded by (seed, key). Uniform rather than normal: several times faster for multi-GiB
 * models, and the benchmarks only need the right scale.
 */
export function randomTensor(key: string, n: number, seed: number, std: number, mean = 0): Float32Array {
  let a = (fnv1a(key) ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  const out = new Float32Array(n);
  const width = std * Math.sqrt(3) * 2;
  const low = mean - std * Math.sqrt(3);
  const inv = width / 4294967296;
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = low + ((t ^ (t >>> 14)) >>> 0) * inv;
  }
  return out;
}

/** Standard deviation (and mean) of a random LLaMA tensor by key: norms ≈ 1, q/k a little larger so attention is not uniform. */
export function llamaInitFor(key: string, hidden: number): { std: number; mean: number } {
  if (/norm/.test(key)) return { std: 0.1, mean: 1 };
  if (/(q_proj|k_proj)\.weight$/.test(key)) return { std: 2 / Math.sqrt(hidden), mean: 0 };
  if (/embed_tokens/.test(key)) return { std: 1, mean: 0 };
  return { std: 1 / Math.sqrt(hidden), mean: 0 };
}

/** Keys and shapes of a (plain, non-multiway) LLaMA without allocating any weight. */
export function llamaParameterShapes(config: LlamaConfig): [string, number[]][] {
  const m = new LlamaForCausalLM(config);
  try {
    return [...m.namedParameters()].map(([k, p]) => [k, [...p.shape]]);
  } finally {
    m.dispose();
  }
}

/** A random LLaMA's tensor by key (deterministic for the seed). */
export function randomLlamaTensor(
  config: LlamaConfig,
  key: string,
  shape: readonly number[],
  seed: number,
): Float32Array {
  const { std, mean } = llamaInitFor(key, config.hidden_size);
  return randomTensor(
    key,
    shape.reduce((a, b) => a * b, 1),
    seed,
    std,
    mean,
  );
}

/** Loads the random weights straight into a module (no disk). */
export function loadRandomLlama(model: Module, config: LlamaConfig, seed: number): void {
  for (const [key, p] of model.namedParameters()) {
    const t = tf.tensor(randomLlamaTensor(config, key, p.shape, seed), [...p.shape], 'float32');
    try {
      model.loadParameter(key, t);
    } finally {
      t.dispose();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Benchmark model presets

export interface LlamaPreset {
  name: string;
  label: string;
  config: LlamaConfig;
}

function preset(name: string, label: string, fields: Record<string, number | boolean>): LlamaPreset {
  return {
    name,
    label,
    config: resolveLlamaConfig({
      model_type: 'llama',
      rms_norm_eps: 1e-6,
      max_position_embeddings: 2048,
      tie_word_embeddings: false,
      ...fields,
    }),
  };
}

/** ~100M, ~1B (sized to fit the wasm backend's 4 GiB heap in float32) and the LLaMA-2-7B shape. */
export const LLAMA_PRESETS: readonly LlamaPreset[] = [
  preset('llama-134m', '~100M (134M)', {
    vocab_size: 32000,
    hidden_size: 768,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 12,
  }),
  preset('llama-953m', '~1B (953M)', {
    vocab_size: 32000,
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: 16,
    num_attention_heads: 16,
  }),
  preset('llama2-7b', 'LLaMA-2-7B shape (6.7B)', {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
  }),
];

export function numLlamaParameters(config: LlamaConfig): number {
  return llamaParameterShapes(config).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
}

export function defaultCacheDir(): string {
  return process.env.OWLET_BENCH_CACHE ?? join(homedir(), '.cache', 'owlet-bench');
}

export interface CachedLlama {
  dir: string;
  safetensors: string;
  gguf: Partial<Record<GgmlTypeName, string>>;
}

function configDigest(config: LlamaConfig, seed: number): string {
  return createHash('sha256')
    .update(JSON.stringify({ config, seed, v: 1 }))
    .digest('hex')
    .slice(0, 12);
}

/**
 * Ensures `<cacheDir>/<name>-<digest>/model.safetensors` holds the random weights and the GGUF
 * files of the requested types exist (derived from the safetensors file). Returns the paths.
 */
export async function ensureCachedLlama(
  p: LlamaPreset,
  seed: number,
  ggufTypes: readonly GgmlTypeName[],
  cacheDir = defaultCacheDir(),
  log: (msg: string) => void = () => {},
): Promise<CachedLlama> {
  const dir = join(cacheDir, `${p.name}-${configDigest(p.config, seed)}`);
  mkdirSync(dir, { recursive: true });
  const st = join(dir, 'model.safetensors');
  const metaPath = join(dir, 'config.json');
  if (!existsSync(st)) {
    log(`generating random weights for ${p.name} into ${st}`);
    const shapes = llamaParameterShapes(p.config);
    const w = await createSafetensorsFileWriter(
      st,
      shapes.map(([key, shape]) => ({ key, dtype: 'F32' as const, shape })),
      { format: 'pt', generator: 'owlet-bench', seed: String(seed) },
    );
    try {
      for (const [key, shape] of shapes) {
        const v = randomLlamaTensor(p.config, key, shape, seed);
        await w.write(key, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      }
      await w.commit();
    } catch (e) {
      await w.abort();
      throw e;
    }
  }
  if (!existsSync(metaPath) || readFileSync(metaPath, 'utf8') !== JSON.stringify(p.config)) {
    writeFileSync(metaPath, JSON.stringify(p.config));
  }
  const gguf: CachedLlama['gguf'] = {};
  for (const type of ggufTypes) {
    const path = join(dir, `model-${type.toLowerCase()}.gguf`);
    if (!existsSync(path)) {
      log(`writing ${path}`);
      const ckpt = await openCheckpoint(st);
      try {
        await writeLlamaGguf(path, p.config, async (key) => (await ckpt.array(key)) as Float32Array, {
          weightType: type,
          name: p.name,
        });
      } finally {
        await ckpt.close();
      }
    }
    gguf[type] = path;
  }
  return { dir, safetensors: st, gguf };
}
