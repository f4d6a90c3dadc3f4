import { copyFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import {
  getWebGPUDevice,
  getWebGPUDeviceLost,
  initBackend,
  isOwletError,
  packedWeightStats,
  webgpuEngineInfo,
} from '@owlet/core';
import { REPO_ROOT, fixturePath, loadFixture, loadFixtureJson, selectedBackends } from '@owlet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { fromPretrained } from './pretrained.js';

// Reliability checklist F10: device.destroy() injected mid-load and mid-generation.
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'owlet-webgpu-loss-'));
  cpSync(fixturePath('torch_bin/owl2_tiny_f32'), dir, { recursive: true });
  copyFileSync(fixturePath('owl2_tiny/config.json'), join(dir, 'config.json'));
  copyFileSync(join(REPO_ROOT, 'apps/cli/models/owlet-tiny-random/tokenizer.model'), join(dir, 'tokenizer.model'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const destroyDevice = () => {
  const d = getWebGPUDevice();
  if (!d) throw new Error('no WebGPU device');
  d.destroy();
};

describe.runIf(selectedBackends().includes('webgpu'))('WebGPU device loss [webgpu]', () => {
  it('mid-generation: a typed DEVICE_LOST error, nothing left behind, and a reload works without restarting', async () => {
    const fx = loadFixture('owl2_tiny/case_text_only.safetensors');
    const meta = loadFixtureJson<{ generated_ids: number[] }>('owl2_tiny/case_text_only.json');
    const ids = Array.from(fx.array('input_ids'));
    const tensors0 = tf.memory().numTensors;
    const packed0 = packedWeightStats();

    const model = await fromPretrained(dir, { backend: 'webgpu', dtype: 'q4' });
    expect(webgpuEngineInfo()?.weights).toBeGreaterThan(0);
    // the GPU holds the packed weights; their host copies were freed after the upload
    expect(packedWeightStats().count).toBeGreaterThan(packed0.count);
    expect(packedWeightStats().bytes).toBe(packed0.bytes);
    const seen: number[] = [];
    const err = await model
      .generate({
        input_ids: ids,
        max_new_tokens: 8,
        eos_token_id: null,
        streamer: (t: number[]) => {
          seen.push(...t);
          if (seen.length === 2) destroyDevice();
        },
      })
      .catch((e: unknown) => e);
    expect(isOwletError(err, 'DEVICE_LOST'), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/WebGPU device was lost \(destroyed/);
    expect(getWebGPUDeviceLost()?.reason).toBe('destroyed');
    expect(seen.length).toBeLessThan(8);
    // the generation's own tensors (KV cache, logits) are gone; the model's go with dispose()
    model.dispose();
    expect(tf.memory().numTensors).toBe(tensors0);
    expect(packedWeightStats()).toEqual(packed0);
    expect(webgpuEngineInfo()?.weights).toBe(0);

    // the same process: a new device, the model again, the fixture's greedy ids
    await initBackend('webgpu');
    expect(getWebGPUDeviceLost()).toBeUndefined();
    const again = await fromPretrained(dir, { backend: 'webgpu' });
    const gen = await again.generate({ input_ids: ids, max_new_tokens: 16, eos_token_id: null });
    expect(gen.generated_ids).toEqual(meta.generated_ids);
    again.dispose();
    expect(tf.memory().numTensors).toBe(tensors0);
  });

  it('mid-load: the load fails with DEVICE_LOST and frees what it had loaded', async () => {
    await initBackend('webgpu');
    const tensors0 = tf.memory().numTensors;
    const packed0 = packedWeightStats();
    let n = 0;
    const err = await fromPretrained(dir, {
      backend: 'webgpu',
      dtype: 'q8',
      onProgress: (e) => {
        if (e.status === 'progress' && 'file' in e && /\.bin$/.test(e.file) && ++n === 1) destroyDevice();
      },
    }).catch((e: unknown) => e);
    expect(isOwletError(err, 'DEVICE_LOST'), String(err)).toBe(true);
    expect(tf.memory().numTensors).toBe(tensors0);
    expect(packedWeightStats()).toEqual(packed0);
    await initBackend('webgpu');
    const ok = await fromPretrained(dir, { backend: 'webgpu', dtype: 'q8' });
    ok.dispose();
  });

  it('an intentional dispose is not a device loss', async () => {
    await initBackend('webgpu');
    const model = await fromPretrained(dir, { backend: 'webgpu' });
    model.dispose();
    expect(getWebGPUDeviceLost()).toBeUndefined();
    const err = await model
      .generate({ input_ids: [1, 2, 3], max_new_tokens: 2, eos_token_id: null })
      .catch((e: unknown) => e);
    expect(isOwletError(err, 'DEVICE_LOST')).toBe(false);
    expect(isOwletError(err)).toBe(true);
  });
});
