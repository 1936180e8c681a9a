// envoy.upstream_env: a policy read with envoyproxy/ratelimit's environment variables, as a
// Deployment's env block sets them. Each variable either becomes a setting, is reported as
// ignored with why, or stops the load naming itself; SLUICE_* variables still win.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/config/load.js';
import type { Policy } from '../../src/config/policy.js';
import { applyUpstreamEnv, IGNORED, MAPPED, parseGoDuration, UPSTREAM_VARIABLES } from '../../src/config/upstream-env.js';
import { packageRoot } from '../../src/paths.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-upstream-env-'));

/** Certificates for the gRPC server's TLS variables. */
let tls: TlsFiles;
beforeAll(async () => {
  tls = await makeTlsFiles();
});
afterAll(() => tls?.remove());
const POLICY = `envoy:\n  config_dir: ${dir}\n  upstream_env: true\n`;

const load = (env: Record<string, string>, yaml = POLICY): Policy => parsePolicy(yaml, 'policy.yaml', env);

function problems(env: Record<string, string>, yaml = POLICY): string[] {
  try {
    load(env, yaml);
  } catch (err) {
    if (err instanceof PolicyError) return err.problems;
    throw err;
  }
  throw new Error('expected the policy to be refused');
}

/** envoyproxy/ratelimit's environment variables: every envconfig name in its src/settings/settings.go (main, July 2026). */
const SETTINGS_GO = `HOST PORT DEBUG_HOST DEBUG_PORT GRPC_UDS GRPC_HOST GRPC_PORT GRPC_MAX_CONNECTION_AGE GRPC_MAX_CONNECTION_AGE_GRACE
GRPC_SERVER_USE_TLS GRPC_SERVER_TLS_CERT GRPC_SERVER_TLS_KEY GRPC_CLIENT_TLS_CACERT GRPC_CLIENT_TLS_SAN LOG_LEVEL LOG_FORMAT CONFIG_TYPE
FORCE_START_WITHOUT_INITIAL_CONFIG CONFIG_GRPC_XDS_NODE_ID CONFIG_GRPC_XDS_NODE_METADATA CONFIG_GRPC_XDS_SERVER_URL
CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS CONFIG_GRPC_XDS_SERVER_USE_TLS
CONFIG_GRPC_XDS_CLIENT_TLS_CERT CONFIG_GRPC_XDS_CLIENT_TLS_KEY CONFIG_GRPC_XDS_SERVER_TLS_CACERT CONFIG_GRPC_XDS_SERVER_TLS_SAN
XDS_CLIENT_BACKOFF_INITIAL_INTERVAL XDS_CLIENT_BACKOFF_MAX_INTERVAL XDS_CLIENT_BACKOFF_RANDOM_FACTOR XDS_CLIENT_BACKOFF_JITTER
XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES USE_DOG_STATSD USE_DOG_STATSD_MOGRIFIERS USE_STATSD STATSD_HOST STATSD_PORT EXTRA_TAGS
STATS_FLUSH_INTERVAL DISABLE_STATS USE_PROMETHEUS PROMETHEUS_ADDR PROMETHEUS_PATH PROMETHEUS_MAPPER_YAML
PROMETHEUS_RESPONSE_TIME_AS_MILLISECONDS RUNTIME_ROOT RUNTIME_SUBDIRECTORY RUNTIME_APPDIRECTORY RUNTIME_IGNOREDOTFILES
RUNTIME_WATCH_ROOT EXPIRATION_JITTER_MAX_SECONDS LOCAL_CACHE_SIZE_IN_BYTES NEAR_LIMIT_RATIO CACHE_KEY_PREFIX BACKEND_TYPE
STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT LIMIT_RESPONSE_HEADERS_ENABLED LIMIT_LIMIT_HEADER LIMIT_REMAINING_HEADER LIMIT_RESET_HEADER
HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED REDIS_SOCKET_TYPE REDIS_TYPE REDIS_URL REDIS_POOL_SIZE REDIS_AUTH REDIS_TLS
REDIS_TLS_CLIENT_CERT REDIS_TLS_CLIENT_KEY REDIS_TLS_CACERT REDIS_TLS_SKIP_HOSTNAME_VERIFICATION REDIS_PIPELINE_WINDOW
REDIS_PIPELINE_LIMIT REDIS_CLUSTER_PIPELINE_PARALLELISM REDIS_PERSECOND REDIS_PERSECOND_SOCKET_TYPE REDIS_PERSECOND_TYPE
REDIS_PERSECOND_URL REDIS_PERSECOND_POOL_SIZE REDIS_PERSECOND_AUTH REDIS_PERSECOND_TLS REDIS_SENTINEL_AUTH
REDIS_PERSECOND_SENTINEL_AUTH REDIS_PERSECOND_PIPELINE_WINDOW REDIS_PERSECOND_PIPELINE_LIMIT
REDIS_PERSECOND_CLUSTER_PIPELINE_PARALLELISM REDIS_HEALTH_CHECK_ACTIVE_CONNECTION REDIS_TIMEOUT REDIS_PERSECOND_TIMEOUT
REDIS_POOL_ON_EMPTY_BEHAVIOR REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR REDIS_STARTUP_INITIAL_INTERVAL REDIS_STARTUP_MAX_INTERVAL
REDIS_STARTUP_MAX_ELAPSED_TIME MEMCACHE_HOST_PORT MEMCACHE_MAX_IDLE_CONNS MEMCACHE_SRV MEMCACHE_SRV_REFRESH MEMCACHE_TLS
MEMCACHE_TLS_CLIENT_CERT MEMCACHE_TLS_CLIENT_KEY MEMCACHE_TLS_CACERT MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION SHADOW_MODE
QUOTA_MODE RESPONSE_DYNAMIC_METADATA MERGE_DOMAIN_CONFIG TRACING_ENABLED TRACING_SERVICE_NAME TRACING_SERVICE_NAMESPACE
TRACING_SERVICE_INSTANCE_ID TRACING_EXPORTER_PROTOCOL TRACING_SAMPLING_RATE`.split(/\s+/);

describe('the variables', () => {
  it('are all of upstream’s, each read or ignored (never both), and each in the table of docs/envoy.md', () => {
    expect([...UPSTREAM_VARIABLES].sort()).toEqual([...SETTINGS_GO].sort());
    expect(MAPPED.filter((name) => Object.hasOwn(IGNORED, name))).toEqual([]);
    const docs = readFileSync(join(packageRoot, 'docs', 'envoy.md'), 'utf8');
    const rows = new Set([...docs.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]));
    expect(SETTINGS_GO.filter((name) => !rows.has(name))).toEqual([]);
  });

  it('are read only with upstream_env: true', () => {
    const off = load({ SHADOW_MODE: 'true', NEAR_LIMIT_RATIO: '0.5' }, `envoy:\n  config_dir: ${dir}\n`);
    expect(off.envoy).toMatchObject({ shadowMode: false, nearLimitRatio: 0.8, upstreamEnv: null });
  });
});

describe('settings that change answers', () => {
  it('SHADOW_MODE, LIMIT_*, NEAR_LIMIT_RATIO and HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED, over the file', () => {
    const policy = load(
      {
        SHADOW_MODE: 'true',
        LIMIT_RESPONSE_HEADERS_ENABLED: 'True',
        LIMIT_LIMIT_HEADER: 'X-RateLimit-Limit',
        LIMIT_REMAINING_HEADER: 'X-RateLimit-Remaining',
        LIMIT_RESET_HEADER: 'X-RateLimit-Reset',
        NEAR_LIMIT_RATIO: '0.9',
        HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED: 't',
      },
      `${POLICY}  near_limit_ratio: 0.5\n  shadow_mode: false\n`,
    );
    expect(policy.envoy).toMatchObject({
      shadowMode: true,
      responseHeaders: true,
      responseHeaderNames: { limit: 'X-RateLimit-Limit', remaining: 'X-RateLimit-Remaining', reset: 'X-RateLimit-Reset' },
      nearLimitRatio: 0.9,
      requireDomains: true,
    });
    expect(policy.envoy!.upstreamEnv!.applied).toEqual(
      expect.arrayContaining([
        { name: 'SHADOW_MODE', setting: 'envoy.shadow_mode' },
        { name: 'LIMIT_LIMIT_HEADER', setting: 'envoy.response_header_names.limit' },
        { name: 'NEAR_LIMIT_RATIO', setting: 'envoy.near_limit_ratio' },
        { name: 'HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED', setting: 'envoy.require_domains' },
      ]),
    );
  });

  it('false and unset leave sluice’s defaults, which are upstream’s', () => {
    const policy = load({ SHADOW_MODE: 'false', LIMIT_RESPONSE_HEADERS_ENABLED: 'F' });
    expect(policy.envoy).toMatchObject({ shadowMode: false, responseHeaders: false, nearLimitRatio: 0.8, requireDomains: false });
    expect(policy.envoy!.responseHeaderNames).toEqual({ limit: 'RateLimit-Limit', remaining: 'RateLimit-Remaining', reset: 'RateLimit-Reset' });
  });

  it('MERGE_DOMAIN_CONFIG becomes envoy.merge_domains', () => {
    expect(load({ MERGE_DOMAIN_CONFIG: 'true' }).envoy!.mergeDomains).toBe(true);
    expect(load({}).envoy!.mergeDomains).toBe(false);
  });

  it('QUOTA_MODE and RESPONSE_DYNAMIC_METADATA become envoy.quota_mode and envoy.response_dynamic_metadata', () => {
    const policy = load({ QUOTA_MODE: 'true', RESPONSE_DYNAMIC_METADATA: '1' });
    expect(policy.envoy).toMatchObject({ quotaMode: true, responseDynamicMetadata: true });
    expect(policy.envoy!.upstreamEnv!.applied).toEqual([
      { name: 'QUOTA_MODE', setting: 'envoy.quota_mode' },
      { name: 'RESPONSE_DYNAMIC_METADATA', setting: 'envoy.response_dynamic_metadata' },
    ]);
    // The policy the variables are applied to is left as it was.
    const file = { envoy: { upstream_env: true } };
    expect(applyUpstreamEnv(file, { QUOTA_MODE: 'true' }).policy).toEqual({ envoy: { upstream_env: true, quota_mode: true } });
    expect(file).toEqual({ envoy: { upstream_env: true } });
  });

  it('LOCAL_CACHE_SIZE_IN_BYTES other than 0 turns envoy.lease on, over the file; the file’s other lease settings stay', () => {
    const policy = load({ LOCAL_CACHE_SIZE_IN_BYTES: '1048576' }, `${POLICY}  lease: { enabled: false, ttl: 5s }\n`);
    expect(policy.envoy!.lease).toEqual({ enabled: true, maxFraction: 0.1, ttlMs: 5_000 });
    expect(policy.envoy!.upstreamEnv!.applied).toEqual([{ name: 'LOCAL_CACHE_SIZE_IN_BYTES', setting: 'envoy.lease.enabled' }]);
    // Not 0 is on, as upstream makes its cache of any size but 0.
    expect(load({ LOCAL_CACHE_SIZE_IN_BYTES: '-1' }, `${POLICY}  lease: { enabled: false }\n`).envoy!.lease.enabled).toBe(true);
  });

  it('LOCAL_CACHE_SIZE_IN_BYTES 0, upstream’s default, leaves envoy.lease as the file says, and says so', () => {
    expect(load({ LOCAL_CACHE_SIZE_IN_BYTES: '0' }, `${POLICY}  lease: { enabled: false }\n`).envoy!.lease.enabled).toBe(false);
    const report = load({ LOCAL_CACHE_SIZE_IN_BYTES: '0' }).envoy!.upstreamEnv!;
    expect(report.applied).toEqual([]);
    expect(report.ignored).toEqual([{ name: 'LOCAL_CACHE_SIZE_IN_BYTES', reason: expect.stringMatching(/^0 \(upstream’s default: no local cache\) leaves envoy\.lease as the policy file says/) }]);
  });

  it('refuses values upstream would refuse, naming the variable', () => {
    expect(problems({ SHADOW_MODE: 'yes', NEAR_LIMIT_RATIO: 'most', LOCAL_CACHE_SIZE_IN_BYTES: '1MiB' })).toEqual([
      'SHADOW_MODE (environment, read because envoy.upstream_env is true): expected true or false (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False), not "yes"',
      'NEAR_LIMIT_RATIO (environment, read because envoy.upstream_env is true): expected a number from 0 to 1, not "most"',
      'LOCAL_CACHE_SIZE_IN_BYTES (environment, read because envoy.upstream_env is true): expected a whole number of bytes, not "1MiB"',
    ]);
  });

  it('a value sluice’s bounds refuse names the variable it came from, not a line of the file', () => {
    expect(problems({ NEAR_LIMIT_RATIO: '1.5', LIMIT_RESET_HEADER: 'Reset Time' }, `${POLICY}  near_limit_ratio: 0.5\n`)).toEqual([
      expect.stringMatching(/^envoy\.response_header_names\.reset \(from LIMIT_RESET_HEADER\): "Reset Time": expected an HTTP header name/),
      'envoy.near_limit_ratio (from NEAR_LIMIT_RATIO): 1.5: expected a number from 0 to 1',
    ]);
  });
});

describe('where config files are', () => {
  it('RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY, with upstream’s defaults for the parts unset', () => {
    const yaml = 'envoy:\n  upstream_env: true\n';
    expect(load({ RUNTIME_ROOT: '/data', RUNTIME_SUBDIRECTORY: 'ratelimit', RUNTIME_APPDIRECTORY: 'rules' }, yaml).envoy!.configDir).toBe('/data/ratelimit/rules');
    expect(load({ RUNTIME_SUBDIRECTORY: 'ratelimit' }, yaml).envoy!.configDir).toBe('/srv/runtime_data/current/ratelimit/config');
    expect(load({ RUNTIME_ROOT: '/data' }, `${POLICY}`).envoy!).toMatchObject({ configDir: '/data/config', configDirAt: 'envoy.config_dir (from RUNTIME_ROOT)' });
  });

  it('CONFIG_TYPE other than FILE or GRPC_XDS_SOTW stops the load', () => {
    expect(problems({ CONFIG_TYPE: 'GRPC_XDS_DELTA' })).toEqual([expect.stringMatching(/^CONFIG_TYPE \(environment.*\): expected FILE or GRPC_XDS_SOTW, not "GRPC_XDS_DELTA"/)]);
    expect(load({ CONFIG_TYPE: 'FILE' }).envoy!.upstreamEnv!.applied).toContainEqual({ name: 'CONFIG_TYPE', setting: 'envoy.config_dir (config files)' });
  });
});

describe('config from an xDS management server (CONFIG_TYPE=GRPC_XDS_SOTW)', () => {
  it('becomes envoy.xds in place of config_dir, with upstream’s defaults for the server and the node id', () => {
    const policy = load({ CONFIG_TYPE: 'GRPC_XDS_SOTW', RUNTIME_ROOT: '/data' });
    expect(policy.envoy).toMatchObject({
      configDir: null,
      xds: { server: 'localhost:18000', nodeId: 'default', nodeMetadata: {}, headers: {}, tls: null, retry: { initialMs: 1_000, maxMs: 60_000, jitter: 0.5 }, maxMessageBytes: 4 * 1024 * 1024 },
    });
    expect(policy.envoy!.upstreamEnv!.ignored).toContainEqual({ name: 'RUNTIME_ROOT', reason: 'read only with CONFIG_TYPE=FILE (config files)' });
  });

  it('reads CONFIG_GRPC_XDS_* and XDS_CLIENT_* as upstream does', () => {
    const policy = load({
      CONFIG_TYPE: 'GRPC_XDS_SOTW',
      CONFIG_GRPC_XDS_SERVER_URL: 'xds.example:18001',
      CONFIG_GRPC_XDS_NODE_ID: 'edge-7',
      CONFIG_GRPC_XDS_NODE_METADATA: 'team=payments,zone=eu=1,broken',
      CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS: 'authorization:Bearer a:b,x-env:prod',
      XDS_CLIENT_BACKOFF_INITIAL_INTERVAL: '500ms',
      XDS_CLIENT_BACKOFF_MAX_INTERVAL: '2m',
      XDS_CLIENT_BACKOFF_JITTER: 'false',
      XDS_CLIENT_BACKOFF_RANDOM_FACTOR: '0.5',
      CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL: '3s',
      XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES: '8388608',
      CONFIG_GRPC_XDS_SERVER_TLS_SAN: 'ignored.example',
    });
    expect(policy.envoy!.xds).toEqual({
      server: 'xds.example:18001',
      nodeId: 'edge-7',
      nodeMetadata: { team: 'payments', zone: 'eu=1' },
      headers: { authorization: 'Bearer a:b', 'x-env': 'prod' },
      tls: null,
      retry: { initialMs: 500, maxMs: 120_000, jitter: 0 },
      maxMessageBytes: 8 * 1024 * 1024,
    });
    const report = policy.envoy!.upstreamEnv!;
    expect(report.warnings).toContainEqual('CONFIG_GRPC_XDS_NODE_METADATA: "broken" dropped: expected key=value, as upstream reads it');
    expect(report.ignored.map((entry) => entry.name).sort()).toEqual(['CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL', 'CONFIG_GRPC_XDS_SERVER_TLS_SAN', 'XDS_CLIENT_BACKOFF_RANDOM_FACTOR']);
  });

  it('CONFIG_GRPC_XDS_SERVER_USE_TLS with the CA, the client certificate and the name to check', async () => {
    const files = await makeTlsFiles();
    try {
      const policy = load({
        CONFIG_TYPE: 'GRPC_XDS_SOTW',
        CONFIG_GRPC_XDS_SERVER_USE_TLS: 'true',
        CONFIG_GRPC_XDS_SERVER_TLS_CACERT: files.caFile,
        CONFIG_GRPC_XDS_CLIENT_TLS_CERT: files.clientCertFile,
        CONFIG_GRPC_XDS_CLIENT_TLS_KEY: files.clientKeyFile,
        CONFIG_GRPC_XDS_SERVER_TLS_SAN: 'xds.internal',
      });
      expect(policy.envoy!.xds!.tls).toEqual({
        ca: readFileSync(files.caFile, 'utf8'),
        cert: readFileSync(files.clientCertFile, 'utf8'),
        key: readFileSync(files.clientKeyFile, 'utf8'),
        serverName: 'xds.internal',
      });
      expect(problems({ CONFIG_TYPE: 'GRPC_XDS_SOTW', CONFIG_GRPC_XDS_SERVER_USE_TLS: 'true', CONFIG_GRPC_XDS_CLIENT_TLS_CERT: files.clientCertFile })).toEqual([
        expect.stringMatching(/^envoy\.xds\.tls\.cert_file \(from CONFIG_GRPC_XDS_CLIENT_TLS_CERT\): cert_file needs key_file too/),
      ]);
    } finally {
      files.remove();
    }
  });

  it('refuses what upstream would refuse, and what sluice cannot reach, naming the variable', () => {
    expect(problems({ CONFIG_TYPE: 'GRPC_XDS_SOTW', CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS: 'authorization' })).toEqual([
      expect.stringMatching(/^CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS \(environment.*\): expected key:value pairs separated by commas, not "authorization"/),
    ]);
    expect(problems({ CONFIG_TYPE: 'GRPC_XDS_SOTW', XDS_CLIENT_BACKOFF_MAX_INTERVAL: '10 seconds' })).toEqual([expect.stringMatching(/^XDS_CLIENT_BACKOFF_MAX_INTERVAL \(environment.*\): expected a Go duration/)]);
    expect(problems({ CONFIG_TYPE: 'GRPC_XDS_SOTW', CONFIG_GRPC_XDS_SERVER_URL: 'dns:///xds.example:18000' })).toEqual([
      expect.stringMatching(/^envoy\.xds\.server \(from CONFIG_GRPC_XDS_SERVER_URL\): "dns:\/\/\/xds.example:18000": expected the management server as host:port/),
    ]);
    expect(problems({ CONFIG_TYPE: 'GRPC_XDS_SOTW', XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES: '1000000000' })).toEqual([
      expect.stringMatching(/^envoy\.xds\.max_message_size \(from XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES\): 1000000000: expected at most 67108864/),
    ]);
  });

  it('are ignored without it, with why', () => {
    const report = load({ CONFIG_GRPC_XDS_SERVER_URL: 'xds.example:18000', XDS_CLIENT_BACKOFF_JITTER: 'false' }).envoy!.upstreamEnv!;
    expect(report.ignored).toEqual([
      { name: 'CONFIG_GRPC_XDS_SERVER_URL', reason: 'read only with CONFIG_TYPE=GRPC_XDS_SOTW' },
      { name: 'XDS_CLIENT_BACKOFF_JITTER', reason: 'read only with CONFIG_TYPE=GRPC_XDS_SOTW' },
    ]);
  });
});

describe('the server', () => {
  it('GRPC_HOST and GRPC_PORT each replace their part of server.listen; GRPC_UDS a unix socket', () => {
    expect(load({ GRPC_PORT: '8081' }).server.listen).toBe('127.0.0.1:8081');
    expect(load({ GRPC_HOST: '0.0.0.0', GRPC_PORT: '8081' }).server.listen).toBe('0.0.0.0:8081');
    expect(load({ GRPC_HOST: '::' }, `server:\n  listen: 127.0.0.1:7000\n${POLICY}`).server.listen).toBe('[::]:7000');
    const uds = load({ GRPC_UDS: '/run/ratelimit.sock', GRPC_PORT: '8081' });
    expect(uds.server.listen).toBe('unix:/run/ratelimit.sock');
    expect(uds.envoy!.upstreamEnv!.ignored).toContainEqual({ name: 'GRPC_PORT', reason: 'GRPC_UDS is set: sluice listens on the socket, as upstream does' });
  });

  it('HOST and PORT serve upstream’s HTTP port on envoy.http_listen, each replacing its part; a part neither gives is upstream’s (every interface, 8080)', () => {
    expect(load({}).envoy!.httpListen).toBeNull();
    expect(load({ PORT: '8080' }).envoy!.httpListen).toBe(':8080');
    expect(load({ HOST: '127.0.0.1' }).envoy!.httpListen).toBe('127.0.0.1:8080');
    expect(load({ HOST: '::1', PORT: '9000' }).envoy!.httpListen).toBe('[::1]:9000');
    expect(load({ PORT: '9000' }, `${POLICY}  http_listen: 127.0.0.1:7000\n`).envoy!.httpListen).toBe('127.0.0.1:9000');
    expect(load({ HOST: '0.0.0.0', PORT: '8080' }).envoy!.upstreamEnv!.applied).toEqual([
      { name: 'HOST', setting: 'envoy.http_listen' },
      { name: 'PORT', setting: 'envoy.http_listen' },
    ]);
    expect(problems({ PORT: 'eighty' })).toEqual(['envoy.http_listen (from PORT): ":eighty": expected host:port, or :port (every interface)']);
  });

  it('SLUICE_LISTEN and SLUICE_ADMIN still win', () => {
    const policy = load({ GRPC_PORT: '8081', USE_PROMETHEUS: 'true', SLUICE_LISTEN: '127.0.0.1:9000', SLUICE_ADMIN: 'off' });
    expect(policy.server).toMatchObject({ listen: '127.0.0.1:9000', admin: null });
  });

  it('GRPC_MAX_CONNECTION_AGE and _GRACE as Go durations; sluice’s bounds name the variable', () => {
    expect(load({ GRPC_MAX_CONNECTION_AGE: '1h30m', GRPC_MAX_CONNECTION_AGE_GRACE: '90s' }).server.connections).toMatchObject({ maxAgeMs: 5_400_000, maxAgeGraceMs: 90_000 });
    expect(problems({ GRPC_MAX_CONNECTION_AGE: '48h' })).toEqual(['server.connection_max_age (from GRPC_MAX_CONNECTION_AGE): "172800000ms": expected at most 1d']);
    expect(problems({ GRPC_MAX_CONNECTION_AGE: 'forever' })).toEqual([expect.stringMatching(/^GRPC_MAX_CONNECTION_AGE \(environment.*\): expected a Go duration/)]);
  });

  it('GRPC_SERVER_USE_TLS=true serves TLS: the files of GRPC_SERVER_TLS_CERT and the rest become server.tls', () => {
    const policy = load({
      GRPC_SERVER_USE_TLS: 'true',
      GRPC_SERVER_TLS_CERT: tls.certFile,
      GRPC_SERVER_TLS_KEY: tls.keyFile,
      GRPC_CLIENT_TLS_CACERT: tls.caFile,
      GRPC_CLIENT_TLS_SAN: 'envoy.internal',
    });
    expect(policy.server.tls).toEqual({ certFile: tls.certFile, keyFile: tls.keyFile, clientCaFile: tls.caFile, clientSan: 'envoy.internal' });
    expect(policy.envoy!.upstreamEnv!.applied).toEqual(
      expect.arrayContaining([
        { name: 'GRPC_SERVER_USE_TLS', setting: 'server.tls' },
        { name: 'GRPC_SERVER_TLS_CERT', setting: 'server.tls.cert_file' },
        { name: 'GRPC_SERVER_TLS_KEY', setting: 'server.tls.key_file' },
        { name: 'GRPC_CLIENT_TLS_CACERT', setting: 'server.tls.client_ca_file' },
        { name: 'GRPC_CLIENT_TLS_SAN', setting: 'server.tls.client_san' },
      ]),
    );
    // Each over the policy file's own server.tls.
    const file = `server:\n  tls: { cert_file: ${tls.certFile}, key_file: ${tls.keyFile}, client_ca_file: ${tls.otherCaFile} }\n${POLICY}`;
    expect(load({ GRPC_SERVER_USE_TLS: 'true', GRPC_CLIENT_TLS_CACERT: tls.caFile }, file).server.tls).toMatchObject({ certFile: tls.certFile, clientCaFile: tls.caFile });
  });

  it('GRPC_SERVER_USE_TLS: a file that does not load is named by its variable; one missing by GRPC_SERVER_USE_TLS', () => {
    expect(problems({ GRPC_SERVER_USE_TLS: 'true', GRPC_SERVER_TLS_CERT: '/tls/cert.pem', GRPC_SERVER_TLS_KEY: tls.keyFile })).toEqual([
      'server.tls.cert_file (from GRPC_SERVER_TLS_CERT): cannot read /tls/cert.pem: no such file',
    ]);
    expect(problems({ GRPC_SERVER_USE_TLS: 'true', GRPC_SERVER_TLS_CERT: tls.certFile })).toEqual([
      'server.tls.key_file (from GRPC_SERVER_USE_TLS): required (the private key of cert_file: a PEM file)',
    ]);
  });

  it('the TLS files without GRPC_SERVER_USE_TLS=true are ignored, as upstream ignores them; so is a SAN without a client CA', () => {
    const off = load({ GRPC_SERVER_USE_TLS: 'false', GRPC_SERVER_TLS_CERT: '/tls/cert.pem' });
    expect(off.server.tls).toBeNull();
    expect(off.envoy!.upstreamEnv!.ignored).toEqual([{ name: 'GRPC_SERVER_TLS_CERT', reason: 'read only with GRPC_SERVER_USE_TLS=true' }]);
    expect(off.envoy!.upstreamEnv!.applied).toContainEqual({ name: 'GRPC_SERVER_USE_TLS', setting: 'server.listen in plaintext (no server.tls)' });
    const noCa = load({ GRPC_SERVER_USE_TLS: 'true', GRPC_SERVER_TLS_CERT: tls.certFile, GRPC_SERVER_TLS_KEY: tls.keyFile, GRPC_CLIENT_TLS_SAN: 'envoy.internal' });
    expect(noCa.server.tls).toMatchObject({ clientCaFile: null, clientSan: null });
    expect(noCa.envoy!.upstreamEnv!.ignored).toEqual([
      { name: 'GRPC_CLIENT_TLS_SAN', reason: 'read only with GRPC_CLIENT_TLS_CACERT (or server.tls.client_ca_file): without a client CA no client certificate is asked for' },
    ]);
  });

  it('GRPC_SERVER_USE_TLS=false leaves the policy file’s server.tls on, and says so', () => {
    const file = `server:\n  tls: { cert_file: ${tls.certFile}, key_file: ${tls.keyFile} }\n${POLICY}`;
    const policy = load({ GRPC_SERVER_USE_TLS: 'false' }, file);
    expect(policy.server.tls).toMatchObject({ certFile: tls.certFile });
    expect(policy.envoy!.upstreamEnv!.ignored).toEqual([
      { name: 'GRPC_SERVER_USE_TLS', reason: 'the policy file’s server.tls stays: sluice does not serve in plaintext what its policy says to serve over TLS' },
    ]);
  });

  it('USE_PROMETHEUS serves /metrics on PROMETHEUS_ADDR (upstream’s default :9090)', () => {
    expect(load({ USE_PROMETHEUS: 'true' }).server.admin).toBe(':9090');
    expect(load({ USE_PROMETHEUS: 'true', PROMETHEUS_ADDR: '127.0.0.1:9102', PROMETHEUS_PATH: '/metrics' }).server.admin).toBe('127.0.0.1:9102');
    const other = load({ PROMETHEUS_ADDR: ':9102', PROMETHEUS_PATH: '/stats' });
    expect(other.server.admin).toBe('127.0.0.1:9464');
    expect(other.envoy!.upstreamEnv!.ignored).toEqual([
      { name: 'PROMETHEUS_ADDR', reason: 'read only with USE_PROMETHEUS=true' },
      { name: 'PROMETHEUS_PATH', reason: 'sluice serves its metrics at /metrics only' },
    ]);
  });

  it('EXTRA_TAGS (name:value,name:value, as envconfig reads a map) become server.metric_labels', () => {
    expect(load({ EXTRA_TAGS: 'foo:bar,a:b' }).server.metricLabels).toEqual({ foo: 'bar', a: 'b' });
    expect(load({ EXTRA_TAGS: 'zone:eu:1' }).server.metricLabels).toEqual({ zone: 'eu:1' });
    expect(problems({ EXTRA_TAGS: 'foo:bar,oops' })).toEqual([expect.stringMatching(/^EXTRA_TAGS .*expected name:value pairs separated by commas, not "oops"$/)]);
    expect(problems({ EXTRA_TAGS: 'domain:x' }).join('\n')).toMatch(/EXTRA_TAGS.*"domain" is a label of sluice's own metrics/);
  });

  it('LOG_LEVEL as logrus names it, any case', () => {
    expect(load({ LOG_LEVEL: 'WARN' }).envoy!.upstreamEnv!.logLevel).toBe('warn');
    expect(load({ LOG_LEVEL: 'panic' }).envoy!.upstreamEnv!.logLevel).toBe('fatal');
    expect(load({}).envoy!.upstreamEnv!.logLevel).toBeNull();
    expect(problems({ LOG_LEVEL: 'loud' })).toEqual([expect.stringMatching(/^LOG_LEVEL .*expected one of panic, fatal, error, warn, warning, info, debug, trace, not "loud"$/)]);
  });
});

describe('the store', () => {
  const pem = join(dir, 'ca.pem');
  writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

  it('EXPIRATION_JITTER_MAX_SECONDS (whole seconds; 0 is none) becomes store.redis.expiry_jitter', () => {
    const redis = { REDIS_SOCKET_TYPE: 'tcp', REDIS_URL: 'redis:6379' };
    expect(load({ ...redis, EXPIRATION_JITTER_MAX_SECONDS: '300' }).store.redis!.expiryJitterMs).toBe(300_000);
    expect(load({ ...redis, EXPIRATION_JITTER_MAX_SECONDS: '0' }).store.redis!.expiryJitterMs).toBe(0);
    expect(load(redis).store.redis!.expiryJitterMs).toBe(0);
    expect(problems({ ...redis, EXPIRATION_JITTER_MAX_SECONDS: '5m' })).toEqual([expect.stringMatching(/^EXPIRATION_JITTER_MAX_SECONDS .*expected a whole number of seconds, not "5m"$/)]);
    expect(problems({ ...redis, EXPIRATION_JITTER_MAX_SECONDS: '172800' }).join('\n')).toMatch(/store\.redis\.expiry_jitter \(from EXPIRATION_JITTER_MAX_SECONDS\).*expected at most 1d/);
    expect(load({ EXPIRATION_JITTER_MAX_SECONDS: '300' }).envoy!.upstreamEnv!.ignored).toContainEqual({ name: 'EXPIRATION_JITTER_MAX_SECONDS', reason: 'the embedded store keeps no keys in Redis' });
  });

  it('REDIS_URL host:port over TCP, with REDIS_AUTH as user:password and CACHE_KEY_PREFIX', () => {
    const policy = load({ REDIS_SOCKET_TYPE: 'tcp', REDIS_URL: 'redis.default:6379', REDIS_AUTH: 'app:s3cret:x', CACHE_KEY_PREFIX: 'edge_' });
    expect(policy.store.redis).toMatchObject({
      topology: { kind: 'standalone', node: { host: 'redis.default', port: 6379 }, db: 0 },
      username: 'app',
      password: 's3cret:x',
      tls: null,
      prefix: 'edge_',
    });
    // Secrets are named, never shown.
    expect(JSON.stringify(policy.envoy!.upstreamEnv)).not.toContain('s3cret');
  });

  it('REDIS_AUTH as a password alone replaces the file’s; the file’s prefix and timeout stay', () => {
    const yaml = `store:\n  redis: { url: redis://old:6379, password: filepass, prefix: mine }\n  timeout: 50ms\n${POLICY}`;
    const policy = load({ REDIS_SOCKET_TYPE: 'TCP', REDIS_URL: 'new:6380', REDIS_AUTH: 'envpass' }, yaml);
    expect(policy.store).toMatchObject({ timeoutMs: 50, redis: { topology: { node: { host: 'new', port: 6380 } }, username: null, password: 'envpass', prefix: 'mine' } });
  });

  it('REDIS_TLS with REDIS_TLS_CACERT', () => {
    const policy = load({ REDIS_SOCKET_TYPE: 'tcp', REDIS_URL: 'redis:6379', REDIS_TLS: 'true', REDIS_TLS_CACERT: pem });
    expect(policy.store.redis!.tls).toMatchObject({ ca: expect.stringContaining('BEGIN CERTIFICATE'), verify: 'full' });
  });

  it('REDIS_TLS_SKIP_HOSTNAME_VERIFICATION: the chain is still checked, the name is not; false checks both, over the file', () => {
    const env = { REDIS_SOCKET_TYPE: 'tcp', REDIS_URL: 'redis:6379', REDIS_TLS: 'true', REDIS_TLS_CACERT: pem };
    const skipping = load({ ...env, REDIS_TLS_SKIP_HOSTNAME_VERIFICATION: 'true' });
    expect(skipping.store.redis!.tls).toMatchObject({ ca: expect.stringContaining('BEGIN CERTIFICATE'), verify: 'chain' });
    expect(skipping.envoy!.upstreamEnv!.applied).toContainEqual({ name: 'REDIS_TLS_SKIP_HOSTNAME_VERIFICATION', setting: 'store.redis' });
    const file = `store:\n  redis: { url: redis://old:6379, tls: { skip_hostname_verification: true } }\n${POLICY}`;
    expect(load({ ...env, REDIS_TLS_SKIP_HOSTNAME_VERIFICATION: 'False' }, file).store.redis!.tls!.verify).toBe('full');
    expect(problems({ ...env, REDIS_TLS_SKIP_HOSTNAME_VERIFICATION: 'yes' })).toEqual([expect.stringMatching(/^REDIS_TLS_SKIP_HOSTNAME_VERIFICATION .*expected true or false/)]);
  });

  it('REDIS_TYPE sentinel (master, then sentinels) with REDIS_SENTINEL_AUTH, and cluster', () => {
    const sentinel = load({ REDIS_TYPE: 'SENTINEL', REDIS_URL: 'mymaster,s1:26379,s2:26379', REDIS_SENTINEL_AUTH: 'sentinelpass' });
    expect(sentinel.store.redis!.topology).toEqual({
      kind: 'sentinel',
      master: 'mymaster',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      username: null,
      password: 'sentinelpass',
    });
    const cluster = load({ REDIS_TYPE: 'cluster', REDIS_URL: 'n1:7000,n2:7001' });
    expect(cluster.store.redis!.topology).toEqual({ kind: 'cluster', nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }] });
  });

  it('SLUICE_REDIS_URL still wins', () => {
    const policy = load({ REDIS_SOCKET_TYPE: 'tcp', REDIS_URL: 'envredis:6379', SLUICE_REDIS_URL: 'redis://sluice:6379' });
    expect(policy.store.redis!.topology).toMatchObject({ node: { host: 'sluice' } });
  });

  it('REDIS_SOCKET_TYPE unix (upstream’s default) reads REDIS_URL as the path of a Unix socket', () => {
    expect(load({ REDIS_URL: '/var/run/nutcracker/ratelimit.sock' }).store.redis!.topology).toEqual({ kind: 'socket', path: '/var/run/nutcracker/ratelimit.sock' });
    expect(load({ REDIS_SOCKET_TYPE: 'unix', REDIS_URL: '/run/redis.sock', REDIS_AUTH: 'pw' }).store.redis).toMatchObject({ topology: { kind: 'socket', path: '/run/redis.sock' }, password: 'pw' });
    expect(problems({ REDIS_URL: 'redis:6379' })).toEqual([
      expect.stringMatching(/^REDIS_URL .*expected the absolute path of a Unix socket \(REDIS_SOCKET_TYPE is unset, and upstream’s default is unix\); for host:port, set REDIS_SOCKET_TYPE=tcp$/),
    ]);
    expect(problems({ REDIS_SOCKET_TYPE: 'udp', REDIS_URL: 'redis:6379' })).toEqual([expect.stringMatching(/^REDIS_SOCKET_TYPE .*expected tcp or unix, not "udp"$/)]);
  });

  it('stops the load where sluice cannot keep the meaning: memcached', () => {
    expect(problems({ BACKEND_TYPE: 'memcache', MEMCACHE_HOST_PORT: 'm:11211' })).toEqual([expect.stringMatching(/^BACKEND_TYPE .*memcache is not supported/)]);
    expect(problems({ REDIS_TYPE: 'sentinel', REDIS_URL: 'mymaster' })).toEqual([expect.stringMatching(/^REDIS_URL .*the master name and then the sentinels/)]);
  });

  it('without REDIS_URL the file’s store stays, and an unshared embedded store is warned about', () => {
    const policy = load({ REDIS_AUTH: 'x', CACHE_KEY_PREFIX: 'p_' });
    expect(policy.store.redis).toBeNull();
    expect(policy.envoy!.upstreamEnv).toMatchObject({
      ignored: [
        { name: 'REDIS_AUTH', reason: 'read only with REDIS_URL: without it, the store is the policy file’s' },
        { name: 'CACHE_KEY_PREFIX', reason: 'the embedded store keeps no keys in Redis' },
      ],
      warnings: ['neither REDIS_URL nor the policy file names a Redis: budgets live in this sidecar’s memory, not shared with other replicas'],
    });
  });
});

describe('variables sluice has no use for', () => {
  it('are reported once each, with why; unset ones are not', () => {
    const report = load({ USE_STATSD: 'true', STATSD_HOST: 'statsd', REDIS_POOL_SIZE: '20', STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: 'true' }).envoy!.upstreamEnv!;
    expect(report.ignored.map((i) => i.name)).toEqual(['USE_STATSD', 'STATSD_HOST', 'STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT', 'REDIS_POOL_SIZE']);
    expect(report.ignored[0]!.reason).toBe(IGNORED.USE_STATSD);
  });
});

describe('TRACING_*', () => {
  it('become the tracing section, over the file', () => {
    const policy = load(
      {
        TRACING_ENABLED: 'true',
        TRACING_SERVICE_NAME: 'edge-ratelimit',
        TRACING_SERVICE_NAMESPACE: 'edge',
        TRACING_SERVICE_INSTANCE_ID: 'pod-1',
        TRACING_EXPORTER_PROTOCOL: 'grpc',
        TRACING_SAMPLING_RATE: '0.25',
      },
      `${POLICY}tracing: { service_name: mine, endpoint: 'http://collector:4317' }\n`,
    );
    expect(policy.tracing).toEqual({
      exporter: 'grpc',
      endpoint: 'http://collector:4317',
      serviceName: 'edge-ratelimit',
      serviceNamespace: 'edge',
      serviceInstanceId: 'pod-1',
      samplingRate: 0.25,
    });
    expect(policy.envoy!.upstreamEnv!.applied).toEqual(
      expect.arrayContaining([
        { name: 'TRACING_ENABLED', setting: 'tracing.enabled' },
        { name: 'TRACING_SERVICE_NAME', setting: 'tracing.service_name' },
        { name: 'TRACING_EXPORTER_PROTOCOL', setting: 'tracing.exporter' },
        { name: 'TRACING_SAMPLING_RATE', setting: 'tracing.sampling_rate' },
      ]),
    );
  });

  it('TRACING_ENABLED alone: upstream’s service name (RateLimit), OTLP/HTTP, every trace; a name in the file is kept', () => {
    expect(load({ TRACING_ENABLED: 'true' }).tracing).toMatchObject({ serviceName: 'RateLimit', exporter: 'http', samplingRate: 1 });
    expect(load({ TRACING_ENABLED: 'true' }, `${POLICY}tracing: { service_name: mine }\n`).tracing).toMatchObject({ serviceName: 'mine' });
  });

  it('a sampling rate past 0 or 1 samples none or all, as upstream’s sampler does', () => {
    expect(load({ TRACING_ENABLED: 'true', TRACING_SAMPLING_RATE: '2' }).tracing!.samplingRate).toBe(1);
    expect(load({ TRACING_ENABLED: 'true', TRACING_SAMPLING_RATE: '-1e-3' }).tracing!.samplingRate).toBe(0);
  });

  it('are read only with tracing enabled; TRACING_ENABLED=false turns off the file’s', () => {
    const off = load({ TRACING_SERVICE_NAME: 'x', TRACING_SAMPLING_RATE: '0.5' });
    expect(off.tracing).toBeNull();
    expect(off.envoy!.upstreamEnv!.ignored).toEqual([
      { name: 'TRACING_SERVICE_NAME', reason: 'read only with TRACING_ENABLED=true' },
      { name: 'TRACING_SAMPLING_RATE', reason: 'read only with TRACING_ENABLED=true' },
    ]);
    expect(load({ TRACING_ENABLED: 'false' }, `${POLICY}tracing: { enabled: true }\n`).tracing).toBeNull();
    expect(load({ TRACING_SERVICE_NAMESPACE: 'edge' }, `${POLICY}tracing: { enabled: true }\n`).tracing).toMatchObject({ serviceName: null, serviceNamespace: 'edge' });
  });

  it('a protocol or rate upstream would not start with stops the load, naming the variable', () => {
    expect(problems({ TRACING_ENABLED: 'true', TRACING_EXPORTER_PROTOCOL: 'zipkin', TRACING_SAMPLING_RATE: 'half' })).toEqual([
      'TRACING_EXPORTER_PROTOCOL (environment, read because envoy.upstream_env is true): expected http or grpc, not "zipkin"',
      'TRACING_SAMPLING_RATE (environment, read because envoy.upstream_env is true): expected a number from 0 to 1, not "half"',
    ]);
    expect(problems({ TRACING_ENABLED: 'yes' })).toEqual([expect.stringMatching(/^TRACING_ENABLED \(environment, read because envoy.upstream_env is true\): expected true or false/)]);
  });
});

describe('parseGoDuration', () => {
  it('reads what Go’s time.ParseDuration reads', () => {
    expect(parseGoDuration('24h')).toBe(86_400_000);
    expect(parseGoDuration('1h30m')).toBe(5_400_000);
    expect(parseGoDuration('1.5s')).toBe(1_500);
    expect(parseGoDuration('300ms')).toBe(300);
    expect(parseGoDuration('500us')).toBe(0.5);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('-2m')).toBe(-120_000);
    for (const bad of ['', '10', 'h', '1d', '1h 30m', 'ten seconds']) expect(parseGoDuration(bad)).toBeUndefined();
  });
});
