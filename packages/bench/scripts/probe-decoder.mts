// Quick in-process probe: owlet decoder decode/prefill speed per dtype and threads (random weights, no disk).
//   npx tsx scripts/probe-decoder.mts PRESET DTYPE THREADS [prompt]
import * as tf from '@tensorflow/tfjs-core';
import { enableCpuEngine, initBackend, type WeightDType } from '@owlet/core';
import { LlamaForCausalLM } from '@owlet/modality-adaptive-decoder';

import { LLAMA_PRESETS, loadRandomLlama } from '../src/weights.js';

const [name = 'llama-134m', dtype = 'q4', threads = '1', promptLen = '128'] = process.argv.slice(2);
const p = LLAMA_PRESETS.find((x) => x.name === name);
if (!p) throw new Error(`unknown preset ${name}`);
await initBackend((process.env.BACKEND as 'wasm') ?? 'wasm');
if (dtype !== 'tfjs') await enableCpuEngine({ threads: Number(threads) });
const m = new LlamaForCausalLM(p.config);
if (dtype !== 'tfjs') m.setWeightDTypes(dtype as WeightDType);
const t0 = performance.now();
loadRandomLlama(m, p.config, 1);
console.log(`load ${(performance.now() - t0).toFixed(0)} ms`, m.weightBytes());
const prompt = Array.from({ length: Number(promptLen) }, (_, i) => 3 + ((i * 7919) % 31000));
await m.generate({ input_ids: [prompt.slice(0, 8)], max_new_tokens: 4, eos_token_id: null });
for (let r = 0; r < 2; r++) {
  const out = await m.generate({ input_ids: [prompt], max_new_tokens: Number(process.env.NEW ?? 33), eos_token_id: null });
  const u = out.usage;
  console.log(
    `${name} ${dtype} ${threads}t: prefill ${((prompt.length / u.prefill_ms) * 1000).toFixed(1)} tok/s, decode ${(((out.generated_ids.length - 1) / u.decode_ms) * 1000).toFixed(2)} tok/s`,
  );
}
console.log(tf.memory().numTensors, 'tensors');
