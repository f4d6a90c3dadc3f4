/**
 * `GET /metrics` in the Prometheus text format: requests by route and status, queue depth,
 * tokens, tokens/s, time to first token, latency, and the engine's tf.memory() (the figures the
 * soak test watches), plus prom-client's process metrics (RSS, heap, event-loop lag).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { Engine } from './engine.js';

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly promptTokens: Counter;
  readonly completionTokens: Counter;
  readonly timeToFirstToken: Histogram;
  readonly decodeTokensPerSecond: Histogram;
  readonly requestDuration: Histogram;
  readonly queueWait: Histogram;
  readonly rejected: Counter<'reason'>;
  readonly disconnects: Counter;

  constructor(engine: Engine) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'owlet_http_requests_total',
      help: 'HTTP requests answered, by route and status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.rejected = new Counter({
      name: 'owlet_requests_rejected_total',
      help: 'Chat requests refused before reaching the engine, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.disconnects = new Counter({
      name: 'owlet_client_disconnects_total',
      help: 'Chat requests whose client went away before the answer was complete',
      registers,
    });
    this.promptTokens = new Counter({
      name: 'owlet_prompt_tokens_total',
      help: 'Prompt tokens prefilled (images count their visual tokens)',
      registers,
    });
    this.completionTokens = new Counter({
      name: 'owlet_completion_tokens_total',
      help: 'Tokens generated',
      registers,
    });
    this.timeToFirstToken = new Histogram({
      name: 'owlet_time_to_first_token_seconds',
      help: 'From the start of a job (after the queue) to its first generated token',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.decodeTokensPerSecond = new Histogram({
      name: 'owlet_decode_tokens_per_second',
      help: 'Decode speed of each finished choice',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'owlet_chat_request_duration_seconds',
      help: 'Chat completion requests from arrival to the last byte, queue included',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.queueWait = new Histogram({
      name: 'owlet_queue_wait_seconds',
      help: 'Time a request waited for the engine',
      buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60],
      registers,
    });
    new Gauge({
      name: 'owlet_queue_depth',
      help: 'Requests waiting for the engine',
      registers,
      collect() {
        this.set(engine.queueDepth);
      },
    });
    new Gauge({
      name: 'owlet_requests_running',
      help: 'Requests the engine is working on (0 or 1)',
      registers,
      collect() {
        this.set(engine.busy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'owlet_model_loaded',
      help: '1 when the model is loaded and requests are served',
      registers,
      collect() {
        this.set(engine.state === 'ready' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'owlet_engine_restarts_total',
      help: 'Times the engine worker died and was started again',
      registers,
      collect() {
        this.set(engine.restarts);
      },
    });
    new Gauge({
      name: 'owlet_tf_tensors',
      help: 'tf.memory().numTensors of the engine after its last job',
      registers,
      collect() {
        this.set(engine.memory?.numTensors ?? 0);
      },
    });
    new Gauge({
      name: 'owlet_tf_bytes',
      help: 'tf.memory().numBytes of the engine after its last job',
      registers,
      collect() {
        this.set(engine.memory?.numBytes ?? 0);
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
