/**
 * Writes owlet-tiny as a Hugging Face-format folder: config.json (model_type mplug_owl2, nested
 * visual_config), preprocessor_config.json, generation_config.json, the LLaMA tokenizer.model and
 * F16 model.safetensors under the released key names. All-or-nothing (built beside, swapped in).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import { writeFolderAtomic, writeSafetensors, type TensorToWrite } from '@owlet/checkpoint';
import type { MPLUGOwl2LlamaForCausalLM } from '@owlet/mplug-owl';

import { GENERATION_CONFIG, MODEL_CONFIG, PREPROCESSOR_CONFIG } from './config.js';
import { tokenizerBytes } from './lib.js';

export async function exportTiny(
  model: MPLUGOwl2LlamaForCausalLM,
  out: string,
  extraFiles: Record<string, string | Uint8Array> = {},
): Promise<{ bytes: number; parameters: number }> {
  const sd = model.stateDict();
  const tensors = new Map<string, TensorToWrite>();
  let bytes = 0;
  try {
    for (const [key, t] of sd) {
      const data = (await t.data()) as Float32Array;
      tensors.set(key, { dtype: 'F16', shape: t.shape, data });
      bytes += data.length * 2;
    }
  } finally {
    tf.dispose([...sd.values()]);
  }
  // No `owlet_note`: the CLI, server and web app read that field as "random weights".
  const config = MODEL_CONFIG;
  await writeFolderAtomic(
    out,
    async (dir) => {
      writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
      writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      writeFileSync(join(dir, 'preprocessor_config.json'), `${JSON.stringify(PREPROCESSOR_CONFIG, null, 2)}\n`);
      writeFileSync(join(dir, 'generation_config.json'), `${JSON.stringify(GENERATION_CONFIG, null, 2)}\n`);
      writeFileSync(join(dir, 'tokenizer.model'), tokenizerBytes());
      for (const [name, content] of Object.entries(extraFiles)) writeFileSync(join(dir, name), content);
    },
    { force: true },
  );
  return { bytes, parameters: model.numParameters() };
}

/**
 * `tsx scripts/owlet-tiny/export.ts [CHECKPOINT] [OUT]`: exports a training checkpoint (default: the
 * latest of stage 2 in the run dir) to OUT (default apps/cli/models/owlet-tiny). The checkpoint
 * holds every parameter (every module trains), so it loads as a complete model.
 */
async function main(): Promise<void> {
  const { copyFileSync, mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { fromPretrained } = await import('@owlet/mplug-owl');
  const { latestCheckpoint } = await import('@owlet/trainer');
  const { CLI_ROOT, MODEL_DIR } = await import('./lib.js');
  const runDir = process.env.OWLET_TINY_RUN ?? join(CLI_ROOT, '..', '..', '.scratch', 'owlet-tiny');
  const ckpt = process.argv[2] ?? (await latestCheckpoint(join(runDir, 'stage2')));
  const out = process.argv[3] ?? MODEL_DIR;
  const tmp = mkdtempSync(join(tmpdir(), 'owlet-tiny-'));
  try {
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(MODEL_CONFIG));
    writeFileSync(join(tmp, 'preprocessor_config.json'), JSON.stringify(PREPROCESSOR_CONFIG));
    writeFileSync(join(tmp, 'tokenizer.model'), tokenizerBytes());
    copyFileSync(join(ckpt, 'model.safetensors'), join(tmp, 'model.safetensors'));
    const model = await fromPretrained(tmp, { backend: 'wasm' });
    const r = await exportTiny(model as unknown as MPLUGOwl2LlamaForCausalLM, out);
    model.dispose();
    process.stdout.write(
      `exported ${ckpt} → ${out}: ${r.parameters} parameters, ${(r.bytes / 1e6).toFixed(1)} MB F16\n`,
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
