// Dev probe: owlet vs llama.cpp in one process on the bench's cached weights, interleaved, timing
// both wall clock and process CPU time (robust to other load on 1 thread).
//   npx tsx --tsconfig ../../tsconfig.base.json scripts/ab-cpu.mts PRESET DTYPE THREADS [ROUNDS]
import * as tf from '@tensorflow/tfjs-core';
import { enableCpuEngine, initBackend, loadCheckpointInto, cpuEngineInfo, type WeightDType } from '@owlet/core';
import { LlamaForCausalLM } from '@owlet/modality-adaptive-decoder';

import { openLlamaCpp, timeLlamaCpp } from '../src/llamacpp.js';
import { LLAMA_PRESETS, defaultCacheDir, ensureCachedLlama } from '../src/weights.js';

const [name = 'llama-134m', dtype = 'q4', th = '1', rounds = '3'] = process.argv.slice(2);
const threads = Number(th);
const p = LLAMA_PRESETS.find((x) => x.name === name);
if (!p) throw new Error(`unknown preset ${name}`);
const type = dtype === 'q4' ? 'Q4_0' : dtype === 'q8' ? 'Q8_0' : 'F32';
const cached = await ensureCachedLlama(p, 20240611, [type], defaultCacheDir(), (m) => console.error(m));
await initBackend((process.env.BACKEND as 'cpu') ?? 'cpu');
await enableCpuEngine({ threads, kernels: (process.env.KERNELS as 'auto') ?? 'auto' });
console.error(cpuEngineInfo());
const m = new LlamaForCausalLM(p.config);
m.setWeightDTypes(dtype as WeightDType);
await loadCheckpointInto(m, cached.safetensors);
const lc = await openLlamaCpp(cached.gguf[type] as string, { threads, contextSize: 1024 });
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const tok = (n: number, s: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + s * 31) % 31000));
const NEW = Number(process.env.NEW ?? 32);
const res: Record<string, number[]> = {};
const add = (k: string, v: number) => (res[k] ??= []).push(v);
for (let r = -1; r < Number(rounds); r++) {
  for (const len of [128, 512]) {
    const prompt = tok(len, r + 5);
    // owlet
    let c1 = 0;
    const c0 = cpu();
    const out = await m.generate({ input_ids: [prompt], max_new_tokens: NEW + 1, eos_token_id: null, streamer: () => { if (!c1) c1 = cpu(); } });
    const c2 = cpu();
    // llama.cpp
    const l0 = cpu();
    const t = await timeLlamaCpp(lc, prompt, NEW);
    const l2 = cpu();
    if (r < 0) continue;
    add(`owlet prefill${len} wall`, (len / out.usage.prefill_ms) * 1000);
    add(`owlet prefill${len} cpu`, (len / (c1 - c0)) * 1000);
    add(`owlet decode@${len} wall`, (NEW / out.usage.decode_ms) * 1000);
    add(`owlet decode@${len} cpu`, (NEW / (c2 - c1)) * 1000);
    add(`llama prefill${len} wall`, (len / t.prefillMs) * 1000);
    add(`llama decode@${len} wall`, (NEW / t.decodeMs) * 1000);
    add(`llama total${len} cpu ms`, l2 - l0);
    add(`owlet total${len} cpu ms`, c2 - c0);
  }
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] as number;
for (const [k, v] of Object.entries(res)) console.log(`${k.padEnd(28)} ${med(v).toFixed(1).padStart(8)}   [${v.map((x) => x.toFixed(1)).join(', ')}]`);
console.log('tensors', tf.memory().numTensors);
await lc.dispose();
