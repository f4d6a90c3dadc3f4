import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { OwletError, initBackend, getBackendInfo, getWebGPUDevice, getWebGPUDeviceLost } from './index.js';
import { selectedBackends } from '@owlet/test-utils';

describe('initBackend', () => {
  it('rejects an unknown name with a typed error and keeps the current backend', async () => {
    await initBackend('cpu');
    const err = await initBackend('cuda' as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OwletError);
    expect((err as OwletError).code).toBe('BACKEND_UNKNOWN');
    expect((err as OwletError).message).toContain('cuda');
    expect(tf.getBackend()).toBe('cpu');
  });

  it('reports tensorflow as unavailable when tfjs-node is not installed, changing nothing', async () => {
    await initBackend('cpu');
    const err = await initBackend('tensorflow').catch((e: unknown) => e);
    // This machine has no tfjs-node; where a user has it, the call succeeds instead.
    if (err instanceof OwletError) {
      expect(err.code).toBe('BACKEND_UNAVAILABLE');
      expect(err.message).toMatch(/tfjs-node/);
      expect(tf.getBackend()).toBe('cpu');
    } else {
      expect(tf.getBackend()).toBe('tensorflow');
    }
  });

  it('auto picks a backend, says why and lists every attempt', async () => {
    const info = await initBackend('auto');
    expect(['webgpu', 'tensorflow', 'wasm', 'cpu']).toContain(info.name);
    expect(tf.getBackend()).toBe(info.name);
    expect(info.reason.length).toBeGreaterThan(0);
    expect(info.attempts.at(-1)).toMatchObject({ name: info.name, available: true });
    for (const a of info.attempts.slice(0, -1)) expect(a.available).toBe(false);
    expect(getBackendInfo()).toBe(info);
  });

  it('auto in Node asks for a WebGPU adapter in a child process: no usable adapter, no Dawn in this process', async () => {
    await initBackend('cpu');
    const info = await initBackend('auto');
    const webgpu = info.attempts.find((a) => a.name === 'webgpu');
    expect(webgpu).toBeDefined();
    if (webgpu && !webgpu.available) {
      // Dawn (and the Vulkan drivers that print on stderr) were loaded only in the probe's process.
      expect((globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu).toBeUndefined();
      expect(webgpu.reason).toMatch(/adapter|webgpu|probe/i);
    }
    for (const line of webgpu?.log ?? []) expect(typeof line).toBe('string');
  });

  it.runIf(selectedBackends().includes('webgpu'))(
    'webgpu creates its own device with the adapter maximum buffer limits',
    async () => {
      const info = await initBackend('webgpu');
      expect(info.name).toBe('webgpu');
      expect(info.device).toBeDefined();
      expect(info.device!.maxStorageBufferBindingSize).toBeGreaterThan(128 * 1024 * 1024);
      const y = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
      expect(await y.data()).toEqual(new Float32Array([11]));
      y.dispose();
    },
  );

  it.runIf(selectedBackends().includes('webgpu'))(
    'after the device is lost, initBackend("webgpu") creates a new device that works',
    async () => {
      await initBackend('webgpu');
      const first = getWebGPUDevice();
      if (!first) throw new Error('no device');
      expect(getWebGPUDeviceLost()).toBeUndefined();
      first.destroy();
      const info = await first.lost;
      expect(info.reason).toBe('destroyed');
      expect(getWebGPUDeviceLost()).toBe(info);
      const again = await initBackend('webgpu');
      expect(again.name).toBe('webgpu');
      const second = getWebGPUDevice();
      expect(second).toBeDefined();
      expect(second).not.toBe(first);
      expect(getWebGPUDeviceLost()).toBeUndefined();
      const y = tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4]));
      expect(await y.data()).toEqual(new Float32Array([4, 6]));
      y.dispose();
      // A usable device is reused, not re-created.
      await initBackend('webgpu');
      expect(getWebGPUDevice()).toBe(second);
    },
  );
});
