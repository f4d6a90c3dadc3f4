/**
 * The worker side: `OwletEngineHandler` runs a `LocalOwletEngine` and answers the page's messages
 * (protocol.ts), as WebLLM's `WebWorkerMLCEngineHandler` forwards `onmessage` to its engine.
 */
import { serializeError } from './typed-errors.js';
import { LocalOwletEngine, type LocalEngineOptions } from './engine.js';
import type { WorkerRequest, WorkerResponse } from './protocol.js';

export type PostMessage = (message: WorkerResponse) => void;

export class OwletEngineHandler {
  readonly engine: LocalOwletEngine;

  constructor(
    private readonly post: PostMessage,
    options: Omit<LocalEngineOptions, 'onDeviceLost'> = {},
  ) {
    this.engine = new LocalOwletEngine({
      ...options,
      // A loss while nothing runs still reaches the page (the answer in flight gets it otherwise).
      onDeviceLost: (error, memory) => this.post({ status: 'error', error: serializeError(error), memory }),
    });
  }

  /** Handles one message; never throws (failures become `error` replies). */
  async onmessage(msg: WorkerRequest): Promise<void> {
    const e = this.engine;
    if (msg.type === 'interrupt') {
      e.interruptGenerate();
      return;
    }
    const id = msg.id;
    try {
      switch (msg.type) {
        case 'check': {
          const webgpu = await e.checkWebGPU();
          const isolated = Boolean((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated);
          this.post({ status: 'check', id, webgpu, crossOriginIsolated: isolated });
          return;
        }
        case 'load': {
          const info = await e.load(msg.source, {
            ...msg.options,
            progress_callback: (p) => this.post({ id, ...p }),
          });
          this.post({ status: 'ready', id, info });
          return;
        }
        case 'generate': {
          const result = await e.chat(msg.request, {
            onStart: () => this.post({ status: 'start', id }),
            onUpdate: (u) => this.post({ status: 'update', id, ...u }),
          });
          this.post({ status: 'complete', id, result });
          return;
        }
        case 'reset':
          await e.resetChat();
          break;
        case 'unload':
          await e.unload();
          break;
        case 'clear_cache':
          await e.clearCache();
          break;
        case 'memory':
          this.post({ status: 'memory', id, memory: await e.memory() });
          return;
        case 'lose_device':
          e.loseDeviceForTest(msg.when);
          break;
        default: {
          const unknown: never = msg;
          throw new Error(`unknown request ${JSON.stringify(unknown)}`);
        }
      }
      this.post({ status: 'ok', id });
    } catch (err) {
      this.post({ status: 'error', id, error: serializeError(err), memory: await e.memory() });
    }
  }
}
