/**
 * The OpenAI-compatible HTTP API on Fastify: `POST /v1/chat/completions` (JSON or SSE),
 * `GET /v1/models`, `GET /health`, `GET /metrics`. The body limit is Fastify's, enforced while the
 * body streams; the JSON schema is checked strictly (no coercion, no removal of unknown fields);
 * every failure is answered in the OpenAI error shape.
 */
import { randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { PassThrough } from 'node:stream';

import cors from '@fastify/cors';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';

import { type ChoiceResult, type Engine, QueueFullError } from './engine.js';
import { ApiError, badRequest, loadingError } from './errors.js';
import { loadImage } from './images.js';
import { ServeMetrics } from './metrics.js';
import type { ModelInfo, WireError } from './protocol.js';
import { type ChatCompletionBody, chatCompletionSchema, translateRequest } from './request.js';
import { RequestGate, isLoopbackName } from './security.js';

export interface ServerConfig {
  host: string;
  apiKey?: string;
  maxBodyBytes: number;
  maxImages: number;
  /** Largest width × height of an image (from its header). */
  maxPixels: number;
  corsOrigins: string[];
  /** Extra Host header names accepted when bound to loopback. */
  allowedHosts: string[];
  /** Hosts http(s) image URLs may point at (empty: data: URLs only). */
  allowedMediaDomains: string[];
  mediaTimeoutMs: number;
  /** SSE comment pings while a streamed request waits for its next token. */
  ssePingIntervalMs: number;
  /** Whole-request receive timeout (slow-loris guard). */
  requestTimeoutMs: number;
  /** The model name clients use (default: the model folder's name). */
  servedModelName?: string;
  log: (line: string) => void;
}

/** The id clients pass as `model`: the checkpoint folder's (or URL's) last path segment. */
export function modelIdOf(info: ModelInfo, served?: string): string {
  if (served) return served;
  const trimmed = info.source.replace(/[\\/]+$/, '');
  return basename(trimmed) || 'owlet';
}

function sendError(reply: FastifyReply, e: ApiError): FastifyReply {
  for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
  return reply.code(e.status).type('application/json; charset=utf-8').send(e.body());
}

/** ajv's first error → one message and the field it is about, OpenAI style (`messages[0].content`). */
function validationError(err: FastifyError): ApiError {
  const v = err.validation?.[0] as
    | { instancePath?: string; keyword?: string; message?: string; params?: Record<string, unknown> }
    | undefined;
  const path = (v?.instancePath ?? '')
    .split('/')
    .filter(Boolean)
    .map((seg) => (/^\d+$/.test(seg) ? `[${seg}]` : `.${seg}`))
    .join('')
    .replace(/^\./, '');
  if (v?.keyword === 'additionalProperties') {
    const extra = String(v.params?.additionalProperty ?? '');
    const param = path ? `${path}.${extra}` : extra;
    return badRequest(`Unrecognized request argument supplied: ${param}`, param, 'unknown_parameter');
  }
  const param = path || null;
  return badRequest(
    `Invalid value for ${param ?? 'the request body'}: ${v?.message ?? err.message}`,
    param,
    'invalid_value',
  );
}

export interface ServerHandle {
  app: FastifyInstance;
  metrics: ServeMetrics;
  /** Refuse new requests from now on (SIGTERM); in-flight ones go on. */
  startDraining(): void;
}

export async function createServer(cfg: ServerConfig, engine: Engine): Promise<ServerHandle> {
  const checkEvery = Math.max(100, Math.min(30_000, Math.floor(cfg.requestTimeoutMs / 4)));
  const app = Fastify({
    logger: false,
    bodyLimit: cfg.maxBodyBytes,
    requestTimeout: cfg.requestTimeoutMs,
    http: {
      headersTimeout: Math.min(60_000, cfg.requestTimeoutMs),
      connectionsCheckingInterval: checkEvery,
    },
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    ajv: {
      customOptions: {
        removeAdditional: false,
        coerceTypes: false,
        useDefaults: false,
        allErrors: false,
        discriminator: true,
      },
    },
  });
  // JSON only: a text/plain POST is what a foreign web page can send without a CORS preflight.
  app.removeContentTypeParser('text/plain');
  const metrics = new ServeMetrics(engine);
  const gate = new RequestGate({
    loopbackBind: isLoopbackName(cfg.host),
    allowedHosts: cfg.allowedHosts,
    corsOrigins: cfg.corsOrigins,
    ...(cfg.apiKey ? { apiKey: cfg.apiKey } : {}),
  });
  let draining = false;
  /** Recent request durations (EWMA, seconds): the Retry-After estimate. */
  let typicalSeconds = 1;

  if (cfg.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: cfg.corsOrigins.includes('*') ? '*' : cfg.corsOrigins,
      methods: ['GET', 'POST', 'OPTIONS'],
      allowedHeaders: ['Authorization', 'Content-Type', 'X-Api-Key'],
      credentials: false,
      maxAge: 600,
    });
  }
  app.addHook('onRequest', async (req) => {
    gate.check({ method: req.method, url: req.url, headers: req.headers });
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.requests.inc({ route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err instanceof ApiError) return sendError(reply, err);
    if (err.validation) return sendError(reply, validationError(err));
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      reply.header('Connection', 'close'); // stop the rest of the upload
      return sendError(
        reply,
        new ApiError(
          413,
          `Request body is over the server's limit of ${cfg.maxBodyBytes} bytes (--max-body-bytes)`,
          'invalid_request_error',
          'request_too_large',
        ),
      );
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return sendError(reply, new ApiError(415, 'Content-Type must be application/json', 'invalid_request_error'));
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status >= 400 && status < 500) return sendError(reply, new ApiError(status, err.message));
    cfg.log(`internal error: ${err.stack ?? err.message}`);
    return sendError(reply, new ApiError(500, `internal error: ${err.message}`, 'server_error'));
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, new ApiError(404, `Unknown route ${req.method} ${req.url.split('?')[0]}`, 'not_found_error')),
  );

  const ready = (): ModelInfo => {
    if (draining) throw new ApiError(503, 'The server is shutting down', 'unavailable_error', 503);
    if (engine.state === 'failed') throw new ApiError(503, 'The model failed to load', 'unavailable_error', 503);
    if (engine.state !== 'ready' && !engine.info) throw loadingError();
    if (!engine.info) throw loadingError();
    return engine.info;
  };

  app.get('/health', async (_req, reply) => {
    try {
      ready();
    } catch (e) {
      return sendError(reply, e as ApiError);
    }
    return { status: 'ok' };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.contentType);
    return metrics.text();
  });

  const modelObject = (info: ModelInfo) => ({
    id: modelIdOf(info, cfg.servedModelName),
    object: 'model' as const,
    created: Math.floor((Date.now() - info.load_ms) / 1000),
    owned_by: 'owlet',
    context_window: info.context_window,
  });
  app.get('/v1/models', async () => {
    const info = ready();
    return { object: 'list', data: [modelObject(info)] };
  });
  app.get('/v1/models/:id', async (req) => {
    const info = ready();
    const m = modelObject(info);
    const id = (req.params as { id: string }).id;
    if (id !== m.id)
      throw new ApiError(404, `The model '${id}' does not exist`, 'invalid_request_error', 'model_not_found', 'model');
    return m;
  });

  app.post('/v1/chat/completions', { schema: { body: chatCompletionSchema } }, async (req, reply) => {
    const tArrive = performance.now();
    const info = ready();
    const body = req.body as ChatCompletionBody;
    const id = modelIdOf(info, cfg.servedModelName);
    if (body.model !== id) {
      throw new ApiError(
        404,
        `The model '${body.model}' does not exist; this server serves '${id}' (GET /v1/models)`,
        'invalid_request_error',
        'model_not_found',
        'model',
      );
    }
    const tr = translateRequest(body, { maxImages: cfg.maxImages, contextWindow: info.context_window });
    const busy = () =>
      new ApiError(
        503,
        `The server is busy: ${engine.queueDepth} requests are waiting; retry later`,
        'unavailable_error',
        'server_busy',
        null,
        { 'Retry-After': String(Math.max(1, Math.ceil(typicalSeconds))) },
      );
    // Refuse at once when the queue is full: before reading any image.
    if (engine.busy && engine.queueDepth >= engine.maxQueue) {
      metrics.rejected.inc({ reason: 'queue_full' });
      throw busy();
    }

    const clientGone = new AbortController();
    const onClose = () => {
      if (reply.raw.writableFinished || clientGone.signal.aborted) return;
      metrics.disconnects.inc();
      clientGone.abort();
    };
    reply.raw.on('close', onClose);

    const images: Uint8Array[] = [];
    try {
      for (const ref of tr.images) {
        images.push(
          await loadImage(ref.url, ref.param, {
            allowedHosts: cfg.allowedMediaDomains,
            maxBytes: cfg.maxBodyBytes,
            maxPixels: cfg.maxPixels,
            timeoutMs: cfg.mediaTimeoutMs,
            signal: clientGone.signal,
          }),
        );
      }
    } catch (e) {
      if (clientGone.signal.aborted) return reply.code(499).send();
      throw e;
    }
    if (clientGone.signal.aborted) return reply.code(499).send();

    const completionId = `chatcmpl-${randomUUID().replaceAll('-', '')}`;
    const created = Math.floor(Date.now() / 1000);
    const choices: ChoiceResult[] = [];
    let promptTokens = 0;
    let dispatchedAt = 0;
    let firstDeltaAt = 0;

    // Streaming state: the status is committed (200 + SSE headers) at the first event or ping.
    const sse = tr.stream ? new PassThrough() : null;
    let committed = false;
    let lastWrite = performance.now();
    const roleSent = new Set<number>();
    const write = (s: string) => {
      if (!sse || sse.destroyed) return;
      sse.write(s);
      lastWrite = performance.now();
    };
    const chunk = (choice: Record<string, unknown> | null, usage?: unknown) =>
      write(
        `data: ${JSON.stringify({
          id: completionId,
          object: 'chat.completion.chunk',
          created,
          model: id,
          system_fingerprint: null,
          choices: choice ? [choice] : [],
          ...(tr.includeUsage ? { usage: usage ?? null } : {}),
        })}\n\n`,
      );
    const commit = () => {
      if (committed || !sse) return;
      committed = true;
      reply
        .code(200)
        .header('Content-Type', 'text/event-stream; charset=utf-8')
        .header('Cache-Control', 'no-cache')
        .header('X-Accel-Buffering', 'no');
      void reply.send(sse);
    };
    const ensureRole = (index: number) => {
      if (roleSent.has(index)) return;
      roleSent.add(index);
      commit();
      chunk({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
    };

    type Outcome = { aborted: boolean; tokens: number; error?: WireError };
    let settle: (r: Outcome) => void = () => {};
    const finished = new Promise<Outcome>((r) => (settle = r));
    let handle: ReturnType<Engine['submit']>;
    try {
      handle = engine.submit(
        { ...tr.job, images },
        {
          dispatched: () => {
            dispatchedAt = performance.now();
            metrics.queueWait.observe((dispatchedAt - tArrive) / 1000);
          },
          started: (p) => {
            promptTokens = p;
            if (sse) commit();
          },
          delta: (index, text) => {
            if (!firstDeltaAt) firstDeltaAt = performance.now();
            if (!sse) return;
            ensureRole(index);
            chunk({ index, delta: { content: text }, logprobs: null, finish_reason: null });
          },
          choice: (c) => {
            choices.push(c);
            if (!sse) return;
            ensureRole(c.index);
            chunk({ index: c.index, delta: {}, logprobs: null, finish_reason: c.finish_reason });
          },
          done: (aborted, tokens) => settle({ aborted, tokens }),
          failed: (error) => settle({ aborted: false, tokens: 0, error }),
        },
      );
    } catch (e) {
      if (e instanceof QueueFullError) {
        metrics.rejected.inc({ reason: 'queue_full' });
        throw busy();
      }
      throw e;
    }
    clientGone.signal.addEventListener('abort', () => handle.cancel(), { once: true });
    const ping = sse
      ? setInterval(() => {
          if (performance.now() - lastWrite < cfg.ssePingIntervalMs * 0.9) return;
          commit();
          write(': ping\n\n');
        }, cfg.ssePingIntervalMs)
      : null;

    let outcome: Outcome;
    try {
      outcome = await finished;
    } finally {
      if (ping) clearInterval(ping);
    }
    const tEnd = performance.now();
    typicalSeconds = 0.8 * typicalSeconds + 0.2 * ((tEnd - (dispatchedAt || tArrive)) / 1000);

    if (outcome.aborted || clientGone.signal.aborted) {
      metrics.completionTokens.inc(outcome.tokens);
      sse?.end();
      if (!committed) return reply.code(499).send();
      return reply;
    }
    if (outcome.error) {
      const err = ApiError.fromWire(outcome.error);
      if (err.status >= 500) cfg.log(`request ${completionId} failed: ${err.message}`);
      if (!sse || !committed) throw err;
      write(`data: ${JSON.stringify(err.body())}\n\n`);
      write('data: [DONE]\n\n');
      sse.end();
      return reply;
    }

    choices.sort((a, b) => a.index - b.index);
    const completion = choices.reduce((a, c) => a + c.usage.completion_tokens, 0);
    const c0 = choices[0];
    const queueS = ((dispatchedAt || tArrive) - tArrive) / 1000;
    const ttft = c0 ? (dispatchedAt - tArrive) / 1000 + c0.usage.time_to_first_token_s : 0;
    const decodeTps = choices.length
      ? choices.reduce((a, c) => a + c.usage.decode_tokens_per_s, 0) / choices.length
      : 0;
    const e2e = (tEnd - tArrive) / 1000;
    metrics.promptTokens.inc(promptTokens);
    metrics.completionTokens.inc(outcome.tokens);
    if (c0) metrics.timeToFirstToken.observe(ttft);
    for (const c of choices)
      if (c.usage.decode_tokens_per_s > 0) metrics.decodeTokensPerSecond.observe(c.usage.decode_tokens_per_s);
    metrics.requestDuration.observe(e2e);
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: completion,
      total_tokens: promptTokens + completion,
      prompt_tokens_details: { cached_tokens: 0 },
      extra: {
        prefill_tokens_per_s: c0?.usage.prefill_tokens_per_s ?? 0,
        decode_tokens_per_s: decodeTps,
        time_to_first_token_s: ttft,
        time_per_output_token_s: decodeTps > 0 ? 1 / decodeTps : 0,
        e2e_latency_s: e2e,
        queue_time_s: queueS,
      },
    };
    if (sse) {
      if (tr.includeUsage) chunk(null, usage);
      write('data: [DONE]\n\n');
      sse.end();
      return reply;
    }
    return {
      id: completionId,
      object: 'chat.completion',
      created,
      model: id,
      system_fingerprint: null,
      choices: choices.map((c) => ({
        index: c.index,
        message: { role: 'assistant', content: c.text },
        logprobs: null,
        finish_reason: c.finish_reason,
      })),
      usage,
    };
  });

  return {
    app,
    metrics,
    startDraining: () => {
      draining = true;
    },
  };
}
