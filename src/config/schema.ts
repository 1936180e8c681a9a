// The policy file's shape. Everything a policy can say is validated here, once, so the rest of
// sluice works with numbers in milliseconds and never re-checks.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { bucketIntervalUs, parseDuration, parseRate, unitProblem, type Rate } from './units.js';
import { duration, lease, strictObject, wholeNumber } from './fields.js';
import { NOT_ECHOED } from './problems.js';

const NAME = /^[A-Za-z0-9_.:/-]{1,64}$/;
const NAME_HINT = '1 to 64 of A-Z a-z 0-9 _ . : / -';

const name = z.string({ error: `expected a name of ${NAME_HINT}` }).regex(NAME, { error: `expected a name of ${NAME_HINT}` });

// Bounds on what a policy can say. Each is within what the runtime holds exactly (timers at most
// 2^31-1 ms, integers at most 2^53-1 in JavaScript and in Redis's Lua doubles) and is the most a
// setting can sensibly mean, so a typo fails at load instead of at the first decision.
/** Longest window: a yearly quota. Windows are epoch-aligned and expire in Redis with them. */
const MAX_PERIOD = '365d';
/** A concurrency permit (and a settle_within) lives at most a day; one held longer is a leak. */
const MAX_PERMIT_TTL = '1d';
/** A decision that may wait a minute on the store is no longer rate limiting. */
const MAX_STORE_TIMEOUT = '1m';
/** Kubernetes grace periods are seconds to minutes; an hour covers any drain. */
const MAX_SHUTDOWN_GRACE = '1h';
/** Memory store scopes (and the local fallback's): 400 B each, so a million needs a 512 MB heap. */
const MAX_KEYS = 1_000_000;
/** Decisions in flight: each holds a gRPC call and a Redis command; more only adds queueing. */
const MAX_IN_FLIGHT = 100_000;
/** Resources in one policy: what the deployed heap parses and serves (see yaml.ts). */
const MAX_RESOURCES = 10_000;
/** A token bucket's interval off the microsecond grid is rounded up; by at most this fraction. */
const MAX_BUCKET_SLOWDOWN = 0.001;

const RATE_HINT = 'expected N/period such as 60/1m or 5/s';
const maxPeriodMs = parseDuration(MAX_PERIOD)!;

const rate = z.string({ error: RATE_HINT }).transform((text, ctx) => {
  const parsed = parseRate(text);
  const problem = parsed === undefined ? (unitProblem(text, 'rate') ?? RATE_HINT) : rateProblem(parsed);
  if (problem) {
    ctx.issues.push({ code: 'custom', input: text, message: problem });
    return z.NEVER;
  }
  return parsed!;
});

function rateProblem({ count, periodMs }: Rate): string | undefined {
  if (count < 1) return `${RATE_HINT}, N at least 1`;
  if (count > Number.MAX_SAFE_INTEGER) return `expected N at most ${Number.MAX_SAFE_INTEGER} (2^53-1, the largest exact count)`;
  if (periodMs <= 0) return `${RATE_HINT}, the period above 0`;
  if (periodMs > maxPeriodMs) return `expected a period of at most ${MAX_PERIOD}`;
  if (!Number.isInteger(periodMs)) return 'expected a period of whole milliseconds';
  return undefined;
}

const count = wholeNumber();

// What a limit counts: the request's cost (tokens, bytes; the default) or one per request, so one
// resource can hold both requests-per-minute and tokens-per-minute.
const counts = z.enum(['cost', 'requests'], { error: 'expected cost or requests' }).default('cost');

const tokenBucket = strictObject({
  name,
  algorithm: z.literal('token_bucket'),
  rate,
  burst: count.optional(),
  counts,
})
  .superRefine((bucket, ctx) => {
    const { count: n, periodMs } = bucket.rate;
    const exactUs = (periodMs * 1_000) / n;
    const intervalUs = bucketIntervalUs(bucket.rate);
    if (intervalUs > exactUs * (1 + MAX_BUCKET_SLOWDOWN)) {
      ctx.addIssue({
        code: 'custom',
        path: ['rate'],
        message:
          `a token bucket keeps time in whole microseconds, so ${n} per ${periodMs}ms (one every ${exactUs.toPrecision(4)}µs) ` +
          `would run ${Math.round((1 - exactUs / intervalUs) * 100)}% slow; expected N at most ${periodMs} (one per ms) ` +
          `or a divisor of ${periodMs * 1_000} (the period in µs)`,
      });
      return;
    }
    const burst = bucket.burst ?? n;
    // A burst past 2^53-1 already has its own problem.
    if (Number.isSafeInteger(burst) && burst * intervalUs > maxPeriodMs * 1_000) {
      ctx.addIssue({
        code: 'custom',
        path: ['burst'],
        message: `expected at most ${Math.floor((maxPeriodMs * 1_000) / intervalUs)}: an empty bucket of ${burst} would take more than ${MAX_PERIOD} to refill`,
      });
    }
  });
const fixedWindow = strictObject({ name, algorithm: z.literal('fixed_window'), rate, counts });
const slidingWindow = strictObject({ name, algorithm: z.literal('sliding_window'), rate, counts });
const concurrency = strictObject({ name, algorithm: z.literal('concurrency'), max: count, ttl: duration(MAX_PERMIT_TTL), counts });

const ALGORITHMS = ['token_bucket', 'fixed_window', 'sliding_window', 'concurrency'];
const limit = z.discriminatedUnion('algorithm', [tokenBucket, fixedWindow, slidingWindow, concurrency], {
  // The discriminator's problem is at .algorithm; any other is the limit's own (not a map).
  error: (issue) => (issue.code === 'invalid_union' ? `expected one of ${ALGORITHMS.join(', ')}` : 'expected a limit, such as { name: rpm, algorithm: token_bucket, rate: 60/1m }'),
});

// Reserved capacity: a fraction of every limit of the resource held back for requests of
// priority min_priority or more (README, "Reserved capacity"). Priorities are the request's int32.
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
/** Reserve entries per resource: each is a priority band; more than a few is a mistake. */
const MAX_RESERVES = 16;
const FRACTION_HINT = 'expected a number above 0 and below 1';
const reserveEntry = strictObject({
  fraction: z.number({ error: FRACTION_HINT }).gt(0, { error: FRACTION_HINT }).lt(1, { error: FRACTION_HINT }),
  min_priority: z
    .number({ error: 'expected a whole number (a priority, int32)' })
    .int({ error: 'expected a whole number (a priority, int32)' })
    .min(INT32_MIN, { error: `expected at least ${INT32_MIN} (int32)` })
    .max(INT32_MAX, { error: `expected at most ${INT32_MAX} (int32)` }),
});

// Waiting (README, "Waiting"): how many requests may wait in a scope's line across every sidecar,
// and named lanes whose shares of every limit order the line when more than one waits.
const MAX_LANES = 16;
const waitSettings = strictObject({
  max_waiters: wholeNumber(1_000_000).default(1_000),
});
const SHARE_HINT = 'expected a share above 0 and at most 1';
const lanes = z
  .record(name, z.number({ error: SHARE_HINT }).gt(0, { error: SHARE_HINT }).max(1, { error: SHARE_HINT }), { error: 'expected a map of lane name to share, such as { interactive: 0.7, batch: 0.3 }' })
  .refine((map) => Object.keys(map).length <= MAX_LANES, { error: `expected at most ${MAX_LANES} lanes` })
  .refine((map) => Object.keys(map).length === 0 || Math.abs(Object.values(map).reduce((a, b) => a + b, 0) - 1) < 1e-6, {
    error: 'expected the shares to add up to 1',
  });

const resource = strictObject({
  name,
  keys: z
    .array(
      z
        .string()
        .min(1, { error: 'expected a non-empty key' })
        .max(256)
        // A protobuf map arrives as a plain object, where this key can never be sent.
        .refine((key) => key !== '__proto__', { error: 'a descriptor key cannot be __proto__' }),
    )
    .max(16)
    .default([]),
  on_store_failure: z.enum(['open', 'closed', 'local'], { error: 'expected open, closed or local' }).default('open'),
  settle_within: duration(MAX_PERMIT_TTL).optional(),
  lease,
  limits: z.array(limit, { error: 'expected a list of limits' }).min(1, { error: 'expected at least one limit' }),
  reserve: z.array(reserveEntry, { error: 'expected a list of { fraction, min_priority }' }).max(MAX_RESERVES, { error: `expected at most ${MAX_RESERVES} entries` }).default([]),
  wait: waitSettings.default({ max_waiters: 1_000 }),
  lanes: lanes.default({}),
});

const LISTEN_HINT = 'expected host:port, :port (every interface) or unix:/path';
const listen = z.string({ error: LISTEN_HINT }).refine((text) => isListenAddress(text), { error: LISTEN_HINT });

// Decisions, connections and calls the gRPC server holds, and when it lets go of them (README,
// "Operating it").
const CONNECTION_DEFAULTS = {
  max_in_flight: 1_000,
  max_connections: 1_000,
  max_streams: 1_000,
  max_waiters: 10_000,
  max_streams_per_connection: 100,
  handshake_timeout: 10_000,
  connection_idle: 300_000,
  connection_max_age: 3_600_000,
  connection_max_age_grace: 60_000,
  keepalive: 120_000,
  keepalive_timeout: 20_000,
};

// Labels every metric carries (upstream's EXTRA_TAGS), for a scrape that cannot relabel. A name
// that one of sluice's metrics already uses would be dropped from that metric's series by the
// exporter, so it is refused here (test/admin/metric-labels.test.ts keeps the list true).
export const METRIC_LABEL_NAMES_USED = ['cap', 'code', 'decided_by', 'domain', 'end', 'kind', 'le', 'major', 'minor', 'outcome', 'patch', 'priority', 'reason', 'resource', 'result', 'rule', 'space', 'type', 'version'];
const MAX_METRIC_LABELS = 16;
const METRIC_LABEL = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const metricLabels = z
  .record(z.string(), z.string({ error: 'expected a label value (a string)' }).max(256, { error: 'expected a label value of at most 256 characters' }), {
    error: 'expected a map of label names to values',
  })
  .superRefine((labels, ctx) => {
    const names = Object.keys(labels);
    if (names.length > MAX_METRIC_LABELS) ctx.addIssue({ code: 'custom', params: NOT_ECHOED, message: `expected at most ${MAX_METRIC_LABELS} labels, not ${names.length}` });
    for (const label of names) {
      if (!METRIC_LABEL.test(label) || label.startsWith('__')) {
        ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: [label], message: `${JSON.stringify(label)}: expected a Prometheus label name (A-Z a-z 0-9 _, not starting with a digit or __, at most 63)` });
      } else if (METRIC_LABEL_NAMES_USED.includes(label)) {
        ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: [label], message: `${JSON.stringify(label)} is a label of sluice's own metrics; choose another name` });
      }
    }
  });

const server = strictObject({
  listen: listen.default('127.0.0.1:50051'),
  admin: z.union([listen, z.literal('off')], { error: 'expected host:port or off' }).default('127.0.0.1:9464'),
  shutdown_grace: duration(MAX_SHUTDOWN_GRACE).default(10_000),
  // Decisions one sidecar works on at once; past it, requests are shed (RESOURCE_EXHAUSTED).
  max_in_flight: wholeNumber(MAX_IN_FLIGHT).default(CONNECTION_DEFAULTS.max_in_flight),
  // Node closes connections past maxConnections itself; 100,000 sockets is far past one pod's need.
  max_connections: wholeNumber(100_000).default(CONNECTION_DEFAULTS.max_connections),
  max_streams: wholeNumber(100_000).default(CONNECTION_DEFAULTS.max_streams),
  // Requests waiting in this sidecar (max_wait), across every scope; past it RESOURCE_EXHAUSTED.
  max_waiters: wholeNumber(1_000_000).default(CONNECTION_DEFAULTS.max_waiters),
  max_streams_per_connection: wholeNumber(10_000).default(CONNECTION_DEFAULTS.max_streams_per_connection),
  handshake_timeout: duration('5m').default(CONNECTION_DEFAULTS.handshake_timeout),
  // Timers in node hold at most 2^31-1 ms (24.8 days); a day is the longest any of these needs.
  connection_idle: duration('1d').default(CONNECTION_DEFAULTS.connection_idle),
  connection_max_age: duration('1d').default(CONNECTION_DEFAULTS.connection_max_age),
  connection_max_age_grace: duration('1d').default(CONNECTION_DEFAULTS.connection_max_age_grace),
  keepalive: duration('1d').default(CONNECTION_DEFAULTS.keepalive),
  keepalive_timeout: duration('5m').default(CONNECTION_DEFAULTS.keepalive_timeout),
  metric_labels: metricLabels.default({}),
});

// ---------------------------------------------------------------------------------------------
// store.redis: exactly one of url (one server), sentinel (a master the sentinels watch) or cluster,
// with AUTH (password or ACL user) and TLS. Secrets and certificates are read here, at load, so a
// missing file stops the load with the field's path instead of failing on the first connect.

const REDIS_URL_HINT = 'expected redis://host:port or rediss://host:port';
const HOST_PORT_HINT = 'expected host:port such as 10.0.0.5:6379';

/** A `host:port` (or `[v6]:port`) node address. */
export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, `[::1]:port`; undefined when it is not one. */
export function parseHostPort(text: string): HostPort | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: match[1] ?? match[2]!, port };
}

/** What a redis:// or rediss:// url says, decoded. */
export interface RedisUrl extends HostPort {
  tls: boolean;
  db: number;
  username: string | undefined;
  password: string | undefined;
}

/** A redis:// or rediss:// url, or the reason it is not one. */
export function parseRedisUrl(text: string): RedisUrl | string {
  if (!/^rediss?:\/\//.test(text) || !URL.canParse(text)) return REDIS_URL_HINT;
  const url = new URL(text);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (!host) return `${REDIS_URL_HINT}: the host is missing`;
  const port = url.port === '' ? 6379 : Number(url.port);
  if (port < 1) return `${REDIS_URL_HINT}: the port must be 1 to 65535`;
  let db = 0;
  if (url.pathname !== '' && url.pathname !== '/') {
    if (!/^\/\d{1,5}$/.test(url.pathname)) return `${REDIS_URL_HINT}[/db]: the path must be a database number, not ${url.pathname}`;
    db = Number(url.pathname.slice(1));
  }
  if (url.search !== '' || url.hash !== '') return `${REDIS_URL_HINT}: query parameters and fragments are not supported; use the fields of store.redis`;
  const decode = (part: string) => (part === '' ? undefined : decodeURIComponent(part));
  return { host, port, db, tls: url.protocol === 'rediss:', username: decode(url.username), password: decode(url.password) };
}

const redisUrl = z.string({ error: REDIS_URL_HINT }).transform((text, ctx) => {
  const parsed = parseRedisUrl(text);
  if (typeof parsed === 'string') {
    ctx.issues.push({ code: 'custom', input: text, message: parsed });
    return z.NEVER;
  }
  return parsed;
});

const hostPort = z.string({ error: HOST_PORT_HINT }).transform((text, ctx) => {
  const parsed = parseHostPort(text);
  if (!parsed) {
    ctx.issues.push({ code: 'custom', input: text, message: HOST_PORT_HINT });
    return z.NEVER;
  }
  return parsed;
});

const secret = z.string({ error: 'expected a string' }).min(1, { error: 'expected a non-empty string' });

/** A file's text, read now; `check` says what is wrong with the text, if anything. */
function fileContents(check: (text: string) => string | undefined = () => undefined) {
  return z
    .string({ error: 'expected a file path' })
    .min(1, { error: 'expected a file path' })
    .transform((path, ctx) => {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        ctx.issues.push({ code: 'custom', input: path, message: `cannot read ${path}: ${readError(err)}`, params: NOT_ECHOED });
        return z.NEVER;
      }
      const problem = check(text);
      if (problem) {
        ctx.issues.push({ code: 'custom', input: path, message: `${path}: ${problem}`, params: NOT_ECHOED });
        return z.NEVER;
      }
      return text;
    });
}

function readError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory, not a file';
  return (err as Error).message;
}

const pem = (what: RegExp, name: string) => (text: string) => (what.test(text) ? undefined : `expected a PEM file with ${name}`);
const certificateFile = fileContents(pem(/-----BEGIN CERTIFICATE-----/, 'a certificate (-----BEGIN CERTIFICATE-----)'));
const keyFile = fileContents(pem(/-----BEGIN [A-Z ]*PRIVATE KEY-----/, 'a private key (-----BEGIN ... PRIVATE KEY-----)'));
/** A password file: its text without the trailing newline. */
const passwordFile = fileContents((text) => (text.replace(/[\r\n]+$/, '') === '' ? 'the file is empty' : undefined)).transform((text) =>
  text.replace(/[\r\n]+$/, ''),
);

/** The error for a list field: required when absent, else the wrong type. */
const listOf = (what: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? `required (a list of ${what})` : `expected a list of ${what}`;

const MASTER_HINT = 'the master name the sentinels monitor';
const sentinel = strictObject({
  master: z
    .string({ error: (issue) => (issue.input === undefined ? `required (${MASTER_HINT})` : `expected ${MASTER_HINT}`) })
    .regex(/^\S{1,128}$/, { error: `expected ${MASTER_HINT}: 1 to 128 characters, no spaces` }),
  nodes: z.array(hostPort, { error: listOf('sentinel host:port') }).min(1, { error: 'expected at least one sentinel host:port' }),
  /** The sentinels' own AUTH; the data nodes' comes from store.redis.username/password. */
  username: secret.optional(),
  password: secret.optional(),
});

const cluster = strictObject({
  nodes: z.array(hostPort, { error: listOf('cluster node host:port') }).min(1, { error: 'expected at least one cluster node host:port' }),
});

const tls = strictObject({
  ca_file: certificateFile.optional(),
  cert_file: certificateFile.optional(),
  key_file: keyFile.optional(),
  server_name: z.string().min(1, { error: 'expected a host name' }).optional(),
  skip_hostname_verification: z.boolean({ error: 'expected true or false' }).default(false),
  insecure_skip_verify: z.boolean({ error: 'expected true or false' }).default(false),
});

const TOPOLOGIES = ['url', 'socket', 'sentinel', 'cluster'] as const;

const redis = strictObject({
  url: redisUrl.optional(),
  // A Unix socket of one server on this host (redis.conf unixsocket), database 0.
  socket: z.string({ error: 'expected the path of a Unix socket' }).regex(/^\//, { error: 'expected an absolute path of a Unix socket' }).optional(),
  sentinel: sentinel.optional(),
  cluster: cluster.optional(),
  username: secret.optional(),
  password: secret.optional(),
  password_file: passwordFile.optional(),
  tls: tls.optional(),
  prefix: z.string().regex(/^[A-Za-z0-9_.:-]{1,32}$/, { error: 'expected 1 to 32 of A-Z a-z 0-9 _ . : -' }).default('sluice'),
  // Window keys all expire at their window's end; this spreads their expiry over up to this much
  // more (upstream's EXPIRATION_JITTER_MAX_SECONDS). A key holds its window's number, so a key
  // that outlives its window is only memory, never a count carried over.
  expiry_jitter: duration('1d').optional(),
})
  .superRefine((redis, ctx) => {
    const given = TOPOLOGIES.filter((key) => redis[key] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message:
          given.length === 0
            ? 'expected one of url, socket, sentinel or cluster'
            : `expected exactly one of url, socket, sentinel or cluster, found ${given.join(' and ')}`,
      });
    }
    if (redis.socket !== undefined && redis.tls !== undefined) {
      ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: ['tls'], message: 'a Unix socket carries no TLS: give tls with url, sentinel or cluster' });
    }
    if (redis.password !== undefined && redis.password_file !== undefined) {
      ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: ['password_file'], message: 'give password or password_file, not both' });
    }
    if (redis.url?.password !== undefined && (redis.password !== undefined || redis.password_file !== undefined)) {
      ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: ['url'], message: 'the url carries a password and so does password/password_file: give it once' });
    }
    if (redis.url?.username !== undefined && redis.username !== undefined) {
      ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: ['url'], message: 'the url carries a username and so does username: give it once' });
    }
    const hasPassword = redis.password !== undefined || redis.password_file !== undefined || redis.url?.password !== undefined;
    if ((redis.username !== undefined || redis.url?.username !== undefined) && !hasPassword) {
      ctx.addIssue({
        code: 'custom',
        params: NOT_ECHOED,
        path: [redis.username !== undefined ? 'username' : 'url'],
        message: 'a username needs a password (password, password_file or SLUICE_REDIS_PASSWORD)',
      });
    }
    if (redis.sentinel?.username !== undefined && redis.sentinel.password === undefined) {
      ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: ['sentinel', 'username'], message: 'a sentinel username needs a sentinel password' });
    }
    if ((redis.tls?.cert_file === undefined) !== (redis.tls?.key_file === undefined)) {
      const [given, missing] = redis.tls?.cert_file === undefined ? ['key_file', 'cert_file'] : ['cert_file', 'key_file'];
      ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: ['tls', given], message: `${given} needs ${missing} too (a client certificate and its key)` });
    }
  });

const store = strictObject({
  redis: redis.optional(),
  timeout: duration(MAX_STORE_TIMEOUT).default(20),
  max_keys: wholeNumber(MAX_KEYS).default(100_000),
});

// Envoy's rate limit service: where envoyproxy/ratelimit config files live, and how sluice serves
// them. Plain options: the directory is read by the Envoy runtime (src/envoy/runtime.ts). Each
// setting that changes answers is one of upstream's deployment settings (docs/envoy.md has the
// table of upstream's environment variables).
const flag = z.boolean({ error: 'expected true or false' });

// An HTTP field name (RFC 9110 token): Envoy refuses to add a header with any other name.
const HEADER_NAME_HINT = 'expected an HTTP header name: 1 to 128 of A-Z a-z 0-9 ! # $ % & \' * + - . ^ _ ` | ~';
const headerName = z.string({ error: HEADER_NAME_HINT }).regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, { error: HEADER_NAME_HINT });
export const RESPONSE_HEADER_DEFAULTS = { limit: 'RateLimit-Limit', remaining: 'RateLimit-Remaining', reset: 'RateLimit-Reset' };
const responseHeaderNames = strictObject({
  limit: headerName.default(RESPONSE_HEADER_DEFAULTS.limit),
  remaining: headerName.default(RESPONSE_HEADER_DEFAULTS.remaining),
  reset: headerName.default(RESPONSE_HEADER_DEFAULTS.reset),
})
  .superRefine((names, ctx) => {
    const seen = new Map<string, string>();
    for (const [which, name] of Object.entries(names)) {
      const other = seen.get(name.toLowerCase());
      if (other) ctx.addIssue({ code: 'custom', path: [which], message: `"${name}" is the ${other} header already: header names are case-insensitive` });
      seen.set(name.toLowerCase(), which);
    }
  })
  .default(RESPONSE_HEADER_DEFAULTS);

const RATIO_HINT = 'expected a number from 0 to 1';

const HTTP_LISTEN_HINT = 'expected host:port, or :port (every interface)';
const httpListen = z.string({ error: HTTP_LISTEN_HINT }).refine((text) => !text.startsWith('unix:') && isListenAddress(text), { error: HTTP_LISTEN_HINT });

// envoy.xds: the Envoy config from an xDS management server (ADS, state of the world) instead of
// config_dir. Read by src/grpc/xds-client.ts; the resources are checked as config files are.
const XDS_SERVER_HINT = 'expected the management server as host:port such as xds.example:18000';
/** A response larger than this is refused by gRPC before it is decoded (gRPC's own default is 4 MiB). */
const MAX_XDS_MESSAGE_BYTES = 64 * 1024 * 1024;
const METADATA_KEY_HINT = 'expected a gRPC metadata key: 1 to 128 of a-z A-Z 0-9 _ . -, not starting with grpc- nor ending with -bin';
const METADATA_VALUE_HINT = 'expected printable ASCII (a gRPC metadata value)';

const xdsTls = strictObject({
  /** The CA that signs the management server's certificate; the system's CAs when absent. */
  ca_file: certificateFile.optional(),
  cert_file: certificateFile.optional(),
  key_file: keyFile.optional(),
  /** The name the server's certificate must carry, when it is not the host of `server`. */
  server_name: z.string().min(1, { error: 'expected a host name' }).optional(),
}).superRefine((tls, ctx) => {
  if ((tls.cert_file === undefined) !== (tls.key_file === undefined)) {
    const [given, missing] = tls.cert_file === undefined ? ['key_file', 'cert_file'] : ['cert_file', 'key_file'];
    ctx.addIssue({ code: 'custom', params: NOT_ECHOED, path: [given], message: `${given} needs ${missing} too (a client certificate and its key)` });
  }
});

const XDS_RETRY_DEFAULTS = { initial: 1_000, max: 60_000, jitter: 0.5 };
const xdsRetry = strictObject({
  /** The wait before the first reconnect; each next one is twice the last, up to max. */
  initial: duration('1h').default(XDS_RETRY_DEFAULTS.initial),
  max: duration('1h').default(XDS_RETRY_DEFAULTS.max),
  /** The share of each wait drawn at random (0.5: from half the wait to all of it), so sidecars do not reconnect in step. */
  jitter: z.number({ error: 'expected a number from 0 to 1' }).min(0, { error: 'expected a number from 0 to 1' }).max(1, { error: 'expected a number from 0 to 1' }).default(XDS_RETRY_DEFAULTS.jitter),
})
  .superRefine((retry, ctx) => {
    if (retry.max < retry.initial) ctx.addIssue({ code: 'custom', path: ['max'], message: `expected at least initial (${retry.initial} ms)` });
  })
  .default(XDS_RETRY_DEFAULTS);

const xds = strictObject({
  server: z.string({ error: XDS_SERVER_HINT }).refine((text) => parseHostPort(text) !== undefined, { error: XDS_SERVER_HINT }),
  /** The node id the management server keys its snapshots by. */
  node_id: z.string({ error: 'expected the node id the management server knows this sidecar by' }).min(1, { error: 'expected a non-empty node id' }),
  node_metadata: z.record(z.string(), z.string({ error: 'expected a string' }), { error: 'expected a map of strings' }).default({}),
  /** gRPC metadata sent with the stream (an authorization token, say). */
  headers: z
    .record(
      z.string().regex(/^(?!grpc-)[A-Za-z0-9_.-]{1,128}$/i, { error: METADATA_KEY_HINT }).refine((key) => !key.toLowerCase().endsWith('-bin'), { error: METADATA_KEY_HINT }),
      z.string({ error: METADATA_VALUE_HINT }).regex(/^[ -~]*$/, { error: METADATA_VALUE_HINT }),
      // A bad key is reported as the record's issue: name what a key must be.
      { error: (issue) => (issue.code === 'invalid_key' ? METADATA_KEY_HINT : 'expected a map of header names to values') },
    )
    .default({}),
  /** TLS towards the management server; plaintext when absent. */
  tls: xdsTls.optional(),
  retry: xdsRetry,
  max_message_size: wholeNumber(MAX_XDS_MESSAGE_BYTES).default(4 * 1024 * 1024),
});

const CONFIG_DIR_HINT = 'expected the directory of envoyproxy/ratelimit config files';

const envoy = strictObject({
  config_dir: z.string({ error: CONFIG_DIR_HINT }).min(1, { error: CONFIG_DIR_HINT }).optional(),
  xds: xds.optional(),
  /** Upstream's LIMIT_RESPONSE_HEADERS_ENABLED, with the names of LIMIT_LIMIT_HEADER and the others. */
  response_headers: flag.default(false),
  response_header_names: responseHeaderNames,
  /** Upstream's RESPONSE_DYNAMIC_METADATA. */
  response_dynamic_metadata: flag.default(false),
  /** Upstream's QUOTA_MODE: every descriptor in quota mode. */
  quota_mode: flag.default(false),
  on_store_failure: z.enum(['error', 'open', 'closed', 'local'], { error: 'expected error, open, closed or local' }).default('error'),
  /** Upstream's SHADOW_MODE: a request over the limit is answered OK, and counted. */
  shadow_mode: flag.default(false),
  /** Upstream's NEAR_LIMIT_RATIO: the share of a limit past which hits count as near_limit. */
  near_limit_ratio: z.number({ error: RATIO_HINT }).min(0, { error: RATIO_HINT }).max(1, { error: RATIO_HINT }).default(0.8),
  /** Upstream's HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED: not serving until config_dir holds a domain. */
  require_domains: flag.default(false),
  /** Upstream's MERGE_DOMAIN_CONFIG: a domain in several files is one domain, their descriptors together. */
  merge_domains: flag.default(false),
  /** Read upstream's environment variables (SHADOW_MODE, REDIS_URL, ...) over this file's settings. */
  upstream_env: flag.default(false),
  /** Upstream's HTTP port (HOST, PORT): POST /json and GET /healthcheck. Absent: not served. */
  http_listen: httpListen.optional(),
  /** Leases for Envoy traffic, as a resource's `lease:`. */
  lease,
}).superRefine((envoy, ctx) => {
  if (envoy.config_dir !== undefined && envoy.xds !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['xds'], message: 'give config_dir (config files) or xds (a management server), not both' });
  } else if (envoy.config_dir === undefined && envoy.xds === undefined) {
    ctx.addIssue({ code: 'custom', path: ['config_dir'], message: `required (${CONFIG_DIR_HINT.replace('expected ', '')}), unless xds names a management server` });
  }
});

// Tracing: OpenTelemetry spans of Envoy's ShouldRateLimit calls and of their store calls,
// exported over OTLP as envoyproxy/ratelimit exports them (its TRACING_* settings; src/trace/).
// What is left unset here comes from the standard OTEL_* variables, as the OpenTelemetry SDK reads them.
const TEXT_HINT = 'expected a non-empty string of at most 256 characters';
const attributeText = z.string({ error: TEXT_HINT }).min(1, { error: TEXT_HINT }).max(256, { error: TEXT_HINT });
const ENDPOINT_HINT = 'expected an http:// or https:// URL, such as http://otel-collector:4318/v1/traces';
const endpoint = z
  .string({ error: ENDPOINT_HINT })
  .refine((text) => URL.canParse(text) && ['http:', 'https:'].includes(new URL(text).protocol), { error: ENDPOINT_HINT });
export const TRACING_DEFAULTS = { enabled: false, exporter: 'http', sampling_rate: 1 } as const;

const tracing = strictObject({
  enabled: flag.default(TRACING_DEFAULTS.enabled),
  /** OTLP/HTTP (protobuf) or OTLP/gRPC: upstream's TRACING_EXPORTER_PROTOCOL. */
  exporter: z.enum(['http', 'grpc'], { error: 'expected http (OTLP/HTTP) or grpc (OTLP/gRPC)' }).default(TRACING_DEFAULTS.exporter),
  /** The collector's traces endpoint; unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: endpoint.optional(),
  service_name: attributeText.optional(),
  service_namespace: attributeText.optional(),
  service_instance_id: attributeText.optional(),
  /** The share of traces started here that are sampled; a caller's sampled trace is always followed. */
  sampling_rate: z.number({ error: RATIO_HINT }).min(0, { error: RATIO_HINT }).max(1, { error: RATIO_HINT }).default(TRACING_DEFAULTS.sampling_rate),
});

export const policySchema = strictObject({
  server: server.default({ listen: '127.0.0.1:50051', admin: '127.0.0.1:9464', shutdown_grace: 10_000, ...CONNECTION_DEFAULTS, metric_labels: {} }),
  store: store.default({ timeout: 20, max_keys: 100_000 }),
  // Optional with an envoy section: a sidecar may serve Envoy's rate limit API only.
  // Counted before any is checked, so a huge list costs no issue per item.
  resources: z
    .array(z.unknown())
    .max(MAX_RESOURCES, { error: `expected at most ${MAX_RESOURCES} resources` })
    .pipe(z.array(resource))
    .optional(),
  envoy: envoy.optional(),
  tracing: tracing.optional(),
})
  .superRefine((policy, ctx) => {
    if (!policy.envoy && (policy.resources?.length ?? 0) === 0) {
      const message = policy.resources ? 'expected at least one resource' : 'required (a list of resources, unless there is an envoy section)';
      ctx.addIssue({ code: 'custom', path: ['resources'], message });
    }
    (policy.resources ?? []).forEach((res, i) => reportReserveProblems(res.reserve, ['resources', i, 'reserve'], ctx));
  });

export type PolicyFile = z.output<typeof policySchema>;
export type ResourceFile = NonNullable<PolicyFile['resources']>[number];
export type LimitFile = ResourceFile['limits'][number];
export type RedisFile = NonNullable<PolicyFile['store']['redis']>;
export type EnvoyFile = NonNullable<PolicyFile['envoy']>;
export type TracingFile = NonNullable<PolicyFile['tracing']>;

/**
 * Names of resources and of each resource's limits, and each resource's keys, given twice. Read
 * from the file as it is, before and whatever the schema finds, so that they are reported with
 * every other problem.
 */
export function duplicateProblems(raw: unknown): z.core.$ZodIssue[] {
  const found: z.core.$ZodIssue[] = [];
  const resources = isRecord(raw) && Array.isArray(raw.resources) ? raw.resources : [];
  reportDuplicates(resources, 'name', ['resources'], 'resources', found);
  resources.forEach((res, i) => {
    if (!isRecord(res)) return;
    if (Array.isArray(res.limits)) reportDuplicates(res.limits, 'name', ['resources', i, 'limits'], 'limits', found);
    if (Array.isArray(res.keys)) reportDuplicates(res.keys, null, ['resources', i, 'keys'], 'keys', found);
  });
  return found;
}

/** Items whose `field` (or, with null, the item itself) is a string an earlier item has too. */
function reportDuplicates(items: unknown[], field: string | null, path: (string | number)[], listName: string, found: z.core.$ZodIssue[]): void {
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    const value = field === null ? item : isRecord(item) ? item[field] : undefined;
    if (typeof value !== 'string') return;
    const earlier = first.get(value);
    if (earlier === undefined) first.set(value, i);
    else {
      const what = field === null ? 'key' : field;
      found.push({ code: 'custom', path: field === null ? [...path, i] : [...path, i, field], message: `duplicate ${what} (${listName}[${earlier}] has it too)`, input: value });
    }
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Each priority reserved for once, and the fractions leave some of every limit to everyone. */
function reportReserveProblems(reserve: { fraction: number; min_priority: number }[], path: (string | number)[], ctx: z.RefinementCtx): void {
  const seen = new Set<number>();
  let sum = 0;
  reserve.forEach((entry, i) => {
    if (seen.has(entry.min_priority)) {
      ctx.addIssue({ code: 'custom', path: [...path, i, 'min_priority'], message: `duplicate min_priority ${entry.min_priority}: give one fraction per priority` });
    }
    seen.add(entry.min_priority);
    sum += entry.fraction;
  });
  if (sum >= 1) {
    ctx.addIssue({ code: 'custom', path, message: `the fractions add up to ${Number(sum.toFixed(6))}: expected less than 1, so that the lowest priority can use some of every limit` });
  }
}

/** `host:port`, `[v6]:port`, `:port` (every interface, IPv6 and IPv4) or `unix:/path`. */
export function isListenAddress(text: string): boolean {
  if (text.startsWith('unix:')) return text.length > 'unix:'.length;
  const colon = text.lastIndexOf(':');
  if (colon < 0) return false;
  const port = Number(text.slice(colon + 1));
  return Number.isInteger(port) && port >= 0 && port <= 65535 && text.slice(colon + 1) !== '';
}
