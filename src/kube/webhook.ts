// The injector's HTTPS server: POST /inject and /inject/namespace (AdmissionReview v1), GET
// /healthz and /readyz. The certificate can be swapped while it runs: new handshakes get the new
// one, connections already open keep theirs.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { boundConnections, CLIENT_TIMEOUT_MS, listenAdmin, STALLED_CLIENT_OPTIONS } from '../admin/admin-server.js';
import { readBody } from '../admin/request-body.js';
import type { KeyPair } from './certificates.js';
import type { InjectorOptions } from './inject.js';
import { answerReview } from './review.js';

/**
 * The API server sends one pod at a time; etcd refuses objects over 1.5 MiB, so a review bigger
 * than this is not a pod the API server could store.
 */
const MAX_BODY_BYTES = 2 * 1024 * 1024;

/**
 * Review bodies held at once, across every request being read: a few thousand ordinary pods, or
 * eight of the largest. Past it a review is answered 503 at once, so that senders of large bodies
 * cannot make the injector outgrow its memory limit.
 */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/** Connections open at once (about 35 KB each); past it a new one is closed on arrival. */
const MAX_CONNECTIONS = 1_000;
/** On close, connections still open after this are cut (a kept-alive one may never go idle). */
const CLOSE_GRACE_MS = 5_000;

export interface Webhook {
  server: Server;
  address: string;
  /** From the next handshake on, present this pair. The first call makes /readyz answer 200. */
  setCertificate(pair: KeyPair): void;
  /** Stops accepting; requests under way are answered. */
  close(): Promise<void>;
}

/**
 * `placeholder` is presented until the first setCertificate: a self-signed pair, enough for the
 * kubelet's probes (they do not verify) while the real certificate is being fetched.
 */
export async function startWebhook(listen: string, placeholder: KeyPair, options: InjectorOptions, log: Logger): Promise<Webhook> {
  let ready = false;
  const budget = { free: MAX_BUFFERED_BYTES };
  const server = createServer(
    {
      cert: placeholder.cert,
      key: placeholder.key,
      // The API server gives up after the webhook's timeoutSeconds (5): a client slower than
      // CLIENT_TIMEOUT_MS to finish its TLS handshake, or to send its request, is cut.
      handshakeTimeout: CLIENT_TIMEOUT_MS,
      ...STALLED_CLIENT_OPTIONS,
    },
    (req, res) => handle(req, res, () => ready, budget, options, log),
  );
  boundConnections(server, MAX_CONNECTIONS);
  const address = await listenAdmin(server, listen);
  return {
    server,
    address,
    setCertificate(pair) {
      server.setSecureContext({ cert: pair.cert, key: pair.key });
      ready = true;
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS).unref();
      }),
  };
}

const ROUTES: Record<string, boolean> = { '/inject': false, '/inject/namespace': true };

function handle(req: IncomingMessage, res: ServerResponse, ready: () => boolean, budget: { free: number }, options: InjectorOptions, log: Logger): void {
  const path = (req.url ?? '/').split('?')[0]!;
  const text = (status: number, body: string, headers: Record<string, string> = {}) =>
    res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(`${body}\n`);
  if (path === '/healthz' || path === '/readyz') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return void text(405, 'method not allowed', { allow: 'GET, HEAD' });
    if (path === '/healthz') return void text(200, 'ok');
    return void (ready() ? text(200, 'ready') : text(503, 'not ready: no serving certificate yet'));
  }
  const namespaceOptedIn = ROUTES[path];
  if (namespaceOptedIn === undefined) return void text(404, 'not found');
  if (req.method !== 'POST') return void text(405, 'method not allowed: POST an AdmissionReview', { allow: 'POST' });
  readBody(
    req,
    res,
    { maxBytes: MAX_BODY_BYTES, budget },
    (body) => {
      const answer = answerReview(body.toString('utf8'), namespaceOptedIn, options);
      log.info(
        { namespace: answer.namespace, pod: answer.pod, injected: answer.injected, ...(answer.reason ? { reason: answer.reason } : {}) },
        answer.injected ? 'injected' : 'not injected',
      );
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer.review));
    },
    ({ status, bytes }) => {
      const tooLarge = status === 413;
      log.info({ bytes }, tooLarge ? 'not injected: review too large' : 'not injected: too many review bytes being read at once');
      const body = tooLarge ? `an AdmissionReview over ${MAX_BODY_BYTES} bytes is not a pod sluice injects` : 'busy: too many reviews being read; try again';
      res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' }).end(`${body}\n`);
    },
  );
}
