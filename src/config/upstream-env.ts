// envoyproxy/ratelimit is configured by environment variables (its src/settings/settings.go).
// With `envoy.upstream_env: true` sluice reads them too, so that an existing Deployment's env
// block works unchanged: each variable that sluice has an equivalent for becomes that setting,
// over what the policy file says; each one set that sluice has no use for is reported once at
// start, with why; and the few whose meaning sluice cannot keep (memcached) stop the start,
// instead of being dropped without a word.
//
// Values are read as upstream reads them: booleans as Go's strconv.ParseBool, durations as Go's
// time.ParseDuration, and an empty value as unset.
import { join } from 'node:path';

export type Environment = Readonly<Record<string, string | undefined>>;

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/** What upstream_env did with the environment: the variables it applied and those it did not. */
export interface UpstreamEnvReport {
  /** Each variable set that became a setting of sluice's (values are not repeated: some are secrets). */
  applied: { name: string; setting: string }[];
  /** Each variable set that changes nothing in sluice, with why. */
  ignored: { name: string; reason: string }[];
  /** What the operator should know about the result (an unshared embedded store). */
  warnings: string[];
  /** LOG_LEVEL, as the sidecar's log level; null when unset. SLUICE_LOG_LEVEL wins over it. */
  logLevel: LogLevel | null;
}

export interface UpstreamEnvResult {
  /** The policy with the variables' settings in place; the policy given is left as it was. */
  policy: Record<string, unknown>;
  report: UpstreamEnvReport;
  /** Variables whose value is wrong, or whose meaning sluice cannot keep: the start stops on them. */
  problems: string[];
  /** Each path of the policy set from the environment (`envoy.near_limit_ratio`), and from what. */
  sources: Map<string, string>;
}

/** Upstream's defaults where sluice's differ and the variable's meaning depends on them. */
const DEFAULT_RUNTIME_ROOT = '/srv/runtime_data/current';
const DEFAULT_RUNTIME_APPDIRECTORY = 'config';
const DEFAULT_PROMETHEUS_ADDR = ':9090';
const DEFAULT_HTTP_LISTEN = ':8080';
const DEFAULT_LISTEN = '127.0.0.1:50051';

const NO_STATSD = 'sluice exports Prometheus metrics on server.admin at /metrics; it sends no StatsD';
const XDS_ONLY = 'read only with CONFIG_TYPE=GRPC_XDS_SOTW';
const XDS_TLS_ONLY = 'read only with CONFIG_GRPC_XDS_SERVER_USE_TLS=true';
/** Upstream's defaults for the two settings envoy.xds requires. */
const DEFAULT_XDS_SERVER = 'localhost:18000';
const DEFAULT_XDS_NODE_ID = 'default';
const NO_PER_SECOND = 'sluice keeps every budget in one store (store.redis), per-second limits too';
const NO_MEMCACHE = 'memcached is not supported (BACKEND_TYPE=memcache stops the start)';
const PIPELINE =
  'sluice sends the calls of one event-loop turn to a Redis server as one pipeline (on a Cluster, each call as it is made); there is nothing to set';
const POOL = 'sluice sends every call over one connection per Redis node; there is no pool to size';
const NO_LOCAL_CACHE =
  '0 (upstream’s default: no local cache) leaves envoy.lease as the policy file says (on by default): leases serve grants as well as denials, and answer as Redis would';

/**
 * Every variable of upstream's settings that sluice does not turn into a setting, with why. The
 * variables that it does (below, in applyUpstreamEnv) are in MAPPED; together they are all of
 * upstream's.
 */
export const IGNORED: Readonly<Record<string, string>> = {
  DEBUG_HOST: 'upstream’s debug port (pprof, /rlconfig): sluice has none',
  DEBUG_PORT: 'upstream’s debug port (pprof, /rlconfig): sluice has none',
  LOG_FORMAT: 'sluice logs JSON lines (LOG_FORMAT=json); `sluice serve --pretty` prints text',
  FORCE_START_WITHOUT_INITIAL_CONFIG:
    'sluice always starts at once: with what config_dir holds (a bad file stops it), or, from xDS, with no domain until the first config arrives (HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED keeps it not serving until then)',
  CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL:
    'sluice waits the same backoff (XDS_CLIENT_BACKOFF_*, envoy.xds.retry) after a failed connect as after a stream that ends',
  XDS_CLIENT_BACKOFF_RANDOM_FACTOR:
    'upstream hands it to its backoff as the growth factor, where its default 0.5 keeps every wait at XDS_CLIENT_BACKOFF_INITIAL_INTERVAL; sluice doubles each wait up to envoy.xds.retry.max and draws it at random within envoy.xds.retry.jitter',
  USE_DOG_STATSD: NO_STATSD,
  USE_DOG_STATSD_MOGRIFIERS: NO_STATSD,
  USE_STATSD: NO_STATSD,
  STATSD_HOST: NO_STATSD,
  STATSD_PORT: NO_STATSD,
  STATS_FLUSH_INTERVAL: 'Prometheus reads sluice’s counters when it scrapes; there is nothing to flush',
  DISABLE_STATS: 'sluice’s metrics cost a table lookup per decision and are read only when scraped; they cannot be turned off',
  PROMETHEUS_MAPPER_YAML: 'sluice names its metrics itself (docs/envoy.md, Statistics, lists them beside upstream’s)',
  PROMETHEUS_RESPONSE_TIME_AS_MILLISECONDS: 'sluice has no response time metric of upstream’s form',
  RUNTIME_IGNOREDOTFILES: 'sluice always skips hidden files in config_dir (a ConfigMap’s ..data among them)',
  RUNTIME_WATCH_ROOT:
    'sluice watches config_dir itself: a write in it or a ConfigMap’s ..data swap reloads; a symlink swap above it (of RUNTIME_ROOT) is not seen',
  STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: 'always so in sluice: a request over the limit takes nothing from any of its descriptors',
  REDIS_POOL_SIZE: POOL,
  REDIS_PIPELINE_WINDOW: PIPELINE,
  REDIS_PIPELINE_LIMIT: PIPELINE,
  REDIS_CLUSTER_PIPELINE_PARALLELISM: 'on a Cluster, sluice sends each call to its node as it is made, without waiting for the others',
  REDIS_PERSECOND: NO_PER_SECOND,
  REDIS_PERSECOND_SOCKET_TYPE: NO_PER_SECOND,
  REDIS_PERSECOND_TYPE: NO_PER_SECOND,
  REDIS_PERSECOND_URL: NO_PER_SECOND,
  REDIS_PERSECOND_POOL_SIZE: NO_PER_SECOND,
  REDIS_PERSECOND_AUTH: NO_PER_SECOND,
  REDIS_PERSECOND_TLS: NO_PER_SECOND,
  REDIS_PERSECOND_SENTINEL_AUTH: NO_PER_SECOND,
  REDIS_PERSECOND_PIPELINE_WINDOW: NO_PER_SECOND,
  REDIS_PERSECOND_PIPELINE_LIMIT: NO_PER_SECOND,
  REDIS_PERSECOND_CLUSTER_PIPELINE_PARALLELISM: NO_PER_SECOND,
  REDIS_PERSECOND_TIMEOUT: NO_PER_SECOND,
  REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR: NO_PER_SECOND,
  REDIS_HEALTH_CHECK_ACTIVE_CONNECTION:
    'sluice’s readiness does not follow Redis (on_store_failure answers while it is away); GET /storez on server.admin reports the store',
  REDIS_TIMEOUT:
    'sluice bounds each decision by store.timeout (default 20 ms) and then follows on_store_failure; a 10 s wait on Redis is what it avoids',
  REDIS_POOL_ON_EMPTY_BEHAVIOR: POOL,
  REDIS_STARTUP_INITIAL_INTERVAL: 'sluice starts without waiting for Redis (at most 2 s), serving by on_store_failure until Redis answers',
  REDIS_STARTUP_MAX_INTERVAL: 'sluice starts without waiting for Redis (at most 2 s), serving by on_store_failure until Redis answers',
  REDIS_STARTUP_MAX_ELAPSED_TIME: 'sluice starts without waiting for Redis (at most 2 s), serving by on_store_failure until Redis answers',
  MEMCACHE_HOST_PORT: NO_MEMCACHE,
  MEMCACHE_MAX_IDLE_CONNS: NO_MEMCACHE,
  MEMCACHE_SRV: NO_MEMCACHE,
  MEMCACHE_SRV_REFRESH: NO_MEMCACHE,
  MEMCACHE_TLS: NO_MEMCACHE,
  MEMCACHE_TLS_CLIENT_CERT: NO_MEMCACHE,
  MEMCACHE_TLS_CLIENT_KEY: NO_MEMCACHE,
  MEMCACHE_TLS_CACERT: NO_MEMCACHE,
  MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION: NO_MEMCACHE,
};

/** The variables applyUpstreamEnv reads (some are ignored too, by their value: see their code). */
export const MAPPED: readonly string[] = [
  'SHADOW_MODE',
  'QUOTA_MODE',
  'LIMIT_RESPONSE_HEADERS_ENABLED',
  'LIMIT_LIMIT_HEADER',
  'LIMIT_REMAINING_HEADER',
  'LIMIT_RESET_HEADER',
  'NEAR_LIMIT_RATIO',
  'RESPONSE_DYNAMIC_METADATA',
  'HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED',
  'LOCAL_CACHE_SIZE_IN_BYTES',
  'MERGE_DOMAIN_CONFIG',
  'HOST',
  'PORT',
  'RUNTIME_ROOT',
  'RUNTIME_SUBDIRECTORY',
  'RUNTIME_APPDIRECTORY',
  'CONFIG_TYPE',
  'CONFIG_GRPC_XDS_NODE_ID',
  'CONFIG_GRPC_XDS_NODE_METADATA',
  'CONFIG_GRPC_XDS_SERVER_URL',
  'CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS',
  'CONFIG_GRPC_XDS_SERVER_USE_TLS',
  'CONFIG_GRPC_XDS_CLIENT_TLS_CERT',
  'CONFIG_GRPC_XDS_CLIENT_TLS_KEY',
  'CONFIG_GRPC_XDS_SERVER_TLS_CACERT',
  'CONFIG_GRPC_XDS_SERVER_TLS_SAN',
  'XDS_CLIENT_BACKOFF_INITIAL_INTERVAL',
  'XDS_CLIENT_BACKOFF_MAX_INTERVAL',
  'XDS_CLIENT_BACKOFF_JITTER',
  'XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES',
  'GRPC_UDS',
  'GRPC_HOST',
  'GRPC_PORT',
  'GRPC_MAX_CONNECTION_AGE',
  'GRPC_MAX_CONNECTION_AGE_GRACE',
  'GRPC_SERVER_USE_TLS',
  'GRPC_SERVER_TLS_CERT',
  'GRPC_SERVER_TLS_KEY',
  'GRPC_CLIENT_TLS_CACERT',
  'GRPC_CLIENT_TLS_SAN',
  'LOG_LEVEL',
  'USE_PROMETHEUS',
  'PROMETHEUS_ADDR',
  'PROMETHEUS_PATH',
  'EXTRA_TAGS',
  'BACKEND_TYPE',
  'CACHE_KEY_PREFIX',
  'EXPIRATION_JITTER_MAX_SECONDS',
  'REDIS_SOCKET_TYPE',
  'REDIS_TYPE',
  'REDIS_URL',
  'REDIS_AUTH',
  'REDIS_SENTINEL_AUTH',
  'REDIS_TLS',
  'REDIS_TLS_CLIENT_CERT',
  'REDIS_TLS_CLIENT_KEY',
  'REDIS_TLS_CACERT',
  'REDIS_TLS_SKIP_HOSTNAME_VERIFICATION',
  'TRACING_ENABLED',
  'TRACING_SERVICE_NAME',
  'TRACING_SERVICE_NAMESPACE',
  'TRACING_SERVICE_INSTANCE_ID',
  'TRACING_EXPORTER_PROTOCOL',
  'TRACING_SAMPLING_RATE',
];

/** Every environment variable of upstream's settings. */
export const UPSTREAM_VARIABLES: readonly string[] = [...MAPPED, ...Object.keys(IGNORED)];

/** The policy file with upstream's variables applied over it; `policy` itself is not changed. */
export function applyUpstreamEnv(policy: Record<string, unknown>, env: Environment): UpstreamEnvResult {
  const r = new Reading(policy, env);
  readEnvoySettings(r);
  readServer(r);
  readStore(r);
  readTracing(r);
  for (const name of UPSTREAM_VARIABLES) {
    if (r.value(name) !== undefined && !r.handled.has(name) && Object.hasOwn(IGNORED, name)) r.ignore(name, IGNORED[name]!);
  }
  return { policy: r.policy, report: r.report, problems: r.problems, sources: r.sources };
}

function readEnvoySettings(r: Reading): void {
  r.bool('SHADOW_MODE', (on) => r.set(['envoy', 'shadow_mode'], on, 'SHADOW_MODE'));
  r.bool('QUOTA_MODE', (on) => r.set(['envoy', 'quota_mode'], on, 'QUOTA_MODE'));
  r.bool('LIMIT_RESPONSE_HEADERS_ENABLED', (on) => r.set(['envoy', 'response_headers'], on, 'LIMIT_RESPONSE_HEADERS_ENABLED'));
  for (const [name, which] of [
    ['LIMIT_LIMIT_HEADER', 'limit'],
    ['LIMIT_REMAINING_HEADER', 'remaining'],
    ['LIMIT_RESET_HEADER', 'reset'],
  ] as const) {
    const header = r.value(name);
    if (header !== undefined) r.set(['envoy', 'response_header_names', which], header, name);
  }
  const ratio = r.value('NEAR_LIMIT_RATIO');
  if (ratio !== undefined) {
    // sluice's schema checks the range.
    const value = parseGoFloat(ratio);
    if (value !== undefined) r.set(['envoy', 'near_limit_ratio'], value, 'NEAR_LIMIT_RATIO');
    else r.refuse('NEAR_LIMIT_RATIO', `expected a number from 0 to 1, not ${JSON.stringify(ratio)}`);
  }
  r.bool('RESPONSE_DYNAMIC_METADATA', (on) => r.set(['envoy', 'response_dynamic_metadata'], on, 'RESPONSE_DYNAMIC_METADATA'));
  r.bool('HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED', (on) => r.set(['envoy', 'require_domains'], on, 'HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED'));
  r.bool('MERGE_DOMAIN_CONFIG', (on) => r.set(['envoy', 'merge_domains'], on, 'MERGE_DOMAIN_CONFIG'));
  const cacheSize = r.value('LOCAL_CACHE_SIZE_IN_BYTES');
  if (cacheSize !== undefined) {
    // Upstream keeps a local cache of keys over their limit when the size is not 0; a lease's
    // standing denial is sluice's. 0, upstream's default, turns nothing off: leases serve grants too.
    if (!/^[+-]?\d+$/.test(cacheSize)) r.refuse('LOCAL_CACHE_SIZE_IN_BYTES', `expected a whole number of bytes, not ${JSON.stringify(cacheSize)}`);
    else if (/[1-9]/.test(cacheSize)) r.set(['envoy', 'lease', 'enabled'], true, 'LOCAL_CACHE_SIZE_IN_BYTES');
    else r.ignore('LOCAL_CACHE_SIZE_IN_BYTES', NO_LOCAL_CACHE);
  }
  // Upstream's HTTP port, served when either is set. Each replaces its part of the file's
  // http_listen; a part neither gives is upstream's (every interface, 8080), as for
  // USE_PROMETHEUS: the port is where the kubelet's probes reach it, from outside the pod.
  const host = r.value('HOST');
  const port = r.value('PORT');
  if (host !== undefined || port !== undefined) {
    const current = r.at(['envoy', 'http_listen']);
    const from = ['HOST', 'PORT'].filter((name) => r.value(name) !== undefined);
    r.set(['envoy', 'http_listen'], withHostPort(typeof current === 'string' ? current : DEFAULT_HTTP_LISTEN, host, port), ...from);
  }

  const configType = r.value('CONFIG_TYPE')?.toUpperCase() ?? 'FILE';
  if (configType === 'FILE') {
    if (r.value('CONFIG_TYPE') !== undefined) r.same('CONFIG_TYPE', 'envoy.config_dir (config files)');
    readRuntimeDirectory(r);
    for (const name of XDS_VARIABLES) if (r.value(name) !== undefined) r.ignore(name, XDS_ONLY);
  } else if (configType === 'GRPC_XDS_SOTW') {
    for (const name of RUNTIME_VARIABLES) if (r.value(name) !== undefined) r.ignore(name, 'read only with CONFIG_TYPE=FILE (config files)');
    readXds(r);
  } else {
    r.refuse('CONFIG_TYPE', `expected FILE or GRPC_XDS_SOTW, not ${JSON.stringify(r.value('CONFIG_TYPE'))}`);
  }
}

const RUNTIME_VARIABLES = ['RUNTIME_ROOT', 'RUNTIME_SUBDIRECTORY', 'RUNTIME_APPDIRECTORY'] as const;
const XDS_TLS_FILES = [
  ['CONFIG_GRPC_XDS_SERVER_TLS_CACERT', 'ca_file'],
  ['CONFIG_GRPC_XDS_CLIENT_TLS_CERT', 'cert_file'],
  ['CONFIG_GRPC_XDS_CLIENT_TLS_KEY', 'key_file'],
  ['CONFIG_GRPC_XDS_SERVER_TLS_SAN', 'server_name'],
] as const;
const XDS_VARIABLES = [...MAPPED.filter((name) => name.startsWith('CONFIG_GRPC_XDS_') || name.startsWith('XDS_CLIENT_')), ...Object.keys(IGNORED).filter((name) => name.includes('XDS_'))];

/** RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY/*.yaml, as upstream's file loader reads it. */
function readRuntimeDirectory(r: Reading): void {
  const given = RUNTIME_VARIABLES.filter((name) => r.value(name) !== undefined);
  if (given.length === 0) return;
  const dir = join(r.value('RUNTIME_ROOT') ?? DEFAULT_RUNTIME_ROOT, r.value('RUNTIME_SUBDIRECTORY') ?? '', r.value('RUNTIME_APPDIRECTORY') ?? DEFAULT_RUNTIME_APPDIRECTORY);
  r.set(['envoy', 'config_dir'], dir, ...given);
  // Config files, as CONFIG_TYPE=FILE says: not a management server the file may name.
  r.unset(['envoy', 'xds']);
}

/** CONFIG_TYPE=GRPC_XDS_SOTW: envoy.xds from the CONFIG_GRPC_XDS_* and XDS_CLIENT_* variables, over the file's. */
function readXds(r: Reading): void {
  const at = (...path: string[]) => ['envoy', 'xds', ...path];
  r.unset(['envoy', 'config_dir']);
  if (!isObject(r.at(at()))) r.set(at(), {}, 'CONFIG_TYPE');
  else r.same('CONFIG_TYPE', 'envoy.xds (a management server)');
  for (const [name, key, fallback] of [
    ['CONFIG_GRPC_XDS_SERVER_URL', 'server', DEFAULT_XDS_SERVER],
    ['CONFIG_GRPC_XDS_NODE_ID', 'node_id', DEFAULT_XDS_NODE_ID],
  ] as const) {
    const value = r.value(name);
    // Upstream's default where neither the variable nor the file says.
    if (value !== undefined) r.set(at(key), value, name);
    else if (r.at(at(key)) === undefined) r.set(at(key), fallback, 'CONFIG_TYPE');
  }
  const metadata = r.value('CONFIG_GRPC_XDS_NODE_METADATA');
  if (metadata !== undefined) {
    // "key1=value1,key2=value2"; upstream drops an entry without "=", and so does sluice, saying so.
    const entries = metadata.split(',').map((entry) => entry.split(/=(.*)/s, 2) as [string, string?]);
    const dropped = entries.filter(([, value]) => value === undefined).map(([entry]) => JSON.stringify(entry));
    if (dropped.length > 0) r.report.warnings.push(`CONFIG_GRPC_XDS_NODE_METADATA: ${dropped.join(', ')} dropped: expected key=value, as upstream reads it`);
    r.set(at('node_metadata'), Object.fromEntries(entries.filter(([, value]) => value !== undefined)), 'CONFIG_GRPC_XDS_NODE_METADATA');
  }
  const headers = r.value('CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS');
  if (headers !== undefined) {
    // envconfig's map: "key1:value1,key2:value2"; an entry without ":" stops upstream's start.
    const entries = headers.split(',').map((entry) => entry.split(/:(.*)/s, 2) as [string, string?]);
    const bad = entries.find(([, value]) => value === undefined);
    if (bad) r.refuse('CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS', `expected key:value pairs separated by commas, not ${JSON.stringify(bad[0])}`);
    else r.set(at('headers'), Object.fromEntries(entries), 'CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS');
  }
  const tls = r.boolValue('CONFIG_GRPC_XDS_SERVER_USE_TLS');
  if (tls) {
    if (!isObject(r.at(at('tls')))) r.set(at('tls'), {}, 'CONFIG_GRPC_XDS_SERVER_USE_TLS');
    else r.same('CONFIG_GRPC_XDS_SERVER_USE_TLS', 'envoy.xds.tls');
    for (const [name, key] of XDS_TLS_FILES) {
      const value = r.value(name);
      if (value !== undefined) r.set(at('tls', key), value, name);
    }
  } else {
    if (tls === false) {
      r.unset(at('tls'));
      r.same('CONFIG_GRPC_XDS_SERVER_USE_TLS', 'no TLS towards the management server');
    }
    for (const [name] of XDS_TLS_FILES) if (r.value(name) !== undefined) r.ignore(name, XDS_TLS_ONLY);
  }
  for (const [name, key] of [
    ['XDS_CLIENT_BACKOFF_INITIAL_INTERVAL', 'initial'],
    ['XDS_CLIENT_BACKOFF_MAX_INTERVAL', 'max'],
  ] as const) {
    const text = r.value(name);
    if (text === undefined) continue;
    const ms = parseGoDuration(text);
    if (ms === undefined) r.refuse(name, `expected a Go duration such as 10s or 1m, not ${JSON.stringify(text)}`);
    else r.set(at('retry', key), `${ms}ms`, name);
  }
  // Without jitter every wait is the full one; with it, envoy.xds.retry.jitter says how much is drawn at random.
  r.bool('XDS_CLIENT_BACKOFF_JITTER', (on) => {
    if (on) r.same('XDS_CLIENT_BACKOFF_JITTER', 'envoy.xds.retry.jitter (waits drawn at random)');
    else r.set(at('retry', 'jitter'), 0, 'XDS_CLIENT_BACKOFF_JITTER');
  });
  const size = r.value('XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES');
  if (size !== undefined) {
    // 0 leaves gRPC's default (4 MiB), as upstream reads it.
    if (!/^[+-]?\d+$/.test(size)) r.refuse('XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES', `expected a whole number of bytes, not ${JSON.stringify(size)}`);
    else if (Number(size) === 0) r.same('XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES', 'envoy.xds.max_message_size (4 MiB, gRPC’s default)');
    else r.set(at('max_message_size'), Number(size), 'XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES');
  }
}

function readServer(r: Reading): void {
  const uds = r.value('GRPC_UDS');
  const host = r.value('GRPC_HOST');
  const port = r.value('GRPC_PORT');
  if (uds !== undefined) {
    r.set(['server', 'listen'], `unix:${uds}`, 'GRPC_UDS');
    for (const name of ['GRPC_HOST', 'GRPC_PORT']) if (r.value(name) !== undefined) r.ignore(name, 'GRPC_UDS is set: sluice listens on the socket, as upstream does');
  } else if (host !== undefined || port !== undefined) {
    // Each replaces its part of server.listen: upstream's default host is 0.0.0.0, sluice's stays
    // 127.0.0.1 unless GRPC_HOST says otherwise.
    const current = typeof r.at(['server', 'listen']) === 'string' && !String(r.at(['server', 'listen'])).startsWith('unix:') ? String(r.at(['server', 'listen'])) : DEFAULT_LISTEN;
    r.set(['server', 'listen'], withHostPort(current, host, port), ...['GRPC_HOST', 'GRPC_PORT'].filter((name) => r.value(name) !== undefined));
  }
  for (const [name, key] of [
    ['GRPC_MAX_CONNECTION_AGE', 'connection_max_age'],
    ['GRPC_MAX_CONNECTION_AGE_GRACE', 'connection_max_age_grace'],
  ] as const) {
    const text = r.value(name);
    if (text === undefined) continue;
    const ms = parseGoDuration(text);
    if (ms === undefined) r.refuse(name, `expected a Go duration such as 24h, 1h30m or 90s, not ${JSON.stringify(text)}`);
    else r.set(['server', key], `${ms}ms`, name);
  }
  readServerTls(r);

  const level = r.value('LOG_LEVEL');
  if (level !== undefined) {
    const mapped = LOGRUS_LEVELS[level.toLowerCase()];
    if (mapped) {
      r.report.logLevel = mapped;
      r.same('LOG_LEVEL', `the log level (${mapped}), unless SLUICE_LOG_LEVEL is set`);
    } else {
      r.refuse('LOG_LEVEL', `expected one of ${Object.keys(LOGRUS_LEVELS).join(', ')}, not ${JSON.stringify(level)}`);
    }
  }

  r.bool('USE_PROMETHEUS', (on) => {
    if (on) r.set(['server', 'admin'], r.value('PROMETHEUS_ADDR') ?? DEFAULT_PROMETHEUS_ADDR, 'USE_PROMETHEUS', ...(r.value('PROMETHEUS_ADDR') !== undefined ? ['PROMETHEUS_ADDR'] : []));
  });
  if (r.value('PROMETHEUS_ADDR') !== undefined && !r.handled.has('PROMETHEUS_ADDR')) r.ignore('PROMETHEUS_ADDR', 'read only with USE_PROMETHEUS=true');
  const path = r.value('PROMETHEUS_PATH');
  if (path === '/metrics') r.same('PROMETHEUS_PATH', 'GET /metrics on server.admin');
  else if (path !== undefined) r.ignore('PROMETHEUS_PATH', 'sluice serves its metrics at /metrics only');

  const tags = r.value('EXTRA_TAGS');
  if (tags !== undefined) {
    // envconfig's map form, name:value,name:value; the schema checks the names.
    const pairs = tags.split(',').map((item) => item.split(/:(.*)/s, 2));
    const bad = pairs.find((pair) => pair.length < 2);
    if (bad) r.refuse('EXTRA_TAGS', `expected name:value pairs separated by commas, not ${JSON.stringify(bad[0])}`);
    else r.set(['server', 'metric_labels'], Object.fromEntries(pairs), 'EXTRA_TAGS');
  }
}

/** GRPC_SERVER_USE_TLS and the files that go with it, as server.tls, each over the file's. */
function readServerTls(r: Reading): void {
  const fields = [
    ['GRPC_SERVER_TLS_CERT', 'cert_file'],
    ['GRPC_SERVER_TLS_KEY', 'key_file'],
    ['GRPC_CLIENT_TLS_CACERT', 'client_ca_file'],
    ['GRPC_CLIENT_TLS_SAN', 'client_san'],
  ] as const;
  const on = r.boolValue('GRPC_SERVER_USE_TLS');
  const fileTls = isObject(r.at(['server', 'tls']));
  if (on !== true) {
    for (const [name] of fields) if (r.value(name) !== undefined) r.ignore(name, 'read only with GRPC_SERVER_USE_TLS=true');
    if (on === false && fileTls) r.ignore('GRPC_SERVER_USE_TLS', 'the policy file’s server.tls stays: sluice does not serve in plaintext what its policy says to serve over TLS');
    else if (on === false) r.same('GRPC_SERVER_USE_TLS', 'server.listen in plaintext (no server.tls)');
    return;
  }
  if (fileTls) r.same('GRPC_SERVER_USE_TLS', 'server.tls (the policy file’s, with the variables below over it)');
  else r.set(['server', 'tls'], {}, 'GRPC_SERVER_USE_TLS');
  for (const [name, key] of fields) {
    const value = r.value(name);
    if (value === undefined) continue;
    // Without a client CA upstream asks for no client certificate, so it checks no SAN either.
    if (key === 'client_san' && r.at(['server', 'tls', 'client_ca_file']) === undefined) {
      r.ignore(name, 'read only with GRPC_CLIENT_TLS_CACERT (or server.tls.client_ca_file): without a client CA no client certificate is asked for');
      continue;
    }
    r.set(['server', 'tls', key], value, name);
  }
}

function readStore(r: Reading): void {
  const backend = r.value('BACKEND_TYPE');
  if (backend !== undefined && backend.toLowerCase() !== 'redis') {
    r.refuse('BACKEND_TYPE', `${backend} is not supported: sluice keeps budgets in Redis (or, without store.redis, in this sidecar's memory only)`);
    return;
  }
  if (backend !== undefined) r.same('BACKEND_TYPE', 'store.redis');
  const url = r.value('REDIS_URL');
  if (url === undefined) {
    for (const name of ['REDIS_SOCKET_TYPE', 'REDIS_TYPE', 'REDIS_AUTH', 'REDIS_SENTINEL_AUTH', 'REDIS_TLS', 'REDIS_TLS_CLIENT_CERT', 'REDIS_TLS_CLIENT_KEY', 'REDIS_TLS_CACERT', 'REDIS_TLS_SKIP_HOSTNAME_VERIFICATION']) {
      if (r.value(name) !== undefined) r.ignore(name, 'read only with REDIS_URL: without it, the store is the policy file’s');
    }
  } else {
    readRedis(r, url);
  }
  if (!isObject(r.at(['store', 'redis']))) {
    r.report.warnings.push('neither REDIS_URL nor the policy file names a Redis: budgets live in this sidecar’s memory, not shared with other replicas');
    for (const name of ['CACHE_KEY_PREFIX', 'EXPIRATION_JITTER_MAX_SECONDS']) if (r.value(name) !== undefined) r.ignore(name, 'the embedded store keeps no keys in Redis');
  } else {
    const prefix = r.value('CACHE_KEY_PREFIX');
    if (prefix !== undefined) r.set(['store', 'redis', 'prefix'], prefix, 'CACHE_KEY_PREFIX');
    const jitter = r.value('EXPIRATION_JITTER_MAX_SECONDS');
    // strconv.ParseInt; 0 (upstream's default) is none. sluice's schema bounds the rest.
    if (jitter !== undefined && !/^[+-]?\d+$/.test(jitter)) r.refuse('EXPIRATION_JITTER_MAX_SECONDS', `expected a whole number of seconds, not ${JSON.stringify(jitter)}`);
    else if (jitter !== undefined && Number(jitter) < 0) r.refuse('EXPIRATION_JITTER_MAX_SECONDS', `expected 0 or more seconds, not ${jitter}`);
    else if (jitter !== undefined && Number(jitter) > 0) r.set(['store', 'redis', 'expiry_jitter'], `${Number(jitter)}s`, 'EXPIRATION_JITTER_MAX_SECONDS');
    else if (jitter !== undefined) r.same('EXPIRATION_JITTER_MAX_SECONDS', 'no expiry jitter (store.redis.expiry_jitter unset)');
  }
}

/** REDIS_URL and the variables that go with it, as one store.redis over the file's. */
function readRedis(r: Reading, url: string): void {
  const type = (r.value('REDIS_TYPE') ?? 'single').toLowerCase();
  const tls = r.boolValue('REDIS_TLS') ?? false;
  const file = r.at(['store', 'redis']);
  const { url: _url, socket: _socket, sentinel: _sentinel, cluster: _cluster, ...kept } = isObject(file) ? file : {};
  const redis: Record<string, unknown> = kept;
  const from = ['REDIS_URL'];
  if (r.value('REDIS_TYPE') !== undefined) from.push('REDIS_TYPE');
  const nodes = (list: string[]) => list.map((node) => node.trim());
  if (type === 'single') {
    // radix dials REDIS_SOCKET_TYPE ("unix" unless set) at REDIS_URL.
    const socket = (r.value('REDIS_SOCKET_TYPE') ?? 'unix').toLowerCase();
    if (socket !== 'tcp' && socket !== 'unix') {
      r.refuse('REDIS_SOCKET_TYPE', `expected tcp or unix, not ${JSON.stringify(r.value('REDIS_SOCKET_TYPE'))}`);
      return;
    }
    if (r.value('REDIS_SOCKET_TYPE') !== undefined) from.push('REDIS_SOCKET_TYPE');
    if (socket === 'unix' && !url.startsWith('/')) {
      const given = r.value('REDIS_SOCKET_TYPE') === undefined ? 'REDIS_SOCKET_TYPE is unset, and upstream’s default is unix' : 'REDIS_SOCKET_TYPE is unix';
      r.refuse('REDIS_URL', `expected the absolute path of a Unix socket (${given}); for host:port, set REDIS_SOCKET_TYPE=tcp`);
      return;
    }
    if (socket === 'unix') redis.socket = url;
    else redis.url = /^rediss?:\/\//.test(url) ? url : `${tls ? 'rediss' : 'redis'}://${url}`;
  } else if (type === 'sentinel') {
    const [master, ...sentinels] = nodes(url.split(','));
    if (sentinels.length === 0) {
      r.refuse('REDIS_URL', 'with REDIS_TYPE=sentinel, expected the master name and then the sentinels: <master>,<host:port>,...');
      return;
    }
    redis.sentinel = { master, nodes: sentinels, ...credentials(r.value('REDIS_SENTINEL_AUTH')) };
    if (r.value('REDIS_SENTINEL_AUTH') !== undefined) from.push('REDIS_SENTINEL_AUTH');
  } else if (type === 'cluster') {
    redis.cluster = { nodes: nodes(url.split(',')) };
  } else {
    r.refuse('REDIS_TYPE', `expected single, sentinel or cluster, not ${JSON.stringify(r.value('REDIS_TYPE'))}`);
    return;
  }
  if (type !== 'sentinel' && r.value('REDIS_SENTINEL_AUTH') !== undefined) r.ignore('REDIS_SENTINEL_AUTH', 'read only with REDIS_TYPE=sentinel');
  if (type !== 'single' && r.value('REDIS_SOCKET_TYPE') !== undefined) r.ignore('REDIS_SOCKET_TYPE', `read only with REDIS_TYPE=single; a ${type} is reached over TCP`);

  const auth = r.value('REDIS_AUTH');
  if (auth !== undefined) {
    // "user:password" or "password", split at the first colon as upstream splits it.
    delete redis.username;
    delete redis.password;
    delete redis.password_file;
    Object.assign(redis, credentials(auth));
    from.push('REDIS_AUTH');
  }
  const tlsFiles = [
    ['REDIS_TLS_CACERT', 'ca_file'],
    ['REDIS_TLS_CLIENT_CERT', 'cert_file'],
    ['REDIS_TLS_CLIENT_KEY', 'key_file'],
  ] as const;
  if (tls) {
    const section: Record<string, unknown> = isObject(redis.tls) ? { ...redis.tls } : {};
    for (const [name, key] of tlsFiles) {
      const path = r.value(name);
      if (path === undefined) continue;
      section[key] = path;
      from.push(name);
    }
    const skipHostname = r.boolValue('REDIS_TLS_SKIP_HOSTNAME_VERIFICATION');
    if (skipHostname !== undefined) {
      section.skip_hostname_verification = skipHostname;
      from.push('REDIS_TLS_SKIP_HOSTNAME_VERIFICATION');
    }
    redis.tls = section;
    from.push('REDIS_TLS');
  } else {
    for (const [name] of tlsFiles) if (r.value(name) !== undefined) r.ignore(name, 'read only with REDIS_TLS=true');
    if (r.value('REDIS_TLS') !== undefined) r.same('REDIS_TLS', 'no TLS towards Redis');
    if (r.value('REDIS_TLS_SKIP_HOSTNAME_VERIFICATION') !== undefined) r.ignore('REDIS_TLS_SKIP_HOSTNAME_VERIFICATION', 'read only with REDIS_TLS=true');
  }
  r.set(['store', 'redis'], redis, ...from);
}

/** upstream's default TRACING_SERVICE_NAME. */
const UPSTREAM_SERVICE_NAME = 'RateLimit';

/** TRACING_* variables whose text is the setting's, as it is. */
const TRACING_TEXTS = [
  ['TRACING_SERVICE_NAME', 'service_name'],
  ['TRACING_SERVICE_NAMESPACE', 'service_namespace'],
  ['TRACING_SERVICE_INSTANCE_ID', 'service_instance_id'],
] as const;

/**
 * TRACING_* as the policy's tracing section. Upstream reads the others only with
 * TRACING_ENABLED=true; so does sluice, unless the policy file enables tracing itself.
 */
function readTracing(r: Reading): void {
  const enabled = r.boolValue('TRACING_ENABLED');
  if (enabled !== undefined) r.set(['tracing', 'enabled'], enabled, 'TRACING_ENABLED');
  if (r.at(['tracing', 'enabled']) !== true) {
    for (const name of [...TRACING_TEXTS.map(([name]) => name), 'TRACING_EXPORTER_PROTOCOL', 'TRACING_SAMPLING_RATE']) {
      if (r.value(name) !== undefined) r.ignore(name, 'read only with TRACING_ENABLED=true');
    }
    return;
  }
  for (const [name, key] of TRACING_TEXTS) {
    const text = r.value(name);
    if (text !== undefined) r.set(['tracing', key], text, name);
  }
  // A Deployment that enables tracing and names no service keeps upstream's name, so that its
  // traces are found where they were.
  if (enabled && r.at(['tracing', 'service_name']) === undefined) r.set(['tracing', 'service_name'], UPSTREAM_SERVICE_NAME, 'TRACING_ENABLED');
  const protocol = r.value('TRACING_EXPORTER_PROTOCOL');
  if (protocol === 'http' || protocol === 'grpc') r.set(['tracing', 'exporter'], protocol, 'TRACING_EXPORTER_PROTOCOL');
  else if (protocol !== undefined) r.refuse('TRACING_EXPORTER_PROTOCOL', `expected http or grpc, not ${JSON.stringify(protocol)}`);
  const rate = r.value('TRACING_SAMPLING_RATE');
  if (rate !== undefined) {
    const value = parseGoFloat(rate);
    // Upstream's TraceIDRatioBased sampler samples every trace from 1 up and none from 0 down.
    if (value !== undefined) r.set(['tracing', 'sampling_rate'], Math.min(1, Math.max(0, value)), 'TRACING_SAMPLING_RATE');
    else r.refuse('TRACING_SAMPLING_RATE', `expected a number from 0 to 1, not ${JSON.stringify(rate)}`);
  }
}

/** Go's strconv.ParseFloat of a decimal or exponent form; undefined when it is not one. */
function parseGoFloat(text: string): number | undefined {
  return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text) ? Number(text) : undefined;
}

/** `host:port` with the host, the port or both replaced (an IPv6 host in brackets). */
function withHostPort(current: string, host: string | undefined, port: string | undefined): string {
  const colon = current.lastIndexOf(':');
  const hostPart = host === undefined ? current.slice(0, colon) : host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${hostPart}:${port ?? current.slice(colon + 1)}`;
}

/** upstream's "user:password" or "password". */
function credentials(auth: string | undefined): { username?: string; password?: string } {
  if (auth === undefined) return {};
  const colon = auth.indexOf(':');
  return colon < 0 ? { password: auth } : { username: auth.slice(0, colon), password: auth.slice(colon + 1) };
}

/** logrus's level names (as its ParseLevel reads them, any case) as pino's. */
const LOGRUS_LEVELS: Readonly<Record<string, LogLevel>> = {
  panic: 'fatal',
  fatal: 'fatal',
  error: 'error',
  warn: 'warn',
  warning: 'warn',
  info: 'info',
  debug: 'debug',
  trace: 'trace',
};

const GO_BOOL: Readonly<Record<string, boolean>> = {
  '1': true,
  t: true,
  T: true,
  true: true,
  TRUE: true,
  True: true,
  '0': false,
  f: false,
  F: false,
  false: false,
  FALSE: false,
  False: false,
};

const GO_DURATION_UNITS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration (`1h30m`, `1.5s`, `300ms`, `0`) in milliseconds; undefined when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  if (text === '0' || text === '+0' || text === '-0') return 0;
  const match = /^([+-]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(text);
  if (!match) return undefined;
  let ms = 0;
  for (const part of match[2]!.matchAll(/(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) ms += Number(part[1]) * GO_DURATION_UNITS[part[2]!]!;
  return match[1] === '-' ? -ms : ms;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The environment being read, and what has come of it so far. */
class Reading {
  readonly report: UpstreamEnvReport = { applied: [], ignored: [], warnings: [], logLevel: null };
  readonly problems: string[] = [];
  readonly sources = new Map<string, string>();
  /** Variables applied, ignored or refused by their own rule (the rest set are ignored with IGNORED's reason). */
  readonly handled = new Set<string>();

  constructor(
    public policy: Record<string, unknown>,
    private readonly env: Environment,
  ) {}

  /** A variable's value; undefined when unset or empty. */
  value(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value === '' ? undefined : value;
  }

  /** A boolean variable as Go's strconv.ParseBool reads it; undefined when unset or (refused) not one. */
  boolValue(name: string): boolean | undefined {
    const text = this.value(name);
    if (text === undefined) return undefined;
    const value = GO_BOOL[text];
    if (value === undefined) this.refuse(name, `expected true or false (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False), not ${JSON.stringify(text)}`);
    return value;
  }

  /** Calls `use` with a boolean variable's value when it is set and is one. */
  bool(name: string, use: (value: boolean) => void): void {
    const value = this.boolValue(name);
    if (value !== undefined) use(value);
  }

  /** The value at a path of the policy being built. */
  at(path: readonly string[]): unknown {
    let node: unknown = this.policy;
    for (const key of path) node = isObject(node) ? node[key] : undefined;
    return node;
  }

  /** Sets a path of the policy (copying every object along it), from these variables. */
  set(path: readonly string[], value: unknown, ...names: string[]): void {
    this.policy = withPath(this.policy, path, value) as Record<string, unknown>;
    const setting = path.join('.');
    this.sources.set(setting, names.join(', '));
    for (const name of names) {
      this.handled.add(name);
      this.report.applied.push({ name, setting });
    }
  }

  /** Removes a path of the policy (a setting the variables replace with another). */
  unset(path: readonly string[]): void {
    if (this.at(path) !== undefined) this.policy = withPath(this.policy, path, undefined) as Record<string, unknown>;
  }

  /** A variable whose value asks for what sluice does anyway. */
  same(name: string, setting: string): void {
    this.handled.add(name);
    this.report.applied.push({ name, setting });
  }

  ignore(name: string, reason: string): void {
    if (this.handled.has(name)) return;
    this.handled.add(name);
    this.report.ignored.push({ name, reason });
  }

  refuse(name: string, message: string): void {
    this.handled.add(name);
    this.problems.push(`${name} (environment, read because envoy.upstream_env is true): ${message}`);
  }
}

function withPath(node: unknown, path: readonly string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy: Record<string, unknown> = isObject(node) ? { ...node } : {};
  copy[path[0]!] = withPath(copy[path[0]!], path.slice(1), value);
  return copy;
}
