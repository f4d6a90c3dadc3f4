/**
 * The request gate (checklist §7.4, B33, B34), run before routing:
 * - Host header: a server bound to loopback answers only requests addressed to a loopback name
 *   (or to a name given with --allowed-host): a DNS-rebinding page gets 403;
 * - Origin header: a browser request from an origin that is neither loopback nor a --cors-origin
 *   gets 403 (CORS alone would only hide the answer, not stop the work);
 * - API key: with --api-key, every route but /health needs `Authorization: Bearer KEY` or
 *   `X-Api-Key: KEY` (compared in constant time), else 401.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import { ApiError } from './errors.js';

/** Loopback host names and addresses (127.0.0.0/8, ::1, localhost). */
export function isLoopbackName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || h === '[::1]' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (!v4) return false;
  return v4.slice(1).every((x) => Number(x) <= 255);
}

/** The host name of a Host header value (`[::1]:8080` → `[::1]`, `a.b:80` → `a.b`). */
export function hostOfHeader(value: string): string {
  const v = value.trim().toLowerCase();
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    return end < 0 ? v : v.slice(0, end + 1);
  }
  const colon = v.indexOf(':');
  return colon < 0 ? v : v.slice(0, colon);
}

export interface GateOptions {
  /** The server listens on loopback only. */
  loopbackBind: boolean;
  /** Extra Host names accepted (a reverse proxy's public name). */
  allowedHosts: readonly string[];
  /** --cors-origin values ('*' = any). */
  corsOrigins: readonly string[];
  apiKey?: string;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class RequestGate {
  private readonly keyDigest: Buffer | null;
  private readonly hosts: Set<string>;

  constructor(private readonly o: GateOptions) {
    this.keyDigest = o.apiKey ? digest(o.apiKey) : null;
    this.hosts = new Set(o.allowedHosts.map((h) => hostOfHeader(h)));
  }

  get requiresKey(): boolean {
    return this.keyDigest !== null;
  }

  /** Throws the ApiError to answer with, or returns when the request may go on. */
  check(req: { method: string; url: string; headers: Record<string, string | string[] | undefined> }): void {
    const host = typeof req.headers.host === 'string' ? hostOfHeader(req.headers.host) : '';
    if (this.o.loopbackBind || this.hosts.size > 0) {
      if (!isLoopbackName(host) && !this.hosts.has(host)) {
        throw new ApiError(
          403,
          `Host ${JSON.stringify(host)} is not allowed: this server answers requests for localhost${this.hosts.size ? ` and ${[...this.hosts].join(', ')}` : ''} (--allowed-host adds a name)`,
          'permission_error',
          'host_not_allowed',
        );
      }
    }
    const origin = req.headers.origin;
    if (typeof origin === 'string' && !this.originAllowed(origin)) {
      throw new ApiError(
        403,
        `Origin ${JSON.stringify(origin)} is not allowed (--cors-origin allows a browser origin)`,
        'permission_error',
        'origin_not_allowed',
      );
    }
    const path = req.url.split('?')[0] ?? '';
    const isPreflight = req.method === 'OPTIONS' && this.o.corsOrigins.length > 0;
    if (this.keyDigest && path !== '/health' && !isPreflight && !this.keyOk(req.headers)) {
      throw new ApiError(
        401,
        'Invalid or missing API key: send it as "Authorization: Bearer KEY" or "X-Api-Key: KEY"',
        'authentication_error',
        'invalid_api_key',
        null,
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
  }

  originAllowed(origin: string): boolean {
    if (this.o.corsOrigins.includes('*') || this.o.corsOrigins.includes(origin)) return true;
    try {
      const u = new URL(origin);
      return (u.protocol === 'http:' || u.protocol === 'https:') && isLoopbackName(u.hostname);
    } catch {
      return false; // "null" (sandboxed frames, file:) and junk
    }
  }

  private keyOk(headers: Record<string, string | string[] | undefined>): boolean {
    const want = this.keyDigest;
    if (!want) return true;
    const given: string[] = [];
    const auth = headers.authorization;
    if (typeof auth === 'string') {
      const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
      if (m?.[1]) given.push(m[1].trim());
    }
    const x = headers['x-api-key'];
    if (typeof x === 'string') given.push(x.trim());
    let ok = false;
    for (const g of given) if (timingSafeEqual(digest(g), want)) ok = true;
    return ok;
  }
}
