import * as tf from '@tensorflow/tfjs-core';
import {
  type DTypeRequest,
  type KernelOp,
  disableCpuEngine,
  disableWebGPUEngine,
  enableCpuEngine,
  enableWebGPUEngine,
  lastKernel,
  packedWeightStats,
  registerKernel,
  setKernelsEnabled,
  uploadWebGPUWeights,
  webgpuEngineInfo,
  getCpuEngine,
} from '@owlet/core';
import {
  expectAllClose,
  expectNoLeaks,
  loadFixture,
  loadFixtureJson,
  maxAbsDiff,
  selectedBackends,
  useBackend,
} from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MPLUGOwl2LlamaForCausalLM } from './MPLUGOwl2LlamaForCausalLM.js';
import { MplugOwlForConditionalGeneration } from './MplugOwlForConditionalGeneration.js';
import { MplugOwlPreTrainedModel } from './MplugOwlPreTrainedModel.js';
import type { MplugOwlModel } from './pretrained.js';

type Dir = 'owl2_tiny' | 'owl1_tiny';

function build(dir: Dir, dtype?: DTypeRequest): MplugOwlModel {
  const config = loadFixtureJson<Record<string, unknown>>(`${dir}/config.json`);
  const model =
    dir === 'owl2_tiny' ? new MPLUGOwl2LlamaForCausalLM(config) : new MplugOwlForConditionalGeneration(config);
  if (dtype !== undefined) model.setWeightDTypes(dtype);
  const weights = loadFixture(`${dir}/model.safetensors`);
  const sd = new Map(weights.keys().map((k) => [k, weights.tensor(k)] as const));
  model.loadStateDict(sd, { ignore: MplugOwlPreTrainedModel.IGNORE_ON_LOAD });
  tf.dispose([...sd.values()]);
  return model;
}

const CASES: { dir: Dir; name: string }[] = [
  { dir: 'owl2_tiny', name: 'one_image' },
  { dir: 'owl2_tiny', name: 'two_images' },
  { dir: 'owl2_tiny', name: 'text_only' },
  { dir: 'owl1_tiny', name: 'one_image' },
];

const OPS: KernelOp[] = ['linear', 'rmsNorm', 'layerNorm', 'rope', 'attention', 'swiglu', 'quickGelu'];

/**
 * Counts every call of the ops on webgpu: a kernel registered last is tried first; it declines,
 * so the call goes on to the engine (or the composite).
 */
const seen: Partial<Record<KernelOp, number>> = {};
const spy = () =>
  OPS.map((op) =>
    registerKernel({
      op,
      backend: 'webgpu',
      dtype: '*',
      name: 'spy',
      run: () => {
        seen[op] = (seen[op] ?? 0) + 1;
        return null;
      },
    } as Parameters<typeof registerKernel>[0]),
  );
let spies: (() => void)[] = [];

/** Runs `fn` and checks that every op call in it was computed by an owned kernel. */
async function throughOwnedKernels<T>(fn: () => Promise<T>): Promise<T> {
  const seen0 = { ...seen };
  const runs0 = { ...webgpuEngineInfo()?.runs };
  const r = await fn();
  const runs1 = webgpuEngineInfo()?.runs ?? {};
  let total = 0;
  for (const op of OPS) {
    const calls = (seen[op] ?? 0) - (seen0[op] ?? 0);
    const owned = (runs1[op] ?? 0) - (runs0[op] ?? 0);
    expect(owned, `${op}: ${owned} of ${calls} calls through the owned kernel`).toBe(calls);
    total += calls;
  }
  expect(total).toBeGreaterThan(0);
  return r;
}

interface CaseResult {
  logits: Float32Array;
  ids: number[];
  steps: Float32Array[];
}

async function runCase(model: MplugOwlModel, dir: Dir, name: string, steps: number): Promise<CaseResult> {
  const fx = loadFixture(`${dir}/case_${name}.safetensors`);
  const ids = Array.from(fx.array('input_ids'));
  const pixels = fx.has('pixel_values') ? fx.tensor('pixel_values') : null;
  const out = model.forward({ input_ids: ids, pixel_values: pixels, attention_mask: ids.map(() => 1) });
  const logits = (await out.logits.data()) as Float32Array;
  tf.dispose([out.logits, out.last_hidden_state]);
  const gen = await model.generate({
    input_ids: ids,
    pixel_values: pixels,
    max_new_tokens: steps,
    eos_token_id: null,
    output_logits: true,
  });
  pixels?.dispose();
  return { logits, ids: gen.generated_ids, steps: gen.logits ?? [] };
}

describe.runIf(selectedBackends().includes('webgpu'))('models through the WebGPU engine [webgpu]', () => {
  beforeAll(async () => {
    await useBackend('webgpu');
    enableWebGPUEngine();
    spies = spy(); // registered after the engine's kernels: tried first
  });
  afterAll(() => {
    disableWebGPUEngine();
    for (const s of spies) s();
  });

  for (const c of CASES) {
    it(`${c.dir}/${c.name}: fp32 through the owned kernels — logits ≤ 1e-4, 16 greedy ids and their logits`, async () => {
      const fx = loadFixture(`${c.dir}/case_${c.name}.safetensors`);
      const meta = loadFixtureJson<{ generated_ids: number[]; max_new_tokens: number }>(`${c.dir}/case_${c.name}.json`);
      // float32 tfjs tensors for the text case; for the others fp32 weights packed into the engine's
      // buffers, the embedding table packed on the host
      const packed = c.name !== 'text_only';
      const model = build(
        c.dir,
        packed ? { decoder: 'fp32', lm_head: 'fp32', embed_tokens: 'fp32', vision_encoder: 'fp32' } : undefined,
      );
      await uploadWebGPUWeights(model);
      if (fx.has('pixel_values')) {
        const warm = fx.tensor('pixel_values'); // the abstractor's sin-cos tables are module state
        tf.dispose([warm, model.encodeImages(warm)]);
      }
      await expectNoLeaks(async () => {
        const r = await throughOwnedKernels(() => runCase(model, c.dir, c.name, meta.max_new_tokens));
        expect(maxAbsDiff(r.logits, fx.array('logits')).maxAbs).toBeLessThanOrEqual(1e-4);
        expect(r.ids).toEqual(meta.generated_ids);
        const stepLogits = fx.array('generation_step_logits');
        const vocab = model.config.text_config.vocab_size;
        r.steps.forEach((row, k) => {
          expectAllClose(row, stepLogits.subarray(k * vocab, (k + 1) * vocab), { atol: 1e-4, label: `step ${k}` });
        });
      }, `${c.dir}/${c.name}`);
      model.dispose();
    });
  }

  it('fp16 weights in every group against fp32 (checklist F12): logits within 2e-2, 32 greedy ids identical', async () => {
    const FP16: DTypeRequest = {
      decoder: 'fp16',
      lm_head: 'fp16',
      embed_tokens: 'fp16',
      vision_encoder: 'fp16',
      visual_abstractor: 'fp16',
    };
    for (const name of ['one_image', 'two_images', 'text_only']) {
      const fx = loadFixture(`owl2_tiny/case_${name}.safetensors`);
      const ids = Array.from(fx.array('input_ids'));
      const gens = [];
      for (const dtype of [undefined, FP16]) {
        const model = build('owl2_tiny', dtype);
        await uploadWebGPUWeights(model);
        const pixels = fx.has('pixel_values') ? fx.tensor('pixel_values') : null;
        const run = () =>
          model.generate({
            input_ids: ids,
            pixel_values: pixels,
            max_new_tokens: 32,
            eos_token_id: null,
            output_logits: true,
          });
        gens.push(dtype ? await throughOwnedKernels(run) : await run());
        pixels?.dispose();
        model.dispose();
      }
      const [ref, half] = gens as [
        Awaited<ReturnType<MplugOwlModel['generate']>>,
        Awaited<ReturnType<MplugOwlModel['generate']>>,
      ];
      expect(half.generated_ids, name).toEqual(ref.generated_ids);
      ref.logits?.forEach((row, k) => {
        const d = maxAbsDiff(row, half.logits?.[k] as Float32Array).maxAbs;
        expect(d, `${name} step ${k}: max |fp16 − fp32| ${d}`).toBeLessThanOrEqual(2e-2);
        expect(d).toBeGreaterThan(0); // the fp16 weights are really in use
      });
    }
  });

  it('q8 and q4 logits on webgpu equal the CPU path’s (composite ≤ 1e-4, CPU engine ≤ 2e-3) on every fixture case', async () => {
    const before = packedWeightStats();
    const runs = (['q8', 'q4'] as const).flatMap((dtype) => CASES.map((c) => ({ dtype, ...c })));
    const logitsOn = async (backend: 'cpu' | 'webgpu', engine: boolean): Promise<Float32Array[]> => {
      await useBackend(backend);
      if (backend === 'cpu' && engine) await enableCpuEngine({ threads: 1 });
      setKernelsEnabled(engine);
      const all: Float32Array[] = [];
      try {
        for (const r of runs) {
          const fx = loadFixture(`${r.dir}/case_${r.name}.safetensors`);
          const ids = Array.from(fx.array('input_ids'));
          const model = build(r.dir, r.dtype);
          if (backend === 'webgpu') await uploadWebGPUWeights(model);
          const pixels = fx.has('pixel_values') ? fx.tensor('pixel_values') : null;
          const run = () => model.forward({ input_ids: ids, pixel_values: pixels });
          const out = backend === 'webgpu' ? await throughOwnedKernels(async () => run()) : run();
          const kernel = !engine
            ? 'composite'
            : backend === 'cpu'
              ? `owlet-cpu-${getCpuEngine()?.kind}:${r.dtype}`
              : `owlet-webgpu:${r.dtype}`;
          expect(lastKernel('linear')).toBe(kernel);
          all.push((await out.logits.data()) as Float32Array);
          tf.dispose([out.logits, out.last_hidden_state, pixels as tf.Tensor]);
          model.dispose();
        }
      } finally {
        setKernelsEnabled(true);
        if (backend === 'cpu' && engine) disableCpuEngine();
      }
      return all;
    };
    // the exact product of the decoded weights (tfjs ops), and the CPU engine's WASM SIMD kernels,
    // which also quantize the activations (int16 per 32-value block)
    const composite = await logitsOn('cpu', false);
    const cpuEngine = await logitsOn('cpu', true);
    const gpu = await logitsOn('webgpu', true);
    runs.forEach((r, i) => {
      const g = gpu[i] as Float32Array;
      const label = `${r.dtype} ${r.dir}/${r.name}`;
      const dc = maxAbsDiff(g, composite[i] as Float32Array).maxAbs;
      expect(dc, `${label}: max |webgpu − cpu composite| ${dc}`).toBeLessThanOrEqual(1e-4);
      const de = maxAbsDiff(g, cpuEngine[i] as Float32Array).maxAbs;
      expect(de, `${label}: max |webgpu − cpu engine| ${de}`).toBeLessThanOrEqual(2e-3);
      // quantization moved the logits: this is not fp32 against fp32
      const fx = loadFixture(`${r.dir}/case_${r.name}.safetensors`);
      expect(maxAbsDiff(g, fx.array('logits')).maxAbs).toBeGreaterThan(1e-4);
    });
    expect(packedWeightStats()).toEqual(before);
    expect(webgpuEngineInfo()?.weights).toBe(0);
  }, 600_000);
});
