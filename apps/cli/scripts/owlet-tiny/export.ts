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
  const config = {
    ...MODEL_CONFIG,
    owlet_note: 'owlet-tiny: trained by owlet on the generated shapes VQA set (see README.md)',
  };
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
