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
 *   wasm backend is faster on the same CPU. The result says what was chosen and why. In Node, `auto`
 *   first asks for an adapter in a child process whose stderr is captured, so Dawn's and the Vulkan
 *   drivers' messages never reach the terminal when no usable adapter exists; Dawn is loaded into
 *   this process only for a hardware adapter (or a software one the options allow).
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
  /**
   * What native code (Dawn, the Vulkan loader and drivers) printed while `auto` probed for a WebGPU
   * adapter in a child process; captured instead of reaching the user's terminal. Node only.
   */
  log?: string[];
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

/** A Node built-in, through a variable specifier so browser bundles never see it. */
async function nodeBuiltin<T>(name: string): Promise<T> {
  const specifier = `node:${name}`;
  return (await import(/* @vite-ignore */ specifier)) as T;
}

/**
 * Mesa's Vulkan drivers print `error: XDG_RUNTIME_DIR is invalid or not set in the environment.`
 * from native code when the variable is unset (servers, containers, CI). Before Dawn loads, point it
 * at a private folder (owned by this user, mode 0700) so nothing is printed. A value that is set is
 * never changed; a folder that is not private is not used.
 */
async function ensureXdgRuntimeDir(): Promise<void> {
  if (process.platform !== 'linux' || process.env.XDG_RUNTIME_DIR) return;
  const fs = await nodeBuiltin<typeof import('node:fs')>('fs');
  const os = await nodeBuiltin<typeof import('node:os')>('os');
  const path = await nodeBuiltin<typeof import('node:path')>('path');
  const uid = process.getuid?.();
  const dir = path.join(os.tmpdir(), `owlet-runtime-${uid ?? 'user'}`);
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) return;
    process.env.XDG_RUNTIME_DIR = dir;
  } catch {
    // leave it unset: the drivers only complain
  }
}

function isSoftwareAdapter(a: { isFallbackAdapter?: boolean; architecture?: string; description?: string }): boolean {
  return (
    Boolean(a.isFallbackAdapter) ||
    /swiftshader|llvmpipe|lavapipe/i.test(`${a.architecture ?? ''} ${a.description ?? ''}`)
  );
}

const NO_NODE_ADAPTER =
  'no WebGPU adapter (no Vulkan/Metal/D3D12 driver found; for a CPU device set VK_ICD_FILENAMES to a SwiftShader ICD)';
const NO_DAWN = "the npm package 'webgpu' (Dawn) is not installed";
const PROBE_TIMEOUT_MS = 60_000;

/** Runs in the child: prints one JSON line describing the adapter Dawn offers. */
const PROBE_SCRIPT = `
const [entry, powerPreference] = process.argv.slice(1);
let out;
try {
  const m = await import(entry);
  const create = m.create ?? m.default?.create;
  const adapter = await create([]).requestAdapter({ powerPreference });
  const i = adapter?.info;
  out = adapter
    ? { found: true, architecture: i?.architecture ?? '', description: i?.description ?? '',
        isFallbackAdapter: Boolean(i?.isFallbackAdapter || adapter.isFallbackAdapter) }
    : { found: false };
} catch (e) {
  out = { error: String(e?.message ?? e) };
}
process.stdout.write(JSON.stringify(out) + '\\n', () => process.exit(0));
`;

interface AdapterProbe {
  found?: boolean;
  architecture?: string;
  description?: string;
  isFallbackAdapter?: boolean;
  error?: string;
}

/**
 * Asks Dawn for an adapter in a child Node process and captures everything native code prints.
 * Returns why auto should not use WebGPU, or `undefined` when Dawn offers an adapter auto may use.
 */
async function probeNodeAdapter(opts: InitBackendOptions): Promise<{ skip?: string; log: string[] }> {
  const { createRequire } = await nodeBuiltin<typeof import('node:module')>('module');
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve('webgpu');
  } catch {
    return { skip: NO_DAWN, log: [] };
  }
  await ensureXdgRuntimeDir();
  const { spawn } = await nodeBuiltin<typeof import('node:child_process')>('child_process');
  const { pathToFileURL } = await nodeBuiltin<typeof import('node:url')>('url');
  const powerPreference = opts.webgpu?.powerPreference ?? 'high-performance';
  const { stdout, stderr, failure } = await new Promise<{ stdout: string; stderr: string; failure?: string }>(
    (resolve) => {
      let out = '';
      let err = '';
      const child = spawn(
        process.execPath,
        ['--input-type=module', '-e', PROBE_SCRIPT, pathToFileURL(entry).href, powerPreference],
        { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true },
      );
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        err += d;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({ stdout: out, stderr: err, failure: `the WebGPU probe could not start: ${e.message}` });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const failure = signal
          ? `the WebGPU probe ended by ${signal}${signal === 'SIGKILL' ? ` (no answer within ${PROBE_TIMEOUT_MS / 1000} s)` : ''}`
          : code !== 0
            ? `the WebGPU probe exited with code ${code}`
            : undefined;
        resolve({ stdout: out, stderr: err, ...(failure ? { failure } : {}) });
      });
    },
  );
  const log = stderr.split('\n').filter((l) => l.trim() !== '');
  if (failure) return { skip: failure, log };
  let probe: AdapterProbe;
  try {
    probe = JSON.parse(stdout.trim().split('\n').pop() ?? '') as AdapterProbe;
  } catch {
    return { skip: 'the WebGPU probe gave no answer', log };
  }
  if (probe.error !== undefined) return { skip: `requestAdapter failed: ${probe.error}`, log };
  if (!probe.found) return { skip: NO_NODE_ADAPTER, log };
  if (isSoftwareAdapter(probe) && !opts.webgpu?.allowFallbackAdapter) {
    return { skip: softwareAdapterReason(probe.architecture || probe.description || 'software'), log };
  }
  return { log };
}

function softwareAdapterReason(what: string): string {
  return `the WebGPU adapter is a software rasterizer (${what}); wasm is faster on this CPU`;
}

async function nodeGpu(): Promise<{ gpu?: GPU; reason: string }> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return { gpu: nav.gpu, reason: 'navigator.gpu already present' };
  await ensureXdgRuntimeDir();
  const mod = await importOptional('webgpu');
  if (!mod || typeof mod.create !== 'function') {
    return { reason: NO_DAWN };
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
  if (!adapter) return isNode ? NO_NODE_ADAPTER : 'no WebGPU adapter';
  const ai = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const fallback = isSoftwareAdapter({
    isFallbackAdapter:
      Boolean((ai as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter) ||
      Boolean((adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    architecture: ai?.architecture ?? '',
    description: ai?.description ?? '',
  });
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
      // attention binds two buffers per KV-cache segment: more bindings, fewer passes
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
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
    let log: string[] | undefined;
    try {
      // auto in Node asks a child process first: Dawn is loaded here only for an adapter auto would use.
      const probe =
        name === 'webgpu' && !explicit && isNode && !(globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu
          ? await probeNodeAdapter(options)
          : undefined;
      if (probe && probe.log.length > 0) log = probe.log;
      if (probe?.skip !== undefined) {
        why = probe.skip;
      } else if (name === 'webgpu') {
        const prep = await prepareWebGPU(options);
        if (typeof prep === 'string') {
          why = prep;
        } else if (prep.info.isFallbackAdapter && !explicit && !options.webgpu?.allowFallbackAdapter) {
          why = softwareAdapterReason(prep.info.architecture || prep.info.description);
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
      attempts.push({ name, available: true, reason: 'available', ...(log ? { log } : {}) });
      current = { name, requested: request, reason, attempts, runtime, ...(device ? { device } : {}) };
      if (name !== 'webgpu') {
        webgpuDevice = undefined;
        webgpuLost = undefined;
      }
      return current;
    }
    attempts.push({ name, available: false, reason: why, ...(log ? { log } : {}) });
  }
  const detail = attempts.map((a) => `${a.name}: ${a.reason}`).join('; ');
  throw new OwletError(
    ErrorCode.BACKEND_UNAVAILABLE,
    explicit ? `backend ${request} is not available here: ${detail}` : `no backend could be initialised: ${detail}`,
    { details: { requested: request, attempts } },
  );
}
