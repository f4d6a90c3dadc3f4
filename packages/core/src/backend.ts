/**
 * Backend selection for browser and Node: `initBackend('auto' | 'webgpu' | 'wasm' | 'cpu' | 'tensorflow')`.
 *
 * - `webgpu`: tfjs-backend-webgpu on a GPUDevice that owlet creates itself, asking for the adapter's
 *   maximum `maxStorageBufferBindingSize` / `maxBufferSize` (one fp32 LLaMA-7B MLP matrix is 172 MiB,
 *   over the 128 MiB default) and `shader-f16` where offered. In Node the adapter comes from the npm
 *   `webgpu` package (Dawn).
 * - `tensorflow`: tfjs-node / tfjs-node-gpu, only when the user installed one of them (optional peer).
 * - `wasm`, `cpu`: tfjs-backend-wasm / tfjs-backend-cpu.
 * - `auto`: the best that works here; a software WebGPU adapter (SwiftShader) is skipped because the
 *   wasm backend is faster on the same CPU. The result says what was chosen and why.
 * - After the WebGPU device is lost (`getWebGPUDeviceLost()`), the next `initBackend` that asks for
 *   webgpu creates a new device instead of returning the dead one.
 */
import * as tf from '@tensorflow/tfjs-core';

import { ErrorCode, OwletError } from './errors.js';

export type BackendName = 'webgpu' | 'wasm' | 'cpu' | 'tensorflow';
export type BackendRequest = BackendName | 'auto';

export const BACKEND_NAMES: readonly BackendName[] = ['webgpu', 'tensorflow', 'wasm', 'cpu'];

export interface WebGPUDeviceInfo {
  vendor: string;
  architecture: string;
  description: string;
  /** True for software adapters such as SwiftShader. */
  isFallbackAdapter: boolean;
  /** Features that owlet requested and the device has. */
  features: string[];
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  shaderF16: boolean;
}

export interface BackendAttempt {
  name: BackendName;
  available: boolean;
  reason: string;
}

export interface BackendInfo {
  /** The backend owlet selected. */
  name: BackendName;
  /** What was requested. */
  requested: BackendRequest;
  /** One sentence: why this backend. */
  reason: string;
  /** Every backend considered, in order, with why it was or was not usable. */
  attempts: BackendAttempt[];
  /** Present for `webgpu`. */
  device?: WebGPUDeviceInfo;
  /** `node` or `browser`. */
  runtime: 'node' | 'browser';
}

export interface InitBackendOptions {
  webgpu?: {
    powerPreference?: 'high-performance' | 'low-power';
    /** Let `auto` choose a software adapter (SwiftShader). Explicit `'webgpu'` always may. */
    allowFallbackAdapter?: boolean;
  };
  wasm?: {
    /** Where the `.wasm` files are served from (browser bundles). */
    wasmPaths?: string | Record<string, string>;
    numThreads?: number;
  };
}

const isNode = typeof process !== 'undefined' && typeof process.versions === 'object' && !!process.versions?.node;

let current: BackendInfo | undefined;
let webgpuDevice: GPUDevice | undefined;
let webgpuLost: GPUDeviceLostInfo | undefined;

/** The backend chosen by the last successful `initBackend`, if any. */
export function getBackendInfo(): BackendInfo | undefined {
  return current;
}

/** The GPUDevice owlet created for the webgpu backend, if that backend is active. */
export function getWebGPUDevice(): GPUDevice | undefined {
  return webgpuDevice;
}

/**
 * Why the current webgpu device was lost (`device.lost` resolved: a driver reset, `destroy()`, the
 * tab losing its GPU), or undefined while it is usable. After a loss, tensors on the webgpu backend
 * are gone: dispose them, then `initBackend('webgpu')` creates a fresh device (no page reload).
 */
export function getWebGPUDeviceLost(): GPUDeviceLostInfo | undefined {
  return webgpuLost;
}

// Dynamic imports through a variable so browser bundlers never try to resolve Node-only packages.
async function importOptional(specifier: string): Promise<Record<string, unknown> | undefined> {
  try {
    return (await import(/* @vite-ignore */ specifier)) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function nodeGpu(): Promise<{ gpu?: GPU; reason: string }> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return { gpu: nav.gpu, reason: 'navigator.gpu already present' };
  const mod = await importOptional('webgpu');
  if (!mod || typeof mod.create !== 'function') {
    return { reason: "the npm package 'webgpu' (Dawn) is not installed" };
  }
  const globals = (mod.globals ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  const gpu = (mod.create as (flags: string[]) => GPU)([]);
  if (nav) {
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  } else {
    Object.defineProperty(globalThis, 'navigator', {
      value: { gpu },
      configurable: true,
      writable: true,
    });
  }
  return { gpu, reason: 'Dawn from the npm webgpu package' };
}

async function browserGpu(): Promise<{ gpu?: GPU; reason: string }> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return { gpu: nav.gpu, reason: 'navigator.gpu' };
  return { reason: 'navigator.gpu is not available in this browser (or the page is not a secure context)' };
}

interface WebGPUPrepared {
  adapter: GPUAdapter;
  info: WebGPUDeviceInfo;
}

async function prepareWebGPU(opts: InitBackendOptions): Promise<WebGPUPrepared | string> {
  const { gpu, reason } = isNode ? await nodeGpu() : await browserGpu();
  if (!gpu) return reason;
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({
      powerPreference: opts.webgpu?.powerPreference ?? 'high-performance',
    });
  } catch (e) {
    return `requestAdapter failed: ${(e as Error).message}`;
  }
  if (!adapter) {
    return isNode
      ? 'no WebGPU adapter (no Vulkan/Metal/D3D12 driver found; for a CPU device set VK_ICD_FILENAMES to a SwiftShader ICD)'
      : 'no WebGPU adapter';
  }
  const ai = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const fallback =
    Boolean((ai as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter) ||
    Boolean((adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter) ||
    /swiftshader|llvmpipe|lavapipe/i.test(`${ai?.architecture ?? ''} ${ai?.description ?? ''}`);
  return {
    adapter,
    info: {
      vendor: ai?.vendor ?? '',
      architecture: ai?.architecture ?? '',
      description: ai?.description ?? '',
      isFallbackAdapter: fallback,
      features: [],
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      shaderF16: adapter.features.has('shader-f16'),
    },
  };
}

async function activateWebGPU(prep: WebGPUPrepared): Promise<void> {
  const { adapter, info } = prep;
  const wanted: GPUFeatureName[] = ['shader-f16', 'timestamp-query'];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    },
  });
  info.features = requiredFeatures;
  // Importing the backend registers its kernels (and, where navigator.gpu exists, a default
  // factory that we replace with one that uses our device).
  const mod = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as {
    WebGPUBackend: new (device: GPUDevice, adapterInfo?: GPUAdapterInfo) => tf.KernelBackend;
  };
  // Only ask for the factory: tf.findBackend() would start initialising tfjs' own async factory,
  // and removing it mid-flight leaves the engine waiting for it forever.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  const adapterInfo = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  tf.registerBackend('webgpu', () => new mod.WebGPUBackend(device, adapterInfo), 3);
  const ok = await tf.setBackend('webgpu');
  if (!ok) throw new Error('tf.setBackend("webgpu") returned false');
  webgpuDevice = device;
  webgpuLost = undefined;
  void device.lost.then((info) => {
    if (webgpuDevice === device) webgpuLost = info;
  });
}

async function activateWasm(opts: InitBackendOptions): Promise<void> {
  const mod = (await import('@tensorflow/tfjs-backend-wasm')) as unknown as {
    setWasmPaths: (p: string | Record<string, string>) => void;
    setThreadsCount: (n: number) => void;
  };
  if (opts.wasm?.wasmPaths !== undefined) mod.setWasmPaths(opts.wasm.wasmPaths);
  if (opts.wasm?.numThreads !== undefined) mod.setThreadsCount(opts.wasm.numThreads);
  const ok = await tf.setBackend('wasm');
  if (!ok) throw new Error('tf.setBackend("wasm") returned false');
}

async function activateCpu(): Promise<void> {
  await import('@tensorflow/tfjs-backend-cpu');
  const ok = await tf.setBackend('cpu');
  if (!ok) throw new Error('tf.setBackend("cpu") returned false');
}

async function tensorflowAvailable(): Promise<string | true> {
  if (!isNode) return 'tfjs-node runs only in Node';
  if (tf.findBackendFactory('tensorflow')) return true;
  for (const spec of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    const mod = await importOptional(spec);
    if (mod && tf.findBackendFactory('tensorflow')) return true;
  }
  return 'neither @tensorflow/tfjs-node nor @tensorflow/tfjs-node-gpu is installed (optional peer dependencies)';
}

async function activateTensorflow(): Promise<void> {
  const ok = await tf.setBackend('tensorflow');
  if (!ok) throw new Error('tf.setBackend("tensorflow") returned false');
}

function isBackendRequest(x: unknown): x is BackendRequest {
  return x === 'auto' || (typeof x === 'string' && (BACKEND_NAMES as readonly string[]).includes(x));
}

/**
 * Selects and initialises a tfjs backend. Explicit names that cannot run here throw
 * `OwletError(BACKEND_UNAVAILABLE)` and leave the current backend as it was.
 */
export async function initBackend(
  request: BackendRequest = 'auto',
  options: InitBackendOptions = {},
): Promise<BackendInfo> {
  if (!isBackendRequest(request)) {
    throw new OwletError(
      ErrorCode.BACKEND_UNKNOWN,
      `unknown backend ${JSON.stringify(request)}; expected one of auto, ${BACKEND_NAMES.join(', ')}`,
      { details: { requested: request } },
    );
  }
  const runtime = isNode ? 'node' : 'browser';
  const deviceGone = current?.name === 'webgpu' && webgpuLost !== undefined;
  if (
    current &&
    !deviceGone &&
    (current.requested === request || current.name === request) &&
    tf.getBackend() === current.name
  ) {
    return current;
  }
  const attempts: BackendAttempt[] = [];
  const order: BackendName[] = request === 'auto' ? ['webgpu', 'tensorflow', 'wasm', 'cpu'] : [request];
  const explicit = request !== 'auto';

  for (const name of order) {
    let why: string | true;
    let device: WebGPUDeviceInfo | undefined;
    try {
      if (name === 'webgpu') {
        const prep = await prepareWebGPU(options);
        if (typeof prep === 'string') {
          why = prep;
        } else if (prep.info.isFallbackAdapter && !explicit && !options.webgpu?.allowFallbackAdapter) {
          why = `the WebGPU adapter is a software rasterizer (${prep.info.architecture || prep.info.description}); wasm is faster on this CPU`;
        } else {
          await activateWebGPU(prep);
          device = prep.info;
          why = true;
        }
      } else if (name === 'tensorflow') {
        why = await tensorflowAvailable();
        if (why === true) await activateTensorflow();
      } else if (name === 'wasm') {
        await activateWasm(options);
        why = true;
      } else {
        await activateCpu();
        why = true;
      }
    } catch (e) {
      why = `initialisation failed: ${(e as Error).message}`;
    }
    if (why === true) {
      const reason = explicit
        ? `${name} was requested and is available`
        : attempts.length === 0
          ? `${name} is the best backend available`
          : `${name} chosen because ${attempts.map((a) => `${a.name}: ${a.reason}`).join('; ')}`;
      attempts.push({ name, available: true, reason: 'available' });
      current = { name, requested: request, reason, attempts, runtime, ...(device ? { device } : {}) };
      if (name !== 'webgpu') {
        webgpuDevice = undefined;
        webgpuLost = undefined;
      }
      return current;
    }
    attempts.push({ name, available: false, reason: why });
  }
  const detail = attempts.map((a) => `${a.name}: ${a.reason}`).join('; ');
  throw new OwletError(
    ErrorCode.BACKEND_UNAVAILABLE,
    explicit ? `backend ${request} is not available here: ${detail}` : `no backend could be initialised: ${detail}`,
    { details: { requested: request, attempts } },
  );
}
