/**
 * One engine per process (owlet, llama.cpp or onnxruntime), driven over IPC by main.ts. Keeping the
 * engines in separate processes lets main.ts interleave their runs while each process's peak RSS
 * belongs to one engine only.
 */
import { existsSync } from 'node:fs';

import * as tf from '@tensorflow/tfjs-core';
import {
  cpuEngineInfo,
  enableCpuEngine,
  initBackend,
  loadCheckpointInto,
  type Module,
  type WeightDType,
} from '@owlet/core';
import { createSafetensorsFileWriter } from '@owlet/checkpoint';
import { LlamaForCausalLM, type LlamaConfig } from '@owlet/modality-adaptive-decoder';
import { MplugOwlVisionModel, resolveMplugOwlVisionConfig } from '@owlet/vision-encoder';
import {
  MplugOwlVisualAbstractorModel,
  resolveMplugOwlVisualAbstractorConfig,
  ABSTRACTOR_POSITION_BUFFER_KEYS,
} from '@owlet/visual-abstractor';
import type * as Ort from 'onnxruntime-node';

import { openLlamaCpp, timeLlamaCpp, type LlamaCppSession } from './llamacpp.js';
import { exportVisionToOnnx } from './onnx/export.js';
import { loadRandomLlama, randomTensor } from './weights.js';

export type Request =
  | {
      id: number;
      cmd: 'init';
      engine: 'owlet';
      backend: 'wasm' | 'cpu';
      /** Packed weight dtype through the owned CPU engine (omitted: stock tfjs float32 path). */
      dtype?: WeightDType;
      threads?: number;
    }
  | { id: number; cmd: 'init'; engine: 'llamacpp' | 'ort'; threads: number }
  | { id: number; cmd: 'llama.load'; config: LlamaConfig; path: string; contextSize: number }
  /** owlet only: the bench's deterministic random weights generated in-process, tensor by tensor (no file). */
  | { id: number; cmd: 'llama.random'; config: LlamaConfig; seed: number }
  | { id: number; cmd: 'llama.run'; prompt: number[]; newTokens: number; profile?: boolean }
  | { id: number; cmd: 'vision.load'; layers: number; seed: number; weights: string; onnx: string }
  | { id: number; cmd: 'vision.run'; profile?: boolean }
  | { id: number; cmd: 'unload' };

export interface Memory {
  rssBytes: number;
  maxRssBytes: number;
  tfBytes?: number;
  tfPeakBytes?: number;
}

export type Reply =
  | { id: number; ok: true; result: Record<string, unknown>; mem: Memory }
  | { id: number; ok: false; error: string };

let engine: 'owlet' | 'llamacpp' | 'ort' | null = null;
let llama: LlamaForCausalLM | null = null;
let llamaCpp: LlamaCppSession | null = null;
let vision: { model: MplugOwlVisionModel; abstractor: MplugOwlVisualAbstractorModel; pixels: tf.Tensor } | null = null;
let ort: typeof Ort | null = null;
let ortSession: Ort.InferenceSession | null = null;
let ortFeeds: Record<string, Ort.Tensor> = {};
let threads = 1;
let owletDtype: WeightDType | undefined;

function memory(extra: Partial<Memory> = {}): Memory {
  const m: Memory = {
    rssBytes: process.memoryUsage().rss,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    ...extra,
  };
  if (engine === 'owlet') m.tfBytes = tf.memory().numBytes;
  return m;
}

function visionConfigs(layers: number) {
  const v = resolveMplugOwlVisionConfig({ num_hidden_layers: layers }, { variant: 'mplug_owl2' });
  const a = resolveMplugOwlVisualAbstractorConfig({}, { variant: 'mplug_owl2', language_hidden_size: 4096 });
  return { v, a };
}

/** Random pixels of one 448×448 image (deterministic). */
function pixelData(size: number): Float32Array {
  return randomTensor('pixel_values', 3 * size * size, 1, 1);
}

async function saveModuleWeights(path: string, m: Module): Promise<void> {
  const entries: [string, tf.Tensor][] = [];
  for (const [k, p] of m.namedParameters()) entries.push([k, p.canonical()]);
  const w = await createSafetensorsFileWriter(
    path,
    entries.map(([key, t]) => ({ key, dtype: 'F32' as const, shape: t.shape })),
    { format: 'pt' },
  );
  try {
    for (const [key, t] of entries) {
      const v = (await t.data()) as Float32Array;
      t.dispose();
      await w.write(key, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    }
    await w.commit();
  } catch (e) {
    tf.dispose(entries.map(([, t]) => t));
    await w.abort();
    throw e;
  }
}

async function handle(req: Request): Promise<Record<string, unknown>> {
  switch (req.cmd) {
    case 'init': {
      engine = req.engine;
      if (req.engine === 'owlet') {
        const info = await initBackend(req.backend);
        owletDtype = req.dtype;
        if (req.dtype) await enableCpuEngine({ threads: req.threads ?? 1 });
        return { backend: info.name, tfjs: tf.version_core, cpuEngine: cpuEngineInfo() };
      }
      threads = req.threads;
      if (req.engine === 'ort') {
        ort = await import('onnxruntime-node');
        return { onnxruntime: ort.env.versions };
      }
      return {};
    }
    case 'llama.load': {
      const t0 = performance.now();
      if (engine === 'owlet') {
        llama = new LlamaForCausalLM(req.config);
        // the decoder's Linears and lm_head packed (quantized at load); embeddings and norms float32
        if (owletDtype) llama.setWeightDTypes(owletDtype);
        await loadCheckpointInto(llama, req.path);
        const wb = llama.weightBytes();
        return { loadMs: performance.now() - t0, weightBytes: wb.tensor + wb.packed, packedBytes: wb.packed };
      }
      llamaCpp = await openLlamaCpp(req.path, { threads, contextSize: req.contextSize });
      return { loadMs: performance.now() - t0 };
    }
    case 'llama.random': {
      const t0 = performance.now();
      llama = new LlamaForCausalLM(req.config);
      if (owletDtype) llama.setWeightDTypes(owletDtype);
      loadRandomLlama(llama, req.config, req.seed);
      const wb = llama.weightBytes();
      return { loadMs: performance.now() - t0, weightBytes: wb.tensor + wb.packed, packedBytes: wb.packed };
    }
    case 'llama.run': {
      if (engine === 'owlet') {
        const run = () =>
          llama!.generate({ input_ids: [req.prompt], max_new_tokens: req.newTokens + 1, eos_token_id: null });
        if (req.profile) {
          const before = tf.memory().numBytes;
          const info = await tf.profile(async () => {
            await run();
          });
          return { tfPeakBytes: info.peakBytes, tfBytesBefore: before };
        }
        const out = await run();
        return {
          prefillMs: out.usage.prefill_ms,
          decodeMs: out.usage.decode_ms,
          decodeTokens: out.generated_ids.length - 1,
        };
      }
      const t = await timeLlamaCpp(llamaCpp!, req.prompt, req.newTokens);
      return { prefillMs: t.prefillMs, decodeMs: t.decodeMs, decodeTokens: t.decodeTokens };
    }
    case 'vision.load': {
      const t0 = performance.now();
      if (engine === 'owlet') {
        const { v, a } = visionConfigs(req.layers);
        const model = new MplugOwlVisionModel(v);
        const abstractor = new MplugOwlVisualAbstractorModel(a);
        const vPath = `${req.weights}-vision.safetensors`;
        const aPath = `${req.weights}-abstractor.safetensors`;
        if (existsSync(vPath) && existsSync(aPath)) {
          await loadCheckpointInto(model, vPath);
          await loadCheckpointInto(abstractor, aPath, { ignore: [ABSTRACTOR_POSITION_BUFFER_KEYS] });
        } else {
          model.initialize({ seed: req.seed });
          abstractor.initialize({ seed: req.seed + 1 });
          await saveModuleWeights(vPath, model);
          await saveModuleWeights(aPath, abstractor);
        }
        if (!existsSync(req.onnx)) {
          const exported = await exportVisionToOnnx(model, abstractor);
          await exported.model.writeFile(req.onnx);
        }
        // standalone towers: their keys have no model prefix, so a dtype string packs every Linear
        if (owletDtype) {
          model.setWeightDTypes(owletDtype);
          abstractor.setWeightDTypes(owletDtype);
        }
        const pixels = tf.tensor(pixelData(v.image_size), [1, 3, v.image_size, v.image_size]);
        vision = { model, abstractor, pixels };
        const [wa, wb] = [model.weightBytes(), abstractor.weightBytes()];
        return { loadMs: performance.now() - t0, weightBytes: wa.tensor + wa.packed + wb.tensor + wb.packed };
      }
      const o = ort!;
      ortSession = await o.InferenceSession.create(req.onnx, {
        executionProviders: ['cpu'],
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
      });
      const { v } = visionConfigs(req.layers);
      ortFeeds = { pixel_values: new o.Tensor('float32', pixelData(v.image_size), [1, 3, v.image_size, v.image_size]) };
      return { loadMs: performance.now() - t0 };
    }
    case 'vision.run': {
      if (engine === 'owlet') {
        const { model, abstractor, pixels } = vision!;
        const run = async () => {
          const out = model.forward(pixels);
          const vt = abstractor.forward(out.last_hidden_state);
          await vt.data();
          tf.dispose([out.last_hidden_state, vt]);
        };
        if (req.profile) {
          const info = await tf.profile(run);
          return { tfPeakBytes: info.peakBytes };
        }
        const t0 = performance.now();
        await run();
        return { ms: performance.now() - t0 };
      }
      const t0 = performance.now();
      const out = await ortSession!.run(ortFeeds);
      const ms = performance.now() - t0;
      for (const t of Object.values(out)) t.dispose?.();
      return { ms };
    }
    case 'unload': {
      llama?.dispose();
      llama = null;
      await llamaCpp?.dispose();
      llamaCpp = null;
      if (vision) {
        vision.model.dispose();
        vision.abstractor.dispose();
        vision.pixels.dispose();
        vision = null;
      }
      await ortSession?.release();
      ortSession = null;
      return {};
    }
  }
}

process.on('message', (req: Request) => {
  handle(req).then(
    (result) => process.send!({ id: req.id, ok: true, result, mem: memory() } satisfies Reply),
    (e: unknown) =>
      process.send!({
        id: req.id,
        ok: false,
        error: e instanceof Error ? `${e.message}\n${e.stack}` : String(e),
      } satisfies Reply),
  );
});
