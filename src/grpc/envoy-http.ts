// envoyproxy/ratelimit's HTTP port, served on envoy.http_listen. POST /json takes a
// RateLimitRequest in protobuf's JSON mapping and answers the RateLimitResponse in it, decided by
// the very path ShouldRateLimit takes over gRPC (envoyDecisions: the same checks, admission and
// limiter). GET /healthcheck answers 200 "OK" while the Envoy service is SERVING (grpc.health.v1
// `ratelimit`), and 500 otherwise. The status codes are upstream's: 200 OK, 429 OVER_LIMIT, 400
// for a body that is not a valid request. Where upstream answers 400 to every error, sluice says
// which it is: 503 when the store or the sidecar cannot decide now, 500 for its own fault, and
// 413 for a body past MAX_JSON_BYTES.
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { status } from '@grpc/grpc-js';
import { boundConnections, listenAdmin, STALLED_CLIENT_OPTIONS } from '../admin/admin-server.js';
import { readBody } from '../admin/request-body.js';
import { envoyDecisions, statusOf, type EnvoyServiceContext, type WireRequest } from './envoy-service.js';
import { envoyMessages } from './proto.js';
import { readMessage, writeMessage } from './protojson.js';
import { invalid } from './request-error.js';

/** One /json body at most: a request at every cap (64 descriptors of 32 entries) fits, written out. */
export const MAX_JSON_BYTES = 1024 * 1024;

/**
 * Bytes of /json bodies held at once, from the first byte read to the answer: thousands of
 * ordinary requests (a few hundred bytes each), or eight of the largest. Past it a body is
 * answered 503 at once.
 */
export const MAX_HELD_BYTES = 8 * MAX_JSON_BYTES;

/** Connections open at once (a few KB each); past it a new one is closed on arrival. */
const MAX_CONNECTIONS = 1_000;

/** gRPC statuses as HTTP ones; any other is 500. */
const HTTP_STATUS: Partial<Record<status, number>> = {
  [status.INVALID_ARGUMENT]: 400,
  [status.FAILED_PRECONDITION]: 400,
  [status.RESOURCE_EXHAUSTED]: 503,
  [status.UNAVAILABLE]: 503,
};

export interface EnvoyHttpOptions extends EnvoyServiceContext {
  /** Whether the Envoy service is SERVING, as grpc.health.v1 reports `ratelimit`. */
  healthy: () => boolean;
}

export interface EnvoyHttp {
  server: Server;
  /** The address bound (the port filled in when 0 was asked for). */
  address: string;
  /**
   * From now on /json is answered 503; resolves once no /json is being decided, or after
   * graceMs. The port still answers meanwhile (/healthcheck says 500 by then).
   */
  drain(graceMs: number): Promise<void>;
  /** Stops listening and closes every connection. */
  close(): void;
}

export async function startEnvoyHttp(listen: string, options: EnvoyHttpOptions): Promise<EnvoyHttp> {
  const decide = envoyDecisions(options);
  const budget = { free: MAX_HELD_BYTES };
  let draining = false;
  let deciding = 0;
  let decided: (() => void) | null = null;

  const json = (req: IncomingMessage, res: ServerResponse) => {
    if (draining) return void text(res, 503, 'the sidecar is shutting down', { connection: 'close' });
    readBody(
      req,
      res,
      { maxBytes: MAX_JSON_BYTES, budget },
      (body) => {
        let wire: WireRequest;
        try {
          wire = readRequest(body);
        } catch (err) {
          return void refuse(res, err, options);
        }
        deciding++;
        decide(wire)
          .then(
            (response) => {
              // Upstream's codes: 429 when over the limit, 500 for an answer with no code.
              const code = response.overall_code === 'OVER_LIMIT' ? 429 : response.overall_code === 'OK' ? 200 : 500;
              res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(writeMessage(envoyMessages.response, response)));
            },
            (err) => refuse(res, err, options),
          )
          .finally(() => {
            if (--deciding === 0) decided?.();
          });
      },
      ({ status: code }) => {
        const why = code === 413 ? `a request body over ${MAX_JSON_BYTES} bytes` : 'too many request bytes being read at once; try again';
        text(res, code, why, { connection: 'close' });
      },
    );
  };

  const server = createServer(STALLED_CLIENT_OPTIONS, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/json') {
      if (req.method === 'POST') return json(req, res);
      return void text(res, 405, 'POST a RateLimitRequest in JSON', { allow: 'POST' });
    }
    if (path === '/healthcheck') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return void text(res, 405, 'GET /healthcheck', { allow: 'GET, HEAD' });
      // Upstream's answers, byte for byte: "OK", or a 500 with no body.
      if (options.healthy()) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('OK');
      else res.writeHead(500).end();
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
  });
  boundConnections(server, MAX_CONNECTIONS);
  const address = await listenAdmin(server, listen);
  return {
    server,
    address,
    drain(graceMs) {
      draining = true;
      if (deciding === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        decided = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}

/** A /json body as the RateLimitRequest proto-loader would have decoded from the wire. */
function readRequest(body: Buffer): WireRequest {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw invalid('request body: not UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw invalid(`request body: not JSON (${(err as Error).message})`);
  }
  return readMessage(envoyMessages.request, json) as unknown as WireRequest;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The answer to a request refused or not decided: its status's HTTP code, and its message. */
function refuse(res: ServerResponse, err: unknown, ctx: EnvoyHttpOptions): void {
  const { code, details } = statusOf(err, ctx);
  text(res, HTTP_STATUS[code] ?? 500, details);
}

/** As Go's http.Error writes it, upstream's "Bad Request" first, then what is wrong. */
function text(res: ServerResponse, code: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', ...headers }).end(`${STATUS_CODES[code]}: ${message}\n`);
}
