// One gRPC server on one address: sluice.v1, Envoy's RLS v3, grpc.health.v1 and server reflection.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import { servedPackage, serviceOf } from './proto.js';
import { sluiceService, type ServiceContext } from './sluice-service.js';
import { ENVOY_SERVICE, envoyService } from './envoy-service.js';
import type { EnvoyConfig } from '../envoy/config.js';

export const SLUICE_SERVICE = 'sluice.v1.RateLimiter';
export { ENVOY_SERVICE };

export interface GrpcServer {
  server: Server;
  health: HealthImplementation;
  /** The address actually bound (the port filled in when 0 was asked for). */
  address: string;
}

/**
 * `envoyConfig` gives the Envoy config to decide with, read per request (it is reloaded); without
 * it, or when it answers null, ShouldRateLimit answers FAILED_PRECONDITION.
 */
export async function startGrpcServer(listen: string, ctx: ServiceContext, envoyConfig: (() => EnvoyConfig | null) | null = null): Promise<GrpcServer> {
  const server = new Server({
    // A sidecar's callers are on the same host; keep messages small and connections cheap.
    'grpc.max_receive_message_length': 64 * 1024,
  });
  server.addService(serviceOf(servedPackage, SLUICE_SERVICE), sluiceService(ctx));
  server.addService(
    serviceOf(servedPackage, ENVOY_SERVICE),
    envoyService({ decider: ctx.decider, metrics: ctx.metrics, admission: ctx.admission, warn: ctx.warn, config: envoyConfig ?? (() => null) }),
  );
  const health = new HealthImplementation({ '': 'SERVING', [SLUICE_SERVICE]: 'SERVING', [ENVOY_SERVICE]: 'SERVING' });
  health.addToServer(server);
  new ReflectionService(servedPackage).addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  const address = listen.startsWith('unix:') ? listen : `${listen.slice(0, listen.lastIndexOf(':'))}:${port}`;
  return { server, health, address };
}

/** Stops taking calls, lets those under way finish for up to graceMs, then cuts the rest. */
export function drainGrpcServer(grpc: GrpcServer, graceMs: number): Promise<void> {
  grpc.health.setStatus('', 'NOT_SERVING');
  grpc.health.setStatus(SLUICE_SERVICE, 'NOT_SERVING');
  grpc.health.setStatus(ENVOY_SERVICE, 'NOT_SERVING');
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      grpc.server.forceShutdown();
      resolve();
    }, graceMs);
    grpc.server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
