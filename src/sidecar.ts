// Assembles a running sidecar from a validated policy: store, decider, gRPC, admin HTTP.
import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import type { Policy, TracingOptions } from './config/policy.js';
import { Decider } from './decide/decider.js';
import { Metrics } from './admin/metrics.js';
import { createAdminServer, listenAdmin } from './admin/admin-server.js';
import { drainGrpcServer, setEnvoyServing, startGrpcServer } from './grpc/grpc-server.js';
import { startEnvoyHttp, type EnvoyHttp } from './grpc/envoy-http.js';
import { MemoryStore } from './store/memory/memory-store.js';
import { RedisStore } from './store/redis/redis-store.js';
import type { Store } from './store/store.js';
import { throttledWarn } from './log.js';
import { Leases } from './lease/leases.js';
import { GuardedStore } from './guard/guarded-store.js';
import { Admission } from './guard/admission.js';
import { FailurePolicy } from './guard/failure-policy.js';
import { StoreUnavailable } from './guard/store-unavailable.js';
import { randomBytes } from 'node:crypto';
import { EnvoyRuntime, type EnvoyConfigSource } from './envoy/runtime.js';
import { XdsRuntime } from './grpc/xds-runtime.js';
import { EnvoyStats } from './envoy/stats.js';
import type { EnvoyConfig } from './envoy/config.js';
import type { UpstreamEnvReport } from './config/upstream-env.js';
import { PolicyReloader } from './config/reload.js';
import type { Overrides } from './config/load.js';
import type { Tracing } from './trace/tracing.js';
import { MEMORY_STORE_SPAN, REDIS_STORE_SPAN } from './trace/span-names.js';

/** How often expired and idle leases are given back. */
const LEASE_TICK_MS = 50;

/** Open permits this process remembers; the oldest go first past it. */
export const MAX_PERMITS = 100_000;

export interface Sidecar {
  address: string;
  adminAddress: string | null;
  /** Where upstream's HTTP port (envoy.http_listen) is served; null when it is not. */
  httpAddress: string | null;
  /** Reads the policy file again soon (SIGHUP), once for a burst of calls; nothing without a file. */
  reloadPolicy(): void;
  /** Drains gRPC (in-flight calls finish within the grace period), then closes the store. */
  stop(): Promise<void>;
}

/** An address the sidecar cannot listen on: which server's, as the policy gives it, and why. */
export class ListenError extends Error {
  constructor(
    readonly server: 'grpc' | 'admin' | 'http',
    readonly address: string,
    /** The system's code: EADDRINUSE, EACCES, EADDRNOTAVAIL, ENOTFOUND... */
    readonly code: string | undefined,
    override readonly cause: Error,
  ) {
    super(`cannot listen on ${address}: ${cause.message}`);
    this.name = 'ListenError';
  }
}

/** `started`, with a failure to bind `address` (or to resolve its host) as a ListenError. */
async function listening<T>(server: ListenError['server'], address: string, started: Promise<T>): Promise<T> {
  try {
    return await started;
  } catch (err) {
    const { syscall, code } = err as NodeJS.ErrnoException;
    if (syscall === 'listen' || syscall === 'bind' || syscall === 'getaddrinfo') throw new ListenError(server, address, code, err as Error);
    throw err;
  }
}

/** Where the policy came from, so that it can be watched and reloaded. */
export interface PolicySource {
  file: string;
  env: Overrides;
}

export function createStore(policy: Policy): Store {
  const redis = policy.store.redis;
  if (!redis) return new MemoryStore({ maxKeys: policy.store.maxKeys });
  return new RedisStore({ ...redis, timeoutMs: policy.store.timeoutMs, expiryJitterMs: redis.expiryJitterMs });
}

/**
 * Hot keys with lease state (each leased key serves 40 or more requests a second, so 10,000 is
 * beyond what one process can serve), and cold keys whose request rate is tracked.
 */
export const MAX_LEASED_KEYS = 10_000;
export const MAX_TRACKED_KEYS = 100_000;

/** Store failures in a row that open the circuit, and how often it is probed while open. */
export const FAILURES_TO_OPEN = 5;
export const PROBE_EVERY_MS = 500;

/** Sidecars heartbeat this often; one not heard from for the ttl no longer counts. */
const HEARTBEAT_EVERY_MS = 2_000;
const HEARTBEAT_TTL_MS = 10_000;

/** How long a stream request waits for room among the decisions in flight before it is shed. */
export const STREAM_ROOM_WAIT_MS = 1_000;

/** At start, how long to wait for the store to answer before serving by policy anyway. */
const STARTUP_WAIT_MS = 2_000;

/** Throws EnvoyConfigError, before anything starts, when the Envoy config directory does not load. */
export async function startSidecar(policy: Policy, log: Logger, source: PolicySource | null = null): Promise<Sidecar> {
  // Envoy's rate limit service: the config files, watched and reloaded while the sidecar runs, or
  // the config an xDS management server sends. With envoy.require_domains it is not serving
  // (health, readiness) while the config holds no domain.
  let envoyChanged = (_config: EnvoyConfig) => {};
  const sourceOptions = { onChange: (config: EnvoyConfig) => envoyChanged(config), onRejected: () => envoyStats?.configLoaded(false) };
  const envoy: EnvoyConfigSource | null = policy.envoy
    ? policy.envoy.xds
      ? new XdsRuntime(policy.envoy, log, sourceOptions)
      : new EnvoyRuntime(policy.envoy, log, sourceOptions)
    : null;
  const envoyReady = () => !policy.envoy?.requireDomains || (envoy?.current.domains.size ?? 0) > 0;
  const warn = throttledWarn(log, 5_000);
  const tracing = policy.tracing ? await startTracing(policy.tracing, log) : null;
  const raw = createStore(policy);
  // Below the guard, a store span is the store's own time: a call the circuit keeps from the store has none.
  const traced = tracing ? tracing.traceStore(raw, policy.store.redis ? REDIS_STORE_SPAN : MEMORY_STORE_SPAN) : raw;
  let guarded: GuardedStore | null = null;
  let leases: Leases | null = null;
  let decider: Decider | null = null;
  const admission = new Admission(policy.server.maxInFlight, STREAM_ROOM_WAIT_MS);
  const metrics = new Metrics({
    admission: () => admission,
    permits: () => decider?.permits.size ?? 0,
    permitsEvicted: () => decider?.permits.evicted ?? 0,
    leases: () => leases?.figures ?? null,
    storeUp: () => (guarded ? (guarded.available ? 1 : 0) : 1),
    memoryScopesRefused: () => (raw instanceof MemoryStore ? raw.refusedScopes : 0) + (failurePolicy?.local.refusedScopes ?? 0),
  });
  metrics.registry.setDefaultLabels(policy.server.metricLabels);
  const envoyStats = policy.envoy ? new EnvoyStats(metrics.registry, policy.envoy.nearLimitRatio) : null;
  // config_dir has loaded by now; xDS has sent nothing yet.
  if (policy.envoy && !policy.envoy.xds) envoyStats?.configLoaded(true);
  if (policy.envoy?.upstreamEnv) logUpstreamEnv(log, policy.envoy.upstreamEnv);

  // A remote store is guarded: deadlines, a circuit breaker, each resource's failure policy, and
  // leases (they pay off only across a network; the memory store is already local).
  let failurePolicy: FailurePolicy | null = null;
  let heartbeat: NodeJS.Timeout | undefined;
  // Names this sidecar's heartbeat and its tickets in waiting lines.
  const sidecarId = randomBytes(8).toString('hex');
  if (policy.store.redis) {
    const store = new GuardedStore(traced, {
      failuresToOpen: FAILURES_TO_OPEN,
      probeEveryMs: PROBE_EVERY_MS,
      onFailure: (err) => {
        metrics.storeFailed(err.reason);
        warn({ reason: err.reason, err: err.message }, 'store call failed; deciding by on_store_failure');
      },
      onCircuit: (open) => {
        if (!open) {
          log.info('store circuit closed: the store answers again');
          return;
        }
        log.warn('store circuit open: decisions follow on_store_failure until it answers');
        // Requests waiting in line hear nothing from a store that is gone: they are answered now.
        decider?.waiters?.storeDown(new StoreUnavailable('circuit_open', 'store unavailable: circuit open after repeated failures'));
      },
    });
    guarded = store;
    const policyForFailures = new FailurePolicy({ maxKeys: policy.store.maxKeys, retryAfterMs: () => store.retryAfterMs });
    failurePolicy = policyForFailures;
    leases = new Leases(store, { maxLeasedKeys: MAX_LEASED_KEYS, maxTrackedKeys: MAX_TRACKED_KEYS, onRefundError: (err) => warn({ err }, 'could not give leased budget back') });
    const beat = () =>
      store.heartbeat(sidecarId, HEARTBEAT_TTL_MS).then(
        (sidecars) => (policyForFailures.sidecars = sidecars),
        () => undefined,
      );
    heartbeat = setInterval(beat, HEARTBEAT_EVERY_MS).unref();
    if (!(await answers(raw, STARTUP_WAIT_MS))) log.warn('the store does not answer yet: serving by on_store_failure until it does');
    await beat();
  }
  const store = guarded ?? traced;
  const active = new Decider(store, {
    maxPermits: MAX_PERMITS,
    leases,
    failurePolicy,
    onReconcileError: (err) => warn({ err }, 'could not undo what the store granted after a decision by on_store_failure'),
    waiting: { sidecarId, maxWaiters: policy.server.maxWaiters, observer: metrics },
  });
  decider = active;
  const sweeper = setInterval(() => active.permits.sweep(), 10_000).unref();
  const leaseTicker = leases ? setInterval(() => void leases?.tick(), LEASE_TICK_MS).unref() : undefined;
  let serving = false;
  let draining = false;
  // The resources served now: a reload swaps the whole map in one assignment.
  let resources = policy.resources;
  const reloader = source
    ? new PolicyReloader({
        ...source,
        served: policy,
        log,
        apply: (next) => {
          for (const name of resources.keys()) if (!next.has(name)) metrics.forgetResource(name);
          resources = next;
        },
        counted: (result) => metrics.policyReloaded(result),
      })
    : null;
  const stopTimers = () => {
    clearInterval(sweeper);
    clearInterval(leaseTicker);
    clearInterval(heartbeat);
    envoy?.close();
    reloader?.close();
  };

  let admin: HttpServer | null = null;
  let http: EnvoyHttp | null = null;
  let grpc;
  try {
    grpc = await listening(
      'grpc',
      policy.server.listen,
      startGrpcServer(
        policy.server.listen,
        policy.server.connections,
        {
          decider: active,
          maxStreams: policy.server.maxStreams,
          resources: () => resources,
          metrics,
          admission,
          warn,
          tracing,
        },
        envoy && envoyStats ? { config: () => envoy.current, stats: envoyStats, ready: envoyReady() } : null,
      ),
    );
    const running = grpc;
    envoyChanged = (config) => {
      envoyStats?.configLoaded(true);
      envoyStats?.retain(config.domains);
      // Once draining, every name stays NOT_SERVING.
      if (!draining) setEnvoyServing(running, envoyReady());
    };
    // Started once its changes reach the server: a config that comes sooner would not.
    envoy?.start();
    const httpListen = policy.envoy?.httpListen;
    if (httpListen && envoy && envoyStats) {
      http = await listening(
        'http',
        httpListen,
        startEnvoyHttp(httpListen, {
          decider: active,
          config: () => envoy.current,
          metrics,
          stats: envoyStats,
          admission,
          warn,
          // Spans are for gRPC calls; /json is not traced.
          tracing: null,
          // What grpc.health.v1 says of `ratelimit`.
          healthy: () => !draining && envoyReady(),
        }),
      );
    }
    const envoyHttp = http;
    let adminAddress: string | null = null;
    if (policy.server.admin) {
      admin = createAdminServer({
        metrics,
        ready: () => serving && envoyReady(),
        storeUp: () => guarded?.available ?? true,
        policy: () => reloader?.status ?? null,
        checkStore: () => (guarded ? guarded.check() : Promise.resolve({ up: true, text: 'store up: the embedded memory store' })),
      });
      adminAddress = await listening('admin', policy.server.admin, listenAdmin(admin, policy.server.admin));
    }
    serving = true;
    return {
      address: running.address,
      adminAddress,
      httpAddress: envoyHttp?.address ?? null,
      reloadPolicy: () => reloader?.requestReload(),
      async stop() {
        serving = false;
        draining = true;
        // The HTTP port answers until its /json under way are answered: /healthcheck with 500
        // meanwhile, a new /json with 503.
        const drained = Promise.all([drainGrpcServer(running, policy.server.shutdownGraceMs), envoyHttp?.drain(policy.server.shutdownGraceMs)]);
        // Waiting calls are answered now (they leave their lines), not cut when the grace ends.
        active.waiters?.close();
        await drained;
        envoyHttp?.close();
        stopTimers();
        // Scrapes and probes cut short are harmless; a kept-alive one must not hold the exit up.
        admin?.close();
        admin?.closeAllConnections();
        await active.close();
        // The spans of the last calls, exported before the process ends.
        await tracing?.shutdown();
      },
    };
  } catch (err) {
    grpc?.listener.close();
    grpc?.server.forceShutdown();
    http?.close();
    admin?.close();
    stopTimers();
    await active.close();
    await tracing?.shutdown();
    throw err;
  }
}

/** OpenTelemetry is loaded only when the policy enables tracing. */
async function startTracing(options: TracingOptions, log: Logger): Promise<Tracing> {
  const { Tracing } = await import('./trace/tracing.js');
  return new Tracing(options, process.env, log);
}

/** What envoy.upstream_env read, once at start: what it applied, and what it ignored and why. */
function logUpstreamEnv(log: Logger, report: UpstreamEnvReport): void {
  log.info({ applied: report.applied }, 'envoy.upstream_env: read envoyproxy/ratelimit environment variables');
  if (report.ignored.length > 0) log.warn({ ignored: report.ignored }, 'envoy.upstream_env: ignored envoyproxy/ratelimit environment variables');
  for (const warning of report.warnings) log.warn(`envoy.upstream_env: ${warning}`);
}

/** True when the store answers a ping within `ms` (asking again until then: it may still be connecting). */
async function answers(store: Store, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await store.ping();
      return true;
    } catch {
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
