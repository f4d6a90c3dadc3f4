/**
 * The backend matrix: the same tests run on cpu, wasm and webgpu (Dawn on SwiftShader in CI).
 * `OWLET_TEST_BACKENDS=cpu,wasm` narrows the matrix for a local run. A test that cannot run on a
 * backend is listed in BACKEND_EXCLUSIONS with the reason; there is no other way to skip.
 */
import { getBackendInfo, initBackend, type BackendName } from '@owlet/core';
import { beforeAll, describe, it as vitestIt } from 'vitest';

export type MatrixBackend = Extract<BackendName, 'cpu' | 'wasm' | 'webgpu'>;
export const MATRIX_BACKENDS: readonly MatrixBackend[] = ['cpu', 'wasm', 'webgpu'];

export interface BackendExclusion {
  backend: MatrixBackend;
  /** Matched against `<suite title> > <test name>`. */
  test: RegExp;
  reason: string;
}

/** The one list of gaps in the matrix, each with its reason. */
export const BACKEND_EXCLUSIONS: readonly BackendExclusion[] = [
  {
    backend: 'webgpu',
    test: /^linear with packed weights \(composite path\) > a Linear module with a packed weight/,
    reason:
      'Parameter.pack() reads a materialised value with dataSync(), which tfjs-backend-webgpu 4.22 implements through OffscreenCanvas, absent in Node; packing a weight already on WebGPU needs an async read',
  },
];

export function selectedBackends(): MatrixBackend[] {
  const env = process.env.OWLET_TEST_BACKENDS;
  if (!env) return [...MATRIX_BACKENDS];
  const names = env
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!(MATRIX_BACKENDS as readonly string[]).includes(n)) {
      throw new Error(`OWLET_TEST_BACKENDS: unknown backend ${n}; expected ${MATRIX_BACKENDS.join(', ')}`);
    }
  }
  return names as MatrixBackend[];
}

export function exclusionFor(backend: MatrixBackend, fullName: string): BackendExclusion | undefined {
  return BACKEND_EXCLUSIONS.find((e) => e.backend === backend && e.test.test(fullName));
}

export type MatrixIt = (name: string, fn: () => unknown | Promise<unknown>, timeout?: number) => void;

export interface MatrixContext {
  backend: MatrixBackend;
  it: MatrixIt;
}

/** Sets the backend for a test process outside a matrix (e.g. in beforeAll). */
export async function useBackend(backend: MatrixBackend): Promise<void> {
  await initBackend(backend, { webgpu: { allowFallbackAdapter: true } });
}

/**
 * Declares `fn`'s tests once per backend of the matrix, each group under `title [backend]` with
 * that backend active.
 */
export function describeBackends(title: string, fn: (ctx: MatrixContext) => void): void {
  for (const backend of selectedBackends()) {
    describe(`${title} [${backend}]`, () => {
      beforeAll(async () => {
        await useBackend(backend);
      });
      const it: MatrixIt = (name, body, timeout) => {
        const ex = exclusionFor(backend, `${title} > ${name}`);
        if (ex) {
          vitestIt.skip(`${name} (excluded on ${backend}: ${ex.reason})`, () => {});
        } else {
          vitestIt(name, body, timeout);
        }
      };
      fn({ backend, it });
    });
  }
}

/**
 * Greedy steps a parity test decodes on the active backend, of the `fixtureSteps` its fixture holds.
 * On a software WebGPU adapter (SwiftShader, how CI runs webgpu) every decode step compiles new
 * shaders, because the key/value length changes each step: 16 steps cost 1–3 minutes per case on a
 * loaded 2-core machine. There the first {@link SOFTWARE_WEBGPU_DECODE_STEPS} steps are compared
 * with the fixture (ids and every step's logits; the kernels are the same at every later step);
 * cpu, wasm and a hardware GPU decode every step.
 */
export const SOFTWARE_WEBGPU_DECODE_STEPS = 4;

export function decodeStepsFor(fixtureSteps: number): number {
  const info = getBackendInfo();
  const software = info?.name === 'webgpu' && info.device?.isFallbackAdapter === true;
  return software ? Math.min(fixtureSteps, SOFTWARE_WEBGPU_DECODE_STEPS) : fixtureSteps;
}
