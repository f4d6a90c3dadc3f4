// Bundled for headless Chromium by webgpu-engine.browser.test.ts: the fixture models loaded by URL
// on WebGPU (owlet's WGSL kernels, fp32 weights packed into GPU buffers), every fixture case's
// logits and greedy ids, and proof that each op call went through an owned kernel.
import { readSafetensors } from '@owlet/checkpoint';
import { type KernelOp, initBackend, registerKernel, webgpuEngineInfo } from '@owlet/core';

import { fromPretrained } from '../../src/index.js';

const OPS: KernelOp[] = ['linear', 'rmsNorm', 'layerNorm', 'rope', 'attention', 'swiglu', 'quickGelu'];
const CASES = [
  { dir: 'owl2_tiny', name: 'one_image' },
  { dir: 'owl2_tiny', name: 'two_images' },
  { dir: 'owl2_tiny', name: 'text_only' },
  { dir: 'owl1_tiny', name: 'one_image' },
];

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
};

async function main() {
  const info = await initBackend('webgpu');
  const results = [];
  for (const dirName of ['owl2_tiny', 'owl1_tiny']) {
    const base = new URL(`/files/${dirName}/`, location.href).href;
    const model = await fromPretrained(base, {
      dtype: { decoder: 'fp32', lm_head: 'fp32', embed_tokens: 'fp32', vision_encoder: 'fp32' },
    });
    // tried before the engine's kernels (registered later): counts every call, then declines
    const seen: Record<string, number> = {};
    const offs = OPS.map((op) =>
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
    for (const c of CASES.filter((x) => x.dir === dirName)) {
      const fx = readSafetensors(
        new Uint8Array(await (await fetch(`${base}case_${c.name}.safetensors`)).arrayBuffer()),
      );
      const meta = (await (await fetch(`${base}case_${c.name}.json`)).json()) as {
        generated_ids: number[];
        max_new_tokens: number;
      };
      const ids = Array.from(fx.array('input_ids'));
      const pixels = fx.has('pixel_values') ? fx.tensor('pixel_values') : null;
      const runs0 = { ...webgpuEngineInfo()?.runs };
      const seen0 = { ...seen };
      const out = model.forward({ input_ids: ids, pixel_values: pixels, attention_mask: ids.map(() => 1) });
      const logitsDiff = maxDiff(await out.logits.data(), fx.array('logits'));
      out.logits.dispose();
      out.last_hidden_state.dispose();
      const gen = await model.generate({
        input_ids: ids,
        pixel_values: pixels,
        max_new_tokens: meta.max_new_tokens,
        eos_token_id: null,
        output_logits: true,
      });
      pixels?.dispose();
      const steps = fx.array('generation_step_logits');
      const vocab = model.config.text_config.vocab_size;
      let stepDiff = 0;
      gen.logits?.forEach((row, k) => {
        stepDiff = Math.max(stepDiff, maxDiff(row, steps.subarray(k * vocab, (k + 1) * vocab)));
      });
      const runs1 = webgpuEngineInfo()?.runs ?? {};
      const calls: Record<string, [number, number]> = {};
      for (const op of OPS)
        calls[op] = [
          (seen[op] ?? 0) - (seen0[op] ?? 0),
          (runs1[op] ?? 0) - ((runs0 as Record<string, number>)[op] ?? 0),
        ];
      results.push({
        case: `${c.dir}/${c.name}`,
        logitsDiff,
        stepDiff,
        ids: gen.generated_ids,
        expected: meta.generated_ids,
        calls,
      });
    }
    for (const off of offs) off();
    model.dispose();
  }
  return { backend: info.name, runtime: info.runtime, adapter: info.device?.description ?? '', results };
}

main().then(
  (r) => ((globalThis as Record<string, unknown>).__owletResult = r),
  (e: unknown) => ((globalThis as Record<string, unknown>).__owletError = String((e as Error)?.stack ?? e)),
);
