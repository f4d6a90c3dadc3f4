/**
 * `owlet serve`: the OpenAI-compatible HTTP server. It listens at once (so `/health` answers 503
 * "Loading model" while the weights load), loads the model in a worker thread the way `owlet run`
 * does, and on SIGTERM (or Ctrl-C) stops accepting requests, finishes the ones in flight (up to
 * --drain-timeout), then exits.
 */
import { parseArgs } from 'node:util';

import { intFlag, numFlag } from '../args.js';
import { EXIT, UsageError } from '../errors.js';
import { RANDOM_WEIGHTS_NOTICE, parseBackend } from '../model.js';
import { Engine, LoadError } from '../serve/engine.js';
import { isLoopbackName } from '../serve/security.js';
import { createServer, modelIdOf, type ServerConfig } from '../serve/server.js';

export const SERVE_HELP = `owlet serve [options]   an OpenAI-compatible HTTP server (POST /v1/chat/completions)

  --model DIR_OR_URL         checkpoint folder (default: the bundled model)
  --backend NAME             auto | webgpu | wasm | cpu | tensorflow (default auto)
  --dtype D                  language-model weights: fp32 | fp16 | q8 | q4 (default auto = fp32)
  --host ADDR                address to bind (default 127.0.0.1; anything else needs --api-key)
  --port N                   default 8080 (0: any free port)
  --api-key KEY              required on every route but /health (or set OWLET_API_KEY)
  --max-queue N              requests waiting for the engine before 503 (default 64)
  --max-body-bytes N         request body limit (default 20971520 = 20 MiB)
  --max-images N             images per request (default 4)
  --cors-origin ORIGIN       allow a browser origin (repeat; * = any); CORS is off without it
  --allowed-host NAME        accept this Host header too (a reverse proxy's name; repeat)
  --allowed-media-domains H  fetch http(s) image URLs from host H (repeat or comma-separate);
                             without it only data: URLs are accepted
  --served-model-name NAME   the model id clients use (default: the model folder's name)
  --sse-ping-interval S      SSE keep-alive comment after S idle seconds (default 15)
  --request-timeout S        time to receive a whole request (default 300)
  --drain-timeout S          on SIGTERM, wait this long for requests in flight (default 30)
  --quiet                    no progress or notices on stderr`;

const DTYPES = ['auto', 'fp32', 'fp16', 'q8', 'q4'] as const;

/** Defaults of checklist §7.4. */
export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8080,
  maxQueue: 64,
  maxBodyBytes: 20 * 1024 * 1024,
  maxImages: 4,
  maxPixels: 50_000_000,
  mediaTimeoutMs: 5000,
  ssePingIntervalS: 15,
  requestTimeoutS: 300,
  drainTimeoutS: 30,
} as const;

function list(values: string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
}

export async function serveCommand(argv: string[], signal: AbortSignal): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: 'string' },
      backend: { type: 'string' },
      dtype: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string' },
      'max-queue': { type: 'string' },
      'max-body-bytes': { type: 'string' },
      'max-images': { type: 'string' },
      'cors-origin': { type: 'string', multiple: true },
      'allowed-host': { type: 'string', multiple: true },
      'allowed-media-domains': { type: 'string', multiple: true },
      'served-model-name': { type: 'string' },
      'sse-ping-interval': { type: 'string' },
      'request-timeout': { type: 'string' },
      'drain-timeout': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${SERVE_HELP}\n`);
    return EXIT.OK;
  }
  const backend = parseBackend(values.backend);
  const dtype = values.dtype;
  if (dtype !== undefined && !DTYPES.includes(dtype as (typeof DTYPES)[number]))
    throw new UsageError(`unknown --dtype ${JSON.stringify(dtype)}`, `use one of ${DTYPES.join(', ')}`);
  const quiet = values.quiet === true;
  const host = values.host ?? SERVE_DEFAULTS.host;
  if (host.trim() === '') throw new UsageError('--host is empty');
  const port = intFlag('port', values.port, 0) ?? SERVE_DEFAULTS.port;
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const apiKey = values['api-key'] ?? (process.env.OWLET_API_KEY || undefined);
  if (apiKey !== undefined && apiKey.trim().length < 8)
    throw new UsageError('--api-key must be at least 8 characters', 'use a long random key, e.g. openssl rand -hex 24');
  if (!isLoopbackName(host) && !apiKey) {
    throw new UsageError(
      `--host ${host} makes the server reachable from other machines, so it needs an API key`,
      'add --api-key KEY (or set OWLET_API_KEY), or bind to 127.0.0.1',
    );
  }
  const corsOrigins = list(values['cors-origin']);
  for (const o of corsOrigins) {
    if (o === '*') continue;
    let ok = false;
    try {
      const u = new URL(o);
      ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === o;
    } catch {
      ok = false;
    }
    if (!ok)
      throw new UsageError(
        `--cors-origin ${o} is not an origin`,
        'give scheme://host[:port], e.g. http://localhost:5173',
      );
  }
  const secondsFlag = (name: string, v: string | undefined, dflt: number) =>
    numFlag(name, v, (n) => n > 0 && n <= 86_400, 'a number of seconds in (0, 86400]') ?? dflt;
  const cfg: ServerConfig = {
    host,
    ...(apiKey ? { apiKey } : {}),
    maxBodyBytes: intFlag('max-body-bytes', values['max-body-bytes'], 1024) ?? SERVE_DEFAULTS.maxBodyBytes,
    maxImages: intFlag('max-images', values['max-images'], 0) ?? SERVE_DEFAULTS.maxImages,
    maxPixels: SERVE_DEFAULTS.maxPixels,
    corsOrigins,
    allowedHosts: list(values['allowed-host']),
    allowedMediaDomains: list(values['allowed-media-domains']).map((h) => h.toLowerCase()),
    mediaTimeoutMs: SERVE_DEFAULTS.mediaTimeoutMs,
    ssePingIntervalMs:
      secondsFlag('sse-ping-interval', values['sse-ping-interval'], SERVE_DEFAULTS.ssePingIntervalS) * 1000,
    requestTimeoutMs: secondsFlag('request-timeout', values['request-timeout'], SERVE_DEFAULTS.requestTimeoutS) * 1000,
    ...(values['served-model-name'] ? { servedModelName: values['served-model-name'] } : {}),
    log: (line) => process.stderr.write(`owlet serve: ${line}\n`),
  };
  const drainMs = secondsFlag('drain-timeout', values['drain-timeout'], SERVE_DEFAULTS.drainTimeoutS) * 1000;
  const maxQueue = intFlag('max-queue', values['max-queue'], 0) ?? SERVE_DEFAULTS.maxQueue;
  const log = cfg.log;
  const info = (line: string) => {
    if (!quiet) log(line);
  };

  const engine = new Engine({
    ...(values.model !== undefined ? { model: values.model } : {}),
    backend,
    ...(dtype !== undefined ? { dtype: dtype as (typeof DTYPES)[number] } : {}),
    quiet,
    maxQueue,
    log,
  });
  const server = await createServer(cfg, engine);
  const { app } = server;

  // Shutdown: the first SIGTERM / SIGINT drains, a second one stops at once.
  let stopRequested: () => void = () => {};
  const stop = new Promise<void>((r) => (stopRequested = r));
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals === 1) stopRequested();
    else {
      log('second signal: stopping now');
      engine.cancelAll({
        status: 503,
        type: 'unavailable_error',
        code: null,
        param: null,
        message: 'The server is shutting down',
      });
    }
  };
  process.on('SIGTERM', onSignal);
  signal.addEventListener('abort', onSignal);
  const onSigint = () => onSignal();
  // main.ts turns the first Ctrl-C into `signal`; later ones come here.
  const laterSigint = () => process.on('SIGINT', onSigint);
  signal.addEventListener('abort', laterSigint, { once: true });

  try {
    let address: string;
    try {
      address = await app.listen({ host, port });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EADDRINUSE') throw new UsageError(`port ${port} on ${host} is in use`, 'pick another --port');
      if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND')
        throw new UsageError(`cannot bind to --host ${host}: ${err.message}`);
      if (err.code === 'EACCES')
        throw new UsageError(`no permission to bind ${host}:${port}`, 'use a --port above 1023');
      throw e;
    }
    log(`listening on ${address} (loading the model)`);
    engine.start();
    const loaded = await Promise.race([engine.ready, stop.then(() => null)]);
    if (loaded) {
      const id = modelIdOf(loaded, cfg.servedModelName);
      log(
        `model ${id} ready in ${(loaded.load_ms / 1000).toFixed(1)} s on ${loaded.backend}${loaded.dtype !== 'auto' ? `, ${loaded.dtype} weights` : ''} (context ${loaded.context_window} tokens)${apiKey ? '; API key required' : ''}`,
      );
      if (loaded.random_weights) info(RANDOM_WEIGHTS_NOTICE);
      await stop;
    }
    log('shutting down: finishing the requests in flight');
    server.startDraining();
    const timer = setTimeout(() => {
      log(`drain timeout (${drainMs / 1000} s): stopping the requests still running`);
      engine.cancelAll({
        status: 503,
        type: 'unavailable_error',
        code: null,
        param: null,
        message: 'The server is shutting down',
      });
    }, drainMs);
    await Promise.all([app.close(), engine.idle()]);
    clearTimeout(timer);
    await engine.close();
    log('stopped');
    return EXIT.OK;
  } catch (e) {
    await app.close().catch(() => {});
    await engine.close().catch(() => {});
    if (e instanceof LoadError) {
      if (e.exitCode === EXIT.BAD_INPUT) throw new UsageError(e.message);
      throw new Error(e.message.replace(/^internal error: /, ''));
    }
    throw e;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSigint);
    signal.removeEventListener('abort', onSignal);
  }
}
