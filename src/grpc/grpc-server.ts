// One gRPC server on one address: sluice.v1, Envoy's RLS v3, grpc.health.v1 and server reflection.
// sluice owns the listening socket and hands each accepted connection to grpc-js (its connection
// injector: the same socket, no proxy hop), so that it can cap connections and close those that
// never speak HTTP/2, which grpc-js has no setting for.
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import { servedPackage, serviceOf } from './proto.js';
import { CALL_OPTIONS } from './server-options.js';
import { sluiceService, type ServiceContext } from './sluice-service.js';
import { decodedInHandler } from './undecodable.js';
import { ENVOY_SERVICE, envoyService } from './envoy-service.js';
import type { EnvoyConfig } from '../envoy/config.js';
import type { EnvoyStats } from '../envoy/stats.js';
import type { ConnectionLimits } from '../config/policy.js';

export const SLUICE_SERVICE = 'sluice.v1.RateLimiter';
export { ENVOY_SERVICE };

/**
 * The names grpc.health.v1 answers for: the server as a whole (""), each service, and
 * `ratelimit`, which envoyproxy/ratelimit registers and the probes written for it ask about.
 */
export const HEALTH_NAMES = ['', SLUICE_SERVICE, ENVOY_SERVICE, 'ratelimit'] as const;

export interface GrpcServer {
  server: Server;
  /** The socket sluice listens on; its connections go to `server` through `injector`. */
  listener: NetServer;
  /**
   * Holds the connections' sessions. With channelz off, grpc-js tracks them only here: the
   * server's own shutdown neither drains nor cuts them, so this must.
   */
  injector: ReturnType<Server['createConnectionInjector']>;
  health: HealthImplementation;
  /** The address actually bound (the port filled in when 0 was asked for). */
  address: string;
}

/** What the Envoy service decides with: the config (read per request: it is reloaded) and the statistics. */
export interface EnvoyServing {
  config: () => EnvoyConfig | null;
  stats: EnvoyStats;
  /** Whether its health names start SERVING (see setEnvoyServing). */
  ready: boolean;
}

/** The names of the Envoy service among them: its own, and upstream's `ratelimit`. */
export const ENVOY_HEALTH_NAMES: readonly string[] = [ENVOY_SERVICE, 'ratelimit'];

/** Reports the Envoy service SERVING or NOT_SERVING (envoy.require_domains: while no domain is loaded). */
export function setEnvoyServing(grpc: GrpcServer, serving: boolean): void {
  for (const name of ENVOY_HEALTH_NAMES) grpc.health.setStatus(name, serving ? 'SERVING' : 'NOT_SERVING');
}

/** Without `envoy`, ShouldRateLimit answers FAILED_PRECONDITION. */
export async function startGrpcServer(listen: string, limits: ConnectionLimits, ctx: ServiceContext, envoy: EnvoyServing | null = null): Promise<GrpcServer> {
  const server = new Server({
    ...CALL_OPTIONS,
    'grpc.max_concurrent_streams': limits.maxStreamsPerConnection,
    'grpc.max_connection_idle_ms': limits.idleMs,
    'grpc.max_connection_age_ms': limits.maxAgeMs,
    'grpc.max_connection_age_grace_ms': limits.maxAgeGraceMs,
    'grpc.keepalive_time_ms': limits.keepaliveMs,
    'grpc.keepalive_timeout_ms': limits.keepaliveTimeoutMs,
  });
  // A stream's bad message ends it through the handler, which is still writing answers.
  server.addService(decodedInHandler(serviceOf(servedPackage, SLUICE_SERVICE), 'AcquireStream'), sluiceService(ctx));
  server.addService(
    serviceOf(servedPackage, ENVOY_SERVICE),
    envoyService({
      decider: ctx.decider,
      metrics: ctx.metrics,
      admission: ctx.admission,
      warn: ctx.warn,
      tracing: ctx.tracing,
      config: envoy?.config ?? (() => null),
      stats: envoy?.stats ?? null,
    }),
  );
  const envoyHealth = envoy?.ready === false ? 'NOT_SERVING' : 'SERVING';
  const health = new HealthImplementation(Object.fromEntries(HEALTH_NAMES.map((name) => [name, ENVOY_HEALTH_NAMES.includes(name) ? envoyHealth : 'SERVING'])));
  health.addToServer(server);
  new ReflectionService(servedPackage).addToServer(server);
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  // Past maxConnections, node closes each new connection as soon as it is accepted.
  const listener = createServer({ noDelay: true }, (socket) => {
    closeUnlessHandshaken(socket, limits.handshakeTimeoutMs);
    injector.injectConnection(socket);
  });
  listener.maxConnections = limits.maxConnections;
  listener.on('drop', () => ctx.metrics.connectionRefused());
  const port = await listenOn(listener, listen);
  const address = listen.startsWith('unix:') ? listen : `${listen.slice(0, listen.lastIndexOf(':'))}:${port}`;
  return { server, listener, injector, health, address };
}

/** The HTTP/2 client preface (24 bytes) and the header of the SETTINGS frame that must follow it. */
const HANDSHAKE_BYTES = 24 + 9;

/**
 * Node's HTTP/2 server waits for a client's preface forever, so a connection that opens TCP and
 * then says nothing (or only the preface) would hold its socket and buffers until the peer left.
 * bytesRead counts what the socket received even though HTTP/2 reads it natively.
 */
function closeUnlessHandshaken(socket: Socket, timeoutMs: number): void {
  const timer = setTimeout(() => {
    if (socket.bytesRead < HANDSHAKE_BYTES) socket.destroy();
  }, timeoutMs);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

function listenOn(listener: NetServer, listen: string): Promise<number> {
  return new Promise((resolve, reject) => {
    listener.once('error', reject);
    const ready = () => {
      listener.off('error', reject);
      const bound = listener.address();
      resolve(typeof bound === 'object' && bound ? bound.port : 0);
    };
    if (listen.startsWith('unix:')) {
      listener.listen(listen.slice('unix:'.length), ready);
      return;
    }
    const colon = listen.lastIndexOf(':');
    const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    listener.listen({ host, port: Number(listen.slice(colon + 1)) }, ready);
  });
}

/** Stops taking calls, lets those under way finish for up to graceMs, then cuts the rest. */
export function drainGrpcServer(grpc: GrpcServer, graceMs: number): Promise<void> {
  for (const name of HEALTH_NAMES) grpc.health.setStatus(name, 'NOT_SERVING');
  grpc.listener.close();
  // GOAWAY to every connection now; calls still open after graceMs are cut.
  grpc.injector.drain(graceMs);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      grpc.server.forceShutdown();
      grpc.injector.destroy();
      resolve();
    }, graceMs);
    grpc.server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
