/**
 * llama.cpp through node-llama-cpp's prebuilt CPU binary (never downloads or compiles): load a
 * GGUF, read full logits rows, time prefill and decode.
 */
import {
  getLlama,
  LlamaLogLevel,
  type ControlledEvaluateInputItem,
  type Llama,
  type LlamaContext,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';

let llamaPromise: Promise<Llama> | null = null;

/** The process-wide llama.cpp instance, CPU only. */
export function cpuLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({
    gpu: false,
    build: 'never',
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
  });
  return llamaPromise;
}

export interface LlamaCppSession {
  model: LlamaModel;
  context: LlamaContext;
  dispose(): Promise<void>;
}

export interface LlamaCppSessionOptions {
  threads: number;
  contextSize: number;
  batchSize?: number;
  /** K/V cache type; F32 matches owlet (llama.cpp's default is F16). */
  kvType?: 'F32' | 'F16';
}

export async function openLlamaCpp(path: string, options: LlamaCppSessionOptions): Promise<LlamaCppSession> {
  const llama = await cpuLlama();
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: true });
  const kv = options.kvType ?? 'F32';
  const context = await model.createContext({
    contextSize: options.contextSize,
    batchSize: options.batchSize ?? options.contextSize,
    threads: { ideal: options.threads, min: options.threads },
    sequences: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: kv,
    experimentalKvCacheValueType: kv,
  });
  return {
    model,
    context,
    async dispose() {
      await context.dispose();
      await model.dispose();
    },
  };
}

/** Logits [tokens.length, vocab] of a fresh sequence over `tokens` (every position). */
export async function llamaCppLogits(
  session: LlamaCppSession,
  tokens: readonly number[],
  vocabSize: number,
): Promise<Float32Array> {
  const seq = session.context.getSequence();
  try {
    const out = await seq.controlledEvaluate(tokens.map((t) => [t as Token, { generateNext: { logits: true } }]));
    const rows = new Float32Array(tokens.length * vocabSize).fill(Number.NaN);
    for (let i = 0; i < tokens.length; i++) {
      const logits = out[i]?.next.logits;
      if (!logits || logits.size !== vocabSize) {
        throw new Error(`llama.cpp returned ${logits?.size ?? 'no'} logits at position ${i}, expected ${vocabSize}`);
      }
      for (const [tok, v] of logits) rows[i * vocabSize + (tok as number)] = v;
    }
    return rows;
  } finally {
    await seq.dispose();
  }
}

export interface LlamaCppTiming {
  prefillMs: number;
  decodeMs: number;
  decodeTokens: number;
}

/**
 * Prefill `prompt` (one batch), then greedily decode `newTokens` tokens one at a time. Times the
 * two phases separately (prefill includes sampling the first new token, as owlet's does).
 */
export async function timeLlamaCpp(
  session: LlamaCppSession,
  prompt: readonly number[],
  newTokens: number,
): Promise<LlamaCppTiming> {
  const seq = session.context.getSequence();
  try {
    const t0 = performance.now();
    const input: ControlledEvaluateInputItem[] = prompt.slice(0, -1).map((t) => t as Token);
    input.push([prompt[prompt.length - 1] as Token, { generateNext: { token: true } }]);
    let res = await seq.controlledEvaluate(input);
    let next = res[prompt.length - 1]?.next.token;
    const t1 = performance.now();
    for (let i = 0; i < newTokens; i++) {
      if (next === undefined || next === null) throw new Error('llama.cpp produced no token');
      res = await seq.controlledEvaluate([[next, { generateNext: { token: true } }]]);
      next = res[0]?.next.token;
    }
    const t2 = performance.now();
    return { prefillMs: t1 - t0, decodeMs: t2 - t1, decodeTokens: newTokens };
  } finally {
    await seq.dispose();
  }
}
