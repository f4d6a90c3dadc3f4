/**
 * The model worker: the UI thread never runs a tensor op. Vite bundles this file (and, as separate
 * chunks, the tfjs backends) as a module worker; the wasm binaries are emitted beside it.
 */
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

import { OwletEngineHandler } from './handler.js';
import type { WorkerRequest, WorkerResponse } from './protocol.js';

const scope = self as unknown as {
  postMessage(message: WorkerResponse): void;
  onmessage: ((ev: MessageEvent<WorkerRequest>) => void) | null;
};
const abs = (u: string) => new URL(u, self.location.href).href;

const handler = new OwletEngineHandler((m) => scope.postMessage(m), {
  backendOptions: {
    wasm: {
      wasmPaths: {
        'tfjs-backend-wasm.wasm': abs(wasmPlain),
        'tfjs-backend-wasm-simd.wasm': abs(wasmSimd),
        'tfjs-backend-wasm-threaded-simd.wasm': abs(wasmThreaded),
      },
    },
  },
});
scope.onmessage = (ev) => void handler.onmessage(ev.data);
