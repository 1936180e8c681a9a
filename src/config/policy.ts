// The validated policy, in the units the rest of sluice works in (milliseconds, whole units).
import { resolve } from 'node:path';
import type { EnvoyFile, HostPort, LimitFile, PolicyFile, RedisFile, ResourceFile, TracingFile } from './schema.js';
import { holdsSlots, type AlgorithmName } from '../limits/registry.js';
import { bucketIntervalUs } from './units.js';
import type { UpstreamEnvReport } from './upstream-env.js';

export type Algorithm = AlgorithmName;
export type FailurePolicy = 'open' | 'closed' | 'local';

interface LimitBase {
  name: string;
  /** Counts one per request instead of the request's cost. */
  countsRequests: boolean;
}

/** GCRA: one unit is emitted every intervalMs; up to `capacity` (the burst) can be taken at once. */
export interface TokenBucketLimit extends LimitBase {
  algorithm: 'token_bucket';
  capacity: number;
  intervalMs: number;
}

/** `capacity` units per epoch-aligned window of periodMs. */
export interface WindowLimit extends LimitBase {
  algorithm: 'fixed_window' | 'sliding_window';
  capacity: number;
  periodMs: number;
}

/** At most `capacity` units held at once; a permit not released is reclaimed after ttlMs. */
export interface ConcurrencyLimit extends LimitBase {
  algorithm: 'concurrency';
  capacity: number;
  ttlMs: number;
}

export type Limit = TokenBucketLimit | WindowLimit | ConcurrencyLimit;

/** Part of every limit held back for requests of at least a priority (README, "Reserved capacity"). */
export interface Reserve {
  fraction: number;
  minPriority: number;
}

export interface Resource {
  name: string;
  /** Descriptor keys whose values scope every limit, in this order. */
  keys: readonly string[];
  onStoreFailure: FailurePolicy;
  limits: readonly Limit[];
  /** How long a permit can be released or settled; 0 when grants carry no permit. */
  permitTtlMs: number;
  lease: LeaseSettings;
  /** Leases are on and every limit can be leased (concurrency slots never are). */
  leasable: boolean;
  /** By min_priority, lowest first; empty when nothing is reserved. */
  reserve: readonly Reserve[];
  /**
   * Per reserve entry k, the fraction of every limit a request may use when entries k.. are
   * above its priority: 1 - the sum of their fractions. usableFraction reads it.
   */
  usableBelow: readonly number[];
  /** Requests that may wait in one scope's line, across every sidecar. */
  maxWaiters: number;
  /** Lane names in file order; the first is the lane of a request that names none. Empty: no lanes. */
  lanes: readonly string[];
  /** Each lane's share, in the order of `lanes`. */
  laneShares: readonly number[];
}

export interface LeaseSettings {
  enabled: boolean;
  /** Largest take of one sidecar, as a fraction of a limit (lease/demand.ts blockSize says of what). */
  maxFraction: number;
  /** How long leased budget may be served before what is left goes back. */
  ttlMs: number;
}

/** How many connections and calls the server holds, and when it lets go of them. */
export interface ConnectionLimits {
  /** Open connections; past it a new connection is closed as soon as it is accepted. */
  maxConnections: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls open at once on one connection. */
  maxStreamsPerConnection: number;
  /** A connection must send the HTTP/2 preface and its SETTINGS within this, or it is closed. */
  handshakeTimeoutMs: number;
  /** A connection with no call open for this long is sent GOAWAY and closed. */
  idleMs: number;
  /** A connection is sent GOAWAY at this age (±10%); calls still open get the grace, then are cut. */
  maxAgeMs: number;
  maxAgeGraceMs: number;
  /** The server pings a connection this often and closes it if the ping is not answered in time. */
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
}

export interface Policy {
  server: {
    listen: string;
    admin: string | null;
    shutdownGraceMs: number;
    /** Decisions worked on at once; past it requests are shed. */
    maxInFlight: number;
    connections: ConnectionLimits;
    /** AcquireStreams open at once across the sidecar. */
    maxStreams: number;
    /** Requests waiting (max_wait) in this sidecar at once. */
    maxWaiters: number;
    /** Labels every metric carries. */
    metricLabels: Readonly<Record<string, string>>;
  };
  store: { redis: RedisConfig | null; timeoutMs: number; maxKeys: number };
  resources: ReadonlyMap<string, Resource>;
  /** Envoy's rate limit service: envoyproxy/ratelimit config files to serve; null when absent. */
  envoy: EnvoyOptions | null;
  /** OpenTelemetry tracing; null when the policy does not enable it. */
  tracing: TracingOptions | null;
}

/**
 * The policy file's `tracing:` section, enabled. Null fields are left to the standard OTEL_*
 * variables, as the OpenTelemetry SDK reads them, and then to the defaults src/trace/ gives.
 */
export interface TracingOptions {
  /** OTLP/HTTP with protobuf bodies, or OTLP/gRPC. */
  exporter: 'http' | 'grpc';
  /** The collector's traces endpoint, used as it is. */
  endpoint: string | null;
  serviceName: string | null;
  serviceNamespace: string | null;
  serviceInstanceId: string | null;
  /** The share of traces started here that are sampled (0 to 1); a caller's sampling decision wins. */
  samplingRate: number;
}

/** What a store failure does to Envoy traffic: `error` answers UNAVAILABLE, so Envoy's own failure_mode_deny decides. */
export type EnvoyStoreFailure = 'error' | FailurePolicy;

/** The policy file's `envoy:` section. The directory itself is loaded by the Envoy runtime. */
export interface EnvoyOptions {
  /** Absolute. Every *.yaml and *.yml file directly in it (not hidden files) is one domain. Null with xds. */
  configDir: string | null;
  /** Where config_dir is set in the policy file (`envoy.config_dir (line 3)`): a problem with the directory names it. */
  configDirAt: string;
  /** Add the limit, remaining and reset headers (named by responseHeaderNames) to response_headers_to_add. */
  responseHeaders: boolean;
  responseHeaderNames: { limit: string; remaining: string; reset: string };
  /** Answer with dynamic metadata: the request's descriptors and the metadata of those that passed. */
  responseDynamicMetadata: boolean;
  /** Every descriptor in quota mode: the request is OVER_LIMIT only when all of them are over. */
  quotaMode: boolean;
  onStoreFailure: EnvoyStoreFailure;
  /** Answer OK where the answer would be OVER_LIMIT (counted in the metrics). */
  shadowMode: boolean;
  /** Hits past this share of a limit count as near_limit. */
  nearLimitRatio: number;
  /** The Envoy service is not serving (health, readiness) while config_dir holds no domain. */
  requireDomains: boolean;
  /** A domain in several files is one domain: each file's top-level descriptors added to it, in file order. */
  mergeDomains: boolean;
  /** Where upstream's HTTP port (/json, /healthcheck) is served; null: it is not. */
  httpListen: string | null;
  lease: LeaseSettings;
  /** What was read from upstream's environment variables; null unless upstream_env is true. */
  upstreamEnv: UpstreamEnvReport | null;
  /** The config from an xDS management server instead of config_dir; null with config_dir. */
  xds: XdsOptions | null;
}

/** envoy.xds: where to ask for the config (ADS, state of the world), and how. */
export interface XdsOptions {
  /** host:port of the management server. */
  server: string;
  nodeId: string;
  nodeMetadata: Readonly<Record<string, string>>;
  /** gRPC metadata sent with the stream. */
  headers: Readonly<Record<string, string>>;
  /** PEM texts, read at load; null for plaintext. */
  tls: { ca: string | null; cert: string | null; key: string | null; serverName: string | null } | null;
  retry: { initialMs: number; maxMs: number; jitter: number };
  maxMessageBytes: number;
}

/** The place of a value in the policy file, as problems name it: `envoy.config_dir (line 3)`. */
export type PlaceOf = (path: readonly (string | number)[]) => string;

export type { HostPort };

/** Where the Redis store's data lives. */
export type RedisTopology =
  | { kind: 'standalone'; node: HostPort; db: number }
  /** One server on this host, through its Unix socket (database 0). */
  | { kind: 'socket'; path: string }
  /** The master the sentinels name; `username`/`password` are the sentinels' own AUTH. */
  | { kind: 'sentinel'; master: string; sentinels: HostPort[]; username: string | null; password: string | null }
  /** Seed nodes; the rest of the cluster is discovered from them. */
  | { kind: 'cluster'; nodes: HostPort[] };

/** TLS towards Redis (and, with Sentinel, towards the sentinels too): PEM texts, read at load. */
export interface RedisTls {
  ca: string | null;
  cert: string | null;
  key: string | null;
  serverName: string | null;
  /**
   * What is checked of the server's certificate: that a trusted CA signed it and that it names the
   * server ('full'); the signature only ('chain', skip_hostname_verification); or nothing
   * ('none', insecure_skip_verify, which wins over the other).
   */
  verify: 'full' | 'chain' | 'none';
}

export interface RedisConfig {
  topology: RedisTopology;
  /** AUTH towards the data nodes: an ACL user, or only a password for the default user. */
  username: string | null;
  password: string | null;
  tls: RedisTls | null;
  /** Every key starts with `<prefix>:`. */
  prefix: string;
  /** A window key's expiry is its window's end plus up to this much (ms; 0: none). */
  expiryJitterMs: number;
}

/** `upstreamEnv`: what envoy.upstream_env read from the environment, when it is on. */
export function compilePolicy(file: PolicyFile, placeOf: PlaceOf, upstreamEnv: UpstreamEnvReport | null = null): Policy {
  return {
    server: {
      listen: file.server.listen,
      admin: file.server.admin === 'off' ? null : file.server.admin,
      shutdownGraceMs: file.server.shutdown_grace,
      maxInFlight: file.server.max_in_flight,
      connections: {
        maxConnections: file.server.max_connections,
        maxStreamsPerConnection: file.server.max_streams_per_connection,
        handshakeTimeoutMs: file.server.handshake_timeout,
        idleMs: file.server.connection_idle,
        maxAgeMs: file.server.connection_max_age,
        maxAgeGraceMs: file.server.connection_max_age_grace,
        keepaliveMs: file.server.keepalive,
        keepaliveTimeoutMs: file.server.keepalive_timeout,
      },
      maxStreams: file.server.max_streams,
      maxWaiters: file.server.max_waiters,
      metricLabels: file.server.metric_labels,
    },
    store: { redis: file.store.redis ? compileRedis(file.store.redis) : null, timeoutMs: file.store.timeout, maxKeys: file.store.max_keys },
    resources: new Map((file.resources ?? []).map((res) => [res.name, compileResource(res)])),
    envoy: file.envoy ? compileEnvoy(file.envoy, placeOf, upstreamEnv) : null,
    tracing: file.tracing?.enabled ? compileTracing(file.tracing) : null,
  };
}

function compileTracing(tracing: TracingFile): TracingOptions {
  return {
    exporter: tracing.exporter,
    endpoint: tracing.endpoint ?? null,
    serviceName: tracing.service_name ?? null,
    serviceNamespace: tracing.service_namespace ?? null,
    serviceInstanceId: tracing.service_instance_id ?? null,
    samplingRate: tracing.sampling_rate,
  };
}

function compileEnvoy(envoy: EnvoyFile, placeOf: PlaceOf, upstreamEnv: UpstreamEnvReport | null): EnvoyOptions {
  return {
    configDir: envoy.config_dir === undefined ? null : resolve(envoy.config_dir),
    configDirAt: placeOf(['envoy', 'config_dir']),
    responseHeaders: envoy.response_headers,
    responseHeaderNames: envoy.response_header_names,
    responseDynamicMetadata: envoy.response_dynamic_metadata,
    quotaMode: envoy.quota_mode,
    onStoreFailure: envoy.on_store_failure,
    shadowMode: envoy.shadow_mode,
    nearLimitRatio: envoy.near_limit_ratio,
    requireDomains: envoy.require_domains,
    mergeDomains: envoy.merge_domains,
    httpListen: envoy.http_listen ?? null,
    lease: compileLease(envoy.lease),
    upstreamEnv: envoy.upstream_env ? upstreamEnv : null,
    xds: envoy.xds ? compileXds(envoy.xds) : null,
  };
}

function compileXds(xds: NonNullable<EnvoyFile['xds']>): XdsOptions {
  const tls = xds.tls;
  return {
    server: xds.server,
    nodeId: xds.node_id,
    nodeMetadata: xds.node_metadata,
    headers: xds.headers,
    tls: tls ? { ca: tls.ca_file ?? null, cert: tls.cert_file ?? null, key: tls.key_file ?? null, serverName: tls.server_name ?? null } : null,
    retry: { initialMs: xds.retry.initial, maxMs: xds.retry.max, jitter: xds.retry.jitter },
    maxMessageBytes: xds.max_message_size,
  };
}

function compileLease(lease: ResourceFile['lease']): LeaseSettings {
  return { enabled: lease.enabled, maxFraction: lease.max_fraction, ttlMs: lease.ttl };
}

function compileRedis(redis: RedisFile): RedisConfig {
  let topology: RedisTopology;
  const url = redis.url;
  if (url) {
    topology = { kind: 'standalone', node: { host: url.host, port: url.port }, db: url.db };
  } else if (redis.socket) {
    topology = { kind: 'socket', path: redis.socket };
  } else if (redis.sentinel) {
    const sentinel = redis.sentinel;
    topology = {
      kind: 'sentinel',
      master: sentinel.master,
      sentinels: sentinel.nodes,
      username: sentinel.username ?? null,
      password: sentinel.password ?? null,
    };
  } else if (redis.cluster) {
    topology = { kind: 'cluster', nodes: redis.cluster.nodes };
  } else {
    throw new Error('store.redis: no url, socket, sentinel or cluster (the schema lets none through)');
  }
  const tls = redis.tls;
  const username = redis.username ?? url?.username ?? null;
  const password = redis.password ?? redis.password_file ?? url?.password ?? null;
  return {
    topology,
    username,
    password,
    tls:
      tls || url?.tls
        ? {
            ca: tls?.ca_file ?? null,
            cert: tls?.cert_file ?? null,
            key: tls?.key_file ?? null,
            serverName: tls?.server_name ?? null,
            verify: tls?.insecure_skip_verify ? 'none' : tls?.skip_hostname_verification ? 'chain' : 'full',
          }
        : null,
    prefix: redis.prefix,
    expiryJitterMs: redis.expiry_jitter ?? 0,
  };
}

function compileResource(res: ResourceFile): Resource {
  const limits = res.limits.map(compileLimit);
  let permitTtlMs = res.settle_within ?? 0;
  for (const limit of limits) if (limit.algorithm === 'concurrency') permitTtlMs = Math.max(permitTtlMs, limit.ttlMs);
  return {
    name: res.name,
    keys: res.keys,
    onStoreFailure: res.on_store_failure,
    limits,
    permitTtlMs,
    lease: compileLease(res.lease),
    leasable: res.lease.enabled && !limits.some(holdsSlots),
    ...compileReserve(res.reserve),
    maxWaiters: res.wait.max_waiters,
    lanes: Object.keys(res.lanes),
    laneShares: Object.values(res.lanes),
  };
}

/** The 1-based lane a request names ('' for the resource's first); undefined when it has no such lane. */
export function laneOf(resource: Resource, lane: string): number | undefined {
  if (lane === '') return 1;
  const at = resource.lanes.indexOf(lane);
  return at < 0 ? undefined : at + 1;
}

function compileReserve(entries: ResourceFile['reserve']): Pick<Resource, 'reserve' | 'usableBelow'> {
  const reserve = entries.map((entry) => ({ fraction: entry.fraction, minPriority: entry.min_priority })).sort((a, b) => a.minPriority - b.minPriority);
  const usableBelow: number[] = [];
  let above = 0;
  for (let k = reserve.length - 1; k >= 0; k--) {
    above += reserve[k]!.fraction;
    usableBelow[k] = 1 - above;
  }
  return { reserve, usableBelow };
}

/**
 * The fraction of every limit a request of `priority` may use: all of it but what is reserved
 * for priorities above it. 1 at once for a resource without a reserve.
 */
export function usableFraction(resource: Resource, priority: number): number {
  const reserve = resource.reserve;
  for (let k = 0; k < reserve.length; k++) if (reserve[k]!.minPriority > priority) return resource.usableBelow[k]!;
  return 1;
}

/** The least any request may use: what a lease takes, so that any request may be served from it. */
export function lowestUsable(resource: Resource): number {
  return resource.usableBelow.length > 0 ? resource.usableBelow[0]! : 1;
}

function compileLimit(limit: LimitFile): Limit {
  const base = { name: limit.name, countsRequests: limit.counts === 'requests' };
  switch (limit.algorithm) {
    case 'token_bucket': {
      const burst = limit.burst ?? limit.rate.count;
      return { ...base, algorithm: 'token_bucket', capacity: burst, intervalMs: bucketIntervalUs(limit.rate) / 1_000 };
    }
    case 'fixed_window':
    case 'sliding_window':
      return { ...base, algorithm: limit.algorithm, capacity: limit.rate.count, periodMs: limit.rate.periodMs };
    case 'concurrency':
      return { ...base, algorithm: 'concurrency', capacity: limit.max, ttlMs: limit.ttl };
  }
}

/** The units a request takes from this limit. */
export function costFor(limit: Limit, cost: number): number {
  return limit.countsRequests ? 1 : cost;
}
