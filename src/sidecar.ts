// Assembles a running sidecar from a validated policy: store, decider, gRPC, admin HTTP.
import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import type { Policy } from './config/policy.js';
import { Decider } from './decide/decider.js';
import { Metrics } from './admin/metrics.js';
import { createAdminServer, listenAdmin } from './admin/admin-server.js';
import { drainGrpcServer, startGrpcServer } from './grpc/grpc-server.js';
import { MemoryStore } from './store/memory/memory-store.js';
import { RedisStore } from './store/redis/redis-store.js';
import type { Store } from './store/store.js';
import { throttledWarn } from './log.js';
import { Leases } from './lease/leases.js';

/** How often expired and idle leases are given back. */
const LEASE_TICK_MS = 50;

/** Open permits this process remembers; the oldest go first past it. */
export const MAX_PERMITS = 100_000;

export interface Sidecar {
  address: string;
  adminAddress: string | null;
  /** Drains gRPC (in-flight calls finish within the grace period), then closes the store. */
  stop(): Promise<void>;
}

export function createStore(policy: Policy): Store {
  const redis = policy.store.redis;
  return redis ? new RedisStore({ url: redis.url, prefix: redis.prefix }) : new MemoryStore({ maxKeys: policy.store.maxKeys });
}

/** Keys with lease state at once; the least recently used goes first. */
export const MAX_LEASED_KEYS = 100_000;

export async function startSidecar(policy: Policy, log: Logger): Promise<Sidecar> {
  const store = createStore(policy);
  // Leases pay off only when the store is across a network; the memory store is already local.
  const leases = policy.store.redis
    ? new Leases(store, { maxKeys: MAX_LEASED_KEYS, onRefundError: (err) => log.warn({ err }, 'could not give leased budget back') })
    : null;
  const decider = new Decider(store, { maxPermits: MAX_PERMITS, leases });
  const sweeper = setInterval(() => decider.permits.sweep(), 10_000).unref();
  const leaseTicker = leases ? setInterval(() => void leases.tick(), LEASE_TICK_MS).unref() : undefined;
  const metrics = new Metrics({ permits: () => decider.permits.size, leases: () => leases?.figures ?? null });
  let serving = false;

  let admin: HttpServer | null = null;
  let grpc;
  try {
    grpc = await startGrpcServer(policy.server.listen, {
      decider,
      resources: () => policy.resources,
      metrics,
      warn: throttledWarn(log, 5_000),
    });
    let adminAddress: string | null = null;
    if (policy.server.admin) {
      admin = createAdminServer({ metrics, ready: () => serving });
      adminAddress = await listenAdmin(admin, policy.server.admin);
    }
    serving = true;
    const running = grpc;
    return {
      address: running.address,
      adminAddress,
      async stop() {
        serving = false;
        await drainGrpcServer(running, policy.server.shutdownGraceMs);
        clearInterval(sweeper);
        clearInterval(leaseTicker);
        admin?.close();
        await decider.close();
      },
    };
  } catch (err) {
    grpc?.server.forceShutdown();
    admin?.close();
    clearInterval(sweeper);
    clearInterval(leaseTicker);
    await decider.close();
    throw err;
  }
}
