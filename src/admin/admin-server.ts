// HTTP for operators: /metrics (Prometheus), /healthz (the process answers), /readyz (it is
// serving and will answer every Acquire: from the store, or by on_store_failure while the store
// is away), /storez (the store answers). A Redis outage must not take every pod out of service
// when the policy says to fail open, so readiness does not depend on the store; /storez does.
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Metrics } from './metrics.js';
import type { StoreHealth } from '../guard/guarded-store.js';

export interface AdminOptions {
  metrics: Metrics;
  ready: () => boolean;
  storeUp: () => boolean;
  /** Which policy is served and whether its last reload was refused; null when it is not watched. */
  policy: () => string | null;
  /** Runs the decision script against the store now. */
  checkStore: () => Promise<StoreHealth>;
}

/** A client that has not sent a whole request this long after it connected (or after its last one) is cut. */
export const CLIENT_TIMEOUT_MS = 10_000;

/**
 * Options for node's HTTP and HTTPS servers that other pods can reach (the injected sidecar's
 * admin port, the injector): stalled clients are cut within CLIENT_TIMEOUT_MS, checked every
 * second (node's default, 30 s, lets a 10 s timeout run 40 s).
 */
export const STALLED_CLIENT_OPTIONS = { requestTimeout: CLIENT_TIMEOUT_MS, headersTimeout: CLIENT_TIMEOUT_MS, connectionsCheckingInterval: 1_000 } as const;

/**
 * At most `max` connections, the next closed on arrival, and a connection that sends nothing for
 * CLIENT_TIMEOUT_MS (no request yet, or kept alive and left) closed: idle connections held open
 * cost memory and file descriptors until the process is killed.
 */
export function boundConnections(server: Server, max: number): void {
  server.maxConnections = max;
  server.setTimeout(CLIENT_TIMEOUT_MS);
}

/** Connections to the admin port: Prometheus and the kubelet's probes need a handful (about 4 KB each). */
const MAX_ADMIN_CONNECTIONS = 1_000;

export function createAdminServer({ metrics, ready, storeUp, policy, checkStore }: AdminOptions): Server {
  // One check at a time: a burst of scrapes shares the answer of the one under way.
  let checking: Promise<StoreHealth> | null = null;
  const server = createServer(STALLED_CLIENT_OPTIONS, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ok = ready();
      const store = storeUp() ? 'store up' : 'store down, deciding by on_store_failure';
      const served = policy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(`${ok ? 'ready' : 'not ready'}; ${store}${served ? `; ${served}` : ''}\n`);
    } else if (path === '/storez') {
      checking ??= checkStore().finally(() => (checking = null));
      checking.then(({ up, text }) => res.writeHead(up ? 200 : 503, { 'content-type': 'text/plain' }).end(`${text}\n`));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  boundConnections(server, MAX_ADMIN_CONNECTIONS);
  return server;
}

/**
 * Listens on `host:port`, or on every interface for `:port` (IPv6 and IPv4 where the host has
 * them); resolves with the bound address (port 0 picks a free one).
 */
export function listenAdmin(server: NetServer, address: string): Promise<string> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(colon + 1));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const ready = () => {
      server.off('error', reject);
      const bound = server.address() as AddressInfo;
      resolve(`${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`);
    };
    if (host === '') server.listen(port, ready);
    else server.listen(port, host, ready);
  });
}
