/**
 * Will the model fit the GPU? Checked from the checkpoint headers before any weight is read: tfjs
 * keeps each parameter as one float32 buffer, so the largest tensor must fit both
 * `maxStorageBufferBindingSize` and `maxBufferSize` of the device owlet created.
 */
import { openCheckpoint } from '@owlet/checkpoint';
import { OwletError } from '@owlet/errors';

import { EngineErrorCode } from './errors.js';

export interface TensorShape {
  key: string;
  shape: readonly number[];
}

export interface DeviceBufferLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** Throws EXCEEDS_DEVICE_LIMITS naming the tensor, its size and the limit it breaks. */
export function checkTensorsFitDevice(tensors: readonly TensorShape[], limits: DeviceBufferLimits): void {
  let largest: { key: string; bytes: number } | undefined;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * 4; // float32 on the device
    if (!largest || bytes > largest.bytes) largest = { key: t.key, bytes };
  }
  if (!largest) return;
  const [limitName, limit] =
    limits.maxStorageBufferBindingSize <= limits.maxBufferSize
      ? (['maxStorageBufferBindingSize', limits.maxStorageBufferBindingSize] as const)
      : (['maxBufferSize', limits.maxBufferSize] as const);
  if (largest.bytes > limit) {
    throw new OwletError(
      EngineErrorCode.EXCEEDS_DEVICE_LIMITS,
      `This model does not fit this GPU: ${largest.key} needs a ${mib(largest.bytes)} float32 buffer, ` +
        `and the device allows at most ${mib(limit)} (${limitName}). Choose the WASM backend, or a smaller model.`,
      { details: { key: largest.key, bytes: largest.bytes, limit, limitName } },
    );
  }
}

/** Reads only the headers of the checkpoint in `files` and checks them against the device. */
export async function checkModelFitsDevice(files: Map<string, Blob>, limits: DeviceBufferLimits): Promise<void> {
  const ckpt = await openCheckpoint(files);
  try {
    checkTensorsFitDevice(ckpt.entries(), limits);
  } finally {
    await ckpt.close();
  }
}
