import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/config/load.js';
import { laneOf, lowestUsable, usableFraction } from '../../src/config/policy.js';
import { CLI, writePolicy } from '../support/sidecar.js';

const run = promisify(execFile);

function problems(yaml: string, env = {}): string[] {
  try {
    parsePolicy(yaml, 'policy.yaml', env);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return (err as PolicyError).problems;
  }
  throw new Error('expected the policy to be rejected');
}

const VALID = `
resources:
  - name: openai
    keys: [tenant]
    limits:
      - { name: rpm, algorithm: token_bucket, rate: 60/1m, burst: 10, counts: requests }
      - { name: tpm, algorithm: sliding_window, rate: 90000/1m }
      - { name: inflight, algorithm: concurrency, max: 8, ttl: 30s }
      - { name: daily, algorithm: fixed_window, rate: 10000/1d }
`;

describe('policy file', () => {
  it('compiles a valid file into milliseconds and units, with safe defaults', () => {
    const policy = parsePolicy(VALID, 'p.yaml');
    expect(policy.server).toMatchObject({ listen: '127.0.0.1:50051', admin: '127.0.0.1:9464', shutdownGraceMs: 10_000, maxInFlight: 1_000, maxStreams: 1_000 });
    expect(policy.server.connections).toEqual({
      maxConnections: 1_000,
      maxStreamsPerConnection: 100,
      handshakeTimeoutMs: 10_000,
      idleMs: 300_000,
      maxAgeMs: 3_600_000,
      maxAgeGraceMs: 60_000,
      keepaliveMs: 120_000,
      keepaliveTimeoutMs: 20_000,
    });
    expect(policy.store).toEqual({ redis: null, timeoutMs: 20, maxKeys: 100_000 });
    const openai = policy.resources.get('openai')!;
    expect(openai.onStoreFailure).toBe('open');
    expect(openai.permitTtlMs).toBe(30_000);
    expect(openai.limits).toEqual([
      { name: 'rpm', countsRequests: true, algorithm: 'token_bucket', capacity: 10, intervalMs: 1000 },
      { name: 'tpm', countsRequests: false, algorithm: 'sliding_window', capacity: 90000, periodMs: 60_000 },
      { name: 'inflight', countsRequests: false, algorithm: 'concurrency', capacity: 8, ttlMs: 30_000 },
      { name: 'daily', countsRequests: false, algorithm: 'fixed_window', capacity: 10000, periodMs: 86_400_000 },
    ]);
  });

  it('defaults a token bucket burst to the rate count and accepts 5/s', () => {
    const policy = parsePolicy('resources: [{ name: r, limits: [{ name: l, algorithm: token_bucket, rate: 5/s }] }]', 'p.yaml');
    expect(policy.resources.get('r')!.limits[0]).toMatchObject({ capacity: 5, intervalMs: 200 });
  });

  it('names the place and value of every problem, all at once, in file order', () => {
    const found = problems(`
server:
  listen: nowhere
resources:
  - name: openai
    keys: [tenant, tenant]
    on_store_failure: sometimes
    limits:
      - { name: rpm, algorithm: token_bucket, rate: sixty, burts: 3 }
      - { name: rpm, algorithm: leaky_bucket, rate: 5/s }
      - { name: inflight, algorithm: concurrency, max: 0, ttl: 30 }
`);
    expect(found).toEqual([
      'server.listen (line 3, column 11): "nowhere": expected host:port, :port (every interface) or unix:/path',
      'resources[0].keys[1] (line 6, column 20): "tenant": duplicate key (keys[0] has it too)',
      'resources[0].on_store_failure (line 7, column 23): "sometimes": expected open, closed or local',
      'resources[0].limits[0].rate (line 9, column 53): "sixty": expected N/period such as 60/1m or 5/s',
      'resources[0].limits[0] (line 9, column 60): unknown key "burts" (did you mean burst?)',
      'resources[0].limits[1].name (line 10, column 17): "rpm": duplicate name (limits[0] has it too)',
      'resources[0].limits[1].algorithm (line 10, column 33): "leaky_bucket": expected one of token_bucket, fixed_window, sliding_window, concurrency',
      'resources[0].limits[2].max (line 11, column 56): 0: expected at least 1',
      'resources[0].limits[2].ttl (line 11, column 64): 30: expected a duration such as 20ms, 30s, 1m',
    ]);
  });

  it('bounds the connection and stream settings, naming the field', () => {
    const found = problems(`
server:
  max_connections: 0
  max_streams: 100001
  max_streams_per_connection: 1.5
  connection_idle: 2d
  handshake_timeout: 10m
resources:
  - name: a
    limits: [{ name: y, algorithm: fixed_window, rate: 1/s }]
`);
    expect(found).toEqual([
      'server.max_connections (line 3, column 20): 0: expected at least 1',
      'server.max_streams (line 4, column 16): 100001: expected at most 100000',
      'server.max_streams_per_connection (line 5, column 31): 1.5: expected a whole number',
      'server.connection_idle (line 6, column 20): "2d": expected at most 1d',
      'server.handshake_timeout (line 7, column 22): "10m": expected at most 5m',
    ]);
  });

  it('metric_labels: labels for every metric, checked as Prometheus label names, none of sluice\'s own', () => {
    expect(parsePolicy(`${VALID}server:\n  metric_labels: { cluster: eu-1, team: edge }\n`, 'p.yaml').server.metricLabels).toEqual({ cluster: 'eu-1', team: 'edge' });
    expect(parsePolicy(VALID, 'p.yaml').server.metricLabels).toEqual({});
    const found = problems(`${VALID}server:\n  metric_labels: { "1st": a, __x: b, resource: c }\n`).join('\n');
    expect(found).toContain('"1st": expected a Prometheus label name');
    expect(found).toContain('"__x": expected a Prometheus label name');
    expect(found).toContain('"resource" is a label of sluice\'s own metrics');
    expect(problems(`${VALID}server:\n  metric_labels: { ok: 5 }\n`).join('\n')).toMatch(/server\.metric_labels\.ok .*expected a label value/);
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`l${i}`, 'x']));
    expect(problems(`${VALID}server:\n  metric_labels: ${JSON.stringify(many)}\n`).join('\n')).toContain('at most 16 labels');
  });

  it('rejects duplicate names and keys, naming the first of each', () => {
    const found = problems(`
resources:
  - name: a
    keys: [tenant, tenant]
    limits:
      - { name: x, algorithm: fixed_window, rate: 1/s }
      - { name: x, algorithm: fixed_window, rate: 2/s }
  - name: a
    limits: [{ name: y, algorithm: fixed_window, rate: 1/s }]
`);
    expect(found).toEqual([
      'resources[0].keys[1] (line 4, column 20): "tenant": duplicate key (keys[0] has it too)',
      'resources[0].limits[1].name (line 7, column 17): "x": duplicate name (limits[0] has it too)',
      'resources[1].name (line 8, column 11): "a": duplicate name (resources[0] has it too)',
    ]);
  });

  it('reports YAML syntax errors with line and column', () => {
    expect(problems('resources:\n  - name: [unclosed\n')[0]).toMatch(/^line \d+, column \d+: /);
  });

  it('rejects a file with no resources and an unknown top-level key', () => {
    expect(problems('resourcez: []')).toEqual([
      'resources: required (a list of resources, unless there is an envoy section)',
      '(top level) (line 1, column 1): unknown key "resourcez" (did you mean resources?)',
    ]);
  });

  it('lets the environment override listen, admin and the Redis URL', () => {
    const policy = parsePolicy(VALID, 'p.yaml', {
      SLUICE_LISTEN: 'unix:/tmp/sluice.sock',
      SLUICE_ADMIN: 'off',
      SLUICE_REDIS_URL: 'redis://10.0.0.1:6380',
    });
    expect(policy.server.listen).toBe('unix:/tmp/sluice.sock');
    expect(policy.server.admin).toBeNull();
    expect(policy.store.redis).toEqual({
      topology: { kind: 'standalone', node: { host: '10.0.0.1', port: 6380 }, db: 0 },
      username: null,
      password: null,
      tls: null,
      prefix: 'sluice',
      expiryJitterMs: 0,
    });
  });

  it('validates what the environment says too', () => {
    expect(problems(VALID, { SLUICE_REDIS_URL: 'http://example' })).toEqual([
      'store.redis.url (from SLUICE_REDIS_URL): "http://example": expected redis://host:port or rediss://host:port',
    ]);
  });
});

describe('store.redis', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const KEY = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n';
  const caFile = file('ca.pem', CERT);
  const certFile = file('client.pem', CERT);
  const keyFile = file('client.key', KEY);
  const passwordFile = file('password', 's3cret:/@\n');

  /** VALID with this store.redis block (YAML lines indented under `redis:`). */
  const withRedis = (...lines: string[]) => `store:\n  redis:\n${lines.map((line) => `    ${line}`).join('\n')}\n${VALID}`;
  const redisOf = (yaml: string, env = {}) => parsePolicy(yaml, 'p.yaml', env).store.redis!;

  it('url: user, password and db from the url, decoded; no TLS on redis://', () => {
    expect(redisOf(withRedis('url: redis://alice:p%40ss%3Aword@10.0.0.5:6380/2'))).toEqual({
      topology: { kind: 'standalone', node: { host: '10.0.0.5', port: 6380 }, db: 2 },
      username: 'alice',
      password: 'p@ss:word',
      tls: null,
      prefix: 'sluice',
      expiryJitterMs: 0,
    });
  });

  it('url: the port defaults to 6379, a password without a user is the default user, IPv6 in brackets', () => {
    const redis = redisOf(withRedis('url: redis://:pw@[::1]'));
    expect(redis.topology).toEqual({ kind: 'standalone', node: { host: '::1', port: 6379 }, db: 0 });
    expect(redis.username).toBeNull();
    expect(redis.password).toBe('pw');
  });

  it('rediss:// turns TLS on, verifying against the system CAs', () => {
    const redis = redisOf(withRedis('url: rediss://redis.internal:6380'));
    expect(redis.tls).toEqual({ ca: null, cert: null, key: null, serverName: null, verify: 'full' });
    expect(redis.topology).toEqual({ kind: 'standalone', node: { host: 'redis.internal', port: 6380 }, db: 0 });
  });

  it('a tls block turns TLS on and its files are read at load', () => {
    const redis = redisOf(
      withRedis(
        'url: redis://10.0.0.5:6380',
        'username: sluice',
        `password_file: ${passwordFile}`,
        `tls: { ca_file: ${caFile}, cert_file: ${certFile}, key_file: ${keyFile}, server_name: redis.internal }`,
      ),
    );
    expect(redis.tls).toEqual({ ca: CERT, cert: CERT, key: KEY, serverName: 'redis.internal', verify: 'full' });
    // The password file's trailing newline is not part of the password.
    expect(redis.username).toBe('sluice');
    expect(redis.password).toBe('s3cret:/@');
  });

  it('expiry_jitter: a duration up to 1d, none by default', () => {
    expect(redisOf(withRedis('url: redis://h:1', 'expiry_jitter: 5m')).expiryJitterMs).toBe(300_000);
    expect(problems(`store:\n  redis: { url: redis://h:1, expiry_jitter: 2d }\n${VALID}`).join('\n')).toMatch(/store\.redis\.expiry_jitter .*expected at most 1d/);
  });

  it('skip_hostname_verification checks the chain only; insecure_skip_verify turns verification off, and wins', () => {
    expect(redisOf(withRedis('url: rediss://h:1', 'tls: { skip_hostname_verification: true }')).tls?.verify).toBe('chain');
    expect(redisOf(withRedis('url: rediss://h:1', 'tls: { insecure_skip_verify: true }')).tls?.verify).toBe('none');
    expect(redisOf(withRedis('url: rediss://h:1', 'tls: { insecure_skip_verify: true, skip_hostname_verification: true }')).tls?.verify).toBe('none');
    expect(problems(withRedis('url: rediss://h:1', 'tls: { skip_hostname_verification: "yes" }'))).toEqual([
      expect.stringMatching(/^store\.redis\.tls\.skip_hostname_verification \(line 4, column \d+\): .*expected true or false/),
    ]);
  });

  it('sentinel: the master name, the sentinels, their own auth, and the data nodes\' auth', () => {
    const redis = redisOf(
      withRedis(
        'sentinel:',
        '  master: mymaster',
        '  nodes: [10.0.0.1:26379, "sentinel-2.internal:26380"]',
        '  username: watcher',
        '  password: sentinel-pw',
        'username: app',
        'password: data-pw',
        'prefix: rl',
      ),
    );
    expect(redis).toEqual({
      topology: {
        kind: 'sentinel',
        master: 'mymaster',
        sentinels: [
          { host: '10.0.0.1', port: 26379 },
          { host: 'sentinel-2.internal', port: 26380 },
        ],
        username: 'watcher',
        password: 'sentinel-pw',
      },
      username: 'app',
      password: 'data-pw',
      tls: null,
      prefix: 'rl',
      expiryJitterMs: 0,
    });
  });

  it('cluster: the seed nodes', () => {
    const redis = redisOf(withRedis('cluster: { nodes: [10.0.0.1:7000, 10.0.0.2:7001, 10.0.0.3:7002] }', 'password: pw'));
    expect(redis.topology).toEqual({
      kind: 'cluster',
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: '10.0.0.3', port: 7002 },
      ],
    });
    expect(redis.password).toBe('pw');
  });

  it('SLUICE_REDIS_PASSWORD replaces password_file (not read at all) and the url\'s password', () => {
    expect(redisOf(withRedis('url: redis://h:1', 'password_file: /nonexistent/password'), { SLUICE_REDIS_PASSWORD: 'from-env' }).password).toBe('from-env');
    const fromUrl = redisOf(withRedis('url: redis://bob:in-url@h:1'), { SLUICE_REDIS_PASSWORD: 'from-env' });
    expect(fromUrl.username).toBe('bob');
    expect(fromUrl.password).toBe('from-env');
    const cluster = redisOf(withRedis('cluster: { nodes: [h:7000] }', 'password: in-file'), { SLUICE_REDIS_PASSWORD: 'from-env' });
    expect(cluster.password).toBe('from-env');
  });

  it('SLUICE_REDIS_PASSWORD alone does not select the Redis store', () => {
    expect(parsePolicy(VALID, 'p.yaml', { SLUICE_REDIS_PASSWORD: 'pw' }).store.redis).toBeNull();
  });

  it('SLUICE_REDIS_URL replaces a sentinel or cluster topology, keeping auth, tls and prefix', () => {
    const redis = redisOf(withRedis('cluster: { nodes: [h:7000] }', 'password: pw', 'prefix: rl'), { SLUICE_REDIS_URL: 'redis://10.9.9.9:6379' });
    expect(redis.topology).toEqual({ kind: 'standalone', node: { host: '10.9.9.9', port: 6379 }, db: 0 });
    expect(redis.password).toBe('pw');
    expect(redis.prefix).toBe('rl');
  });

  it('exactly one of url, socket, sentinel and cluster', () => {
    expect(problems(withRedis('url: redis://h:1', 'cluster: { nodes: [h:7000] }'))).toEqual([
      'store.redis (line 3, column 5): expected exactly one of url, socket, sentinel or cluster, found url and cluster',
    ]);
    expect(problems(withRedis('prefix: rl'))).toEqual(['store.redis (line 3, column 5): expected one of url, socket, sentinel or cluster']);
  });

  it('socket: a Unix socket by its absolute path, without TLS', () => {
    expect(redisOf(withRedis('socket: /run/redis/redis.sock', 'password: pw')).topology).toEqual({ kind: 'socket', path: '/run/redis/redis.sock' });
    expect(problems(withRedis('socket: redis.sock'))).toEqual([expect.stringMatching(/^store\.redis\.socket .*expected an absolute path of a Unix socket$/)]);
    expect(problems(withRedis('socket: /run/redis.sock', 'tls: {}'))).toEqual([expect.stringMatching(/^store\.redis\.tls .*a Unix socket carries no TLS/)]);
  });

  it('a cluster or sentinel needs nodes, each host:port', () => {
    expect(problems(withRedis('cluster: { nodes: [] }'))).toEqual([
      'store.redis.cluster.nodes (line 3, column 23): expected at least one cluster node host:port',
    ]);
    // A missing field is placed at the map it is missing from.
    expect(problems(withRedis('cluster: {}'))).toEqual(['store.redis.cluster.nodes (line 3, column 14): required (a list of cluster node host:port)']);
    expect(problems(withRedis('cluster: { nodes: h:7000 }'))).toEqual(['store.redis.cluster.nodes (line 3, column 23): "h:7000": expected a list of cluster node host:port']);
    const found = problems(withRedis('sentinel:', '  master: m', '  nodes: [10.0.0.1:26379, localhost, "h:99999", ":7000", "h:"]'));
    expect(found).toEqual(
      [
        [1, 31, '"localhost"'],
        [2, 42, '"h:99999"'],
        [3, 53, '":7000"'],
        [4, 62, '"h:"'],
      ].map(([i, column, value]) => `store.redis.sentinel.nodes[${i}] (line 5, column ${column}): ${value}: expected host:port such as 10.0.0.5:6379`),
    );
    expect(problems(withRedis('sentinel: { nodes: [h:1] }'))).toEqual([
      'store.redis.sentinel.master (line 3, column 15): required (the master name the sentinels monitor)',
    ]);
  });

  it('files that cannot be read, or are not PEM, are named by their field', () => {
    const caFile = join(dir, 'missing-ca.pem');
    const found = problems(
      withRedis('url: redis://h:1', `password_file: ${join(dir, 'no-such-password')}`, `tls: { ca_file: ${caFile}, cert_file: ${keyFile}, key_file: ${dir} }`),
    );
    // Each message names its file, so the value is not echoed before it.
    const certColumn = '    tls: { ca_file: '.length + caFile.length + ', cert_file: '.length + 1;
    const keyColumn = certColumn + keyFile.length + ', key_file: '.length;
    expect(found).toEqual([
      `store.redis.password_file (line 4, column 20): cannot read ${join(dir, 'no-such-password')}: no such file`,
      `store.redis.tls.ca_file (line 5, column 21): cannot read ${caFile}: no such file`,
      `store.redis.tls.cert_file (line 5, column ${certColumn}): ${keyFile}: expected a PEM file with a certificate (-----BEGIN CERTIFICATE-----)`,
      `store.redis.tls.key_file (line 5, column ${keyColumn}): cannot read ${dir}: is a directory, not a file`,
    ]);
  });

  it('an empty password file is refused', () => {
    expect(problems(withRedis('url: redis://h:1', `password_file: ${file('empty', '\n')}`))).toEqual([
      `store.redis.password_file (line 4, column 20): ${join(dir, 'empty')}: the file is empty`,
    ]);
  });

  it('rejects conflicting and incomplete credentials and certificates', () => {
    expect(problems(withRedis('url: redis://h:1', 'password: a', `password_file: ${passwordFile}`))).toEqual([
      'store.redis.password_file (line 5, column 20): give password or password_file, not both',
    ]);
    expect(problems(withRedis('url: redis://u:a@h:1', 'password: b'))).toEqual([
      'store.redis.url (line 3, column 10): the url carries a password and so does password/password_file: give it once',
    ]);
    expect(problems(withRedis('url: redis://h:1', 'username: alice'))).toEqual([
      'store.redis.username (line 4, column 15): a username needs a password (password, password_file or SLUICE_REDIS_PASSWORD)',
    ]);
    expect(problems(withRedis('sentinel: { master: m, nodes: [h:1], username: u }'))).toEqual([
      'store.redis.sentinel.username (line 3, column 52): a sentinel username needs a sentinel password',
    ]);
    expect(problems(withRedis('url: redis://h:1', `tls: { cert_file: ${certFile} }`))).toEqual([
      'store.redis.tls.cert_file (line 4, column 23): cert_file needs key_file too (a client certificate and its key)',
    ]);
  });

  it('rejects bad urls and unknown keys, with their paths', () => {
    expect(problems(withRedis('url: redis://h:1/zero'))).toEqual([
      'store.redis.url (line 3, column 10): "redis://h:1/zero": expected redis://host:port or rediss://host:port[/db]: the path must be a database number, not /zero',
    ]);
    expect(problems(withRedis('url: redis://h:1?family=6'))).toEqual([expect.stringMatching(/^store\.redis\.url \(line 3, column 10\): .*query parameters/)]);
    // A url's password is not echoed.
    expect(problems(withRedis('url: redis://alice:s3cret@h:1/zero'))).toEqual([expect.stringMatching(/^store\.redis\.url \(line 3, column 10\): "redis:\/\/\*\*\*@h:1\/zero": /)]);
    expect(problems(withRedis('url: redis://h:1', 'password: 12345'))).toEqual(['store.redis.password (line 4, column 15): expected a string']);
    // An unknown key is placed at the key.
    expect(problems(withRedis('url: redis://h:1', 'tls: { ca: x }', 'sentinels: []'))).toEqual([
      'store.redis.tls (line 4, column 12): unknown key "ca" (known keys: ca_file, cert_file, key_file, server_name, skip_hostname_verification, insecure_skip_verify)',
      'store.redis (line 5, column 5): unknown key "sentinels" (did you mean sentinel?)',
    ]);
    expect(problems(withRedis('cluster: { nodes: [h:1], name: x }'))).toEqual(['store.redis.cluster (line 3, column 30): unknown key "name" (known keys: nodes)']);
  });
});

describe('sluice check', () => {
  it('exits 0 on a valid file', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'check', writePolicy(VALID)]);
    expect(stdout).toMatch(/ok, 1 resource/);
  });

  it('prints every problem and exits 1 on an invalid file', async () => {
    const file = writePolicy('resources:\n  - name: r\n    limits:\n      - { name: l, algorithm: fixed_window, rate: 1/fortnight }\n');
    const failed = await run(process.execPath, [CLI, 'check', file]).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toBe(
      `${file}: invalid policy\n  resources[0].limits[0].rate (line 4, column 51): "1/fortnight": the unit must be one of ms, s, m, h, d, as in 1/s, 1/1m or 1/30s\n`,
    );
  });

  it('refuses to serve a bad file: exits 1 without listening', async () => {
    const file = writePolicy('resources: []\n');
    const failed = await run(process.execPath, [CLI, 'serve', '--config', file], {
      env: { ...process.env, SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: 'off' },
    }).then(
      () => undefined,
      (err: { code: number; stderr: string; stdout: string }) => err,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain('resources');
    expect(failed?.stdout).not.toContain('listening');
  });
});

function withReserve(reserve: string): string {
  return `
resources:
  - name: openai
    limits:
      - { name: rpm, algorithm: fixed_window, rate: 10/s }
    reserve: ${reserve}
`;
}

describe('reserve in a policy', () => {
  it('compiles entries by priority, and the part of every limit each priority may use', () => {
    const policy = parsePolicy(withReserve('[{ fraction: 0.1, min_priority: 9 }, { fraction: 0.2, min_priority: 5 }]'), 'p.yaml');
    const resource = policy.resources.get('openai')!;
    expect(resource.reserve).toEqual([
      { fraction: 0.2, minPriority: 5 },
      { fraction: 0.1, minPriority: 9 },
    ]);
    expect(usableFraction(resource, 0)).toBeCloseTo(0.7, 12);
    expect(usableFraction(resource, -2_147_483_648)).toBeCloseTo(0.7, 12);
    expect(usableFraction(resource, 4)).toBeCloseTo(0.7, 12);
    expect(usableFraction(resource, 5)).toBeCloseTo(0.9, 12);
    expect(usableFraction(resource, 8)).toBeCloseTo(0.9, 12);
    expect(usableFraction(resource, 9)).toBe(1);
    expect(lowestUsable(resource)).toBeCloseTo(0.7, 12);
  });

  it('a resource without reserve lets every priority use all of every limit', () => {
    const resource = parsePolicy(withReserve('[]'), 'p.yaml').resources.get('openai')!;
    expect(usableFraction(resource, -5)).toBe(1);
    expect(lowestUsable(resource)).toBe(1);
  });

  it('rejects fractions outside (0, 1), sums of 1 or more, duplicate and non-int32 priorities, with their paths', () => {
    expect(problems(withReserve('[{ fraction: 0, min_priority: 1 }]'))).toEqual(['resources[0].reserve[0].fraction (line 6, column 27): 0: expected a number above 0 and below 1']);
    expect(problems(withReserve('[{ fraction: 1, min_priority: 1 }]'))).toContainEqual(expect.stringMatching(/^resources\[0\]\.reserve\[0\]\.fraction .*above 0 and below 1/));
    expect(problems(withReserve('[{ fraction: 0.6, min_priority: 1 }, { fraction: 0.4, min_priority: 2 }]'))).toEqual([
      'resources[0].reserve (line 6, column 14): the fractions add up to 1: expected less than 1, so that the lowest priority can use some of every limit',
    ]);
    expect(problems(withReserve('[{ fraction: 0.1, min_priority: 3 }, { fraction: 0.2, min_priority: 3 }]'))[0]).toMatch(
      /^resources\[0\]\.reserve\[1\]\.min_priority .*duplicate min_priority 3/,
    );
    expect(problems(withReserve('[{ fraction: 0.1, min_priority: 2147483648 }]'))[0]).toMatch(/min_priority .*expected at most 2147483647/);
    expect(problems(withReserve('[{ fraction: 0.1, min_priority: 1.5 }]'))[0]).toMatch(/min_priority .*expected a whole number/);
    expect(problems(withReserve('[{ fraction: 0.1 }]'))[0]).toMatch(/^resources\[0\]\.reserve\[0\]\.min_priority/);
    expect(problems(withReserve('[{ fraction: 0.1, min_priority: 1, lane: x }]'))[0]).toMatch(/unknown key "lane"/);
  });

  it('sluice check prints each resource\'s reserve', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'check', writePolicy(withReserve('[{ fraction: 0.2, min_priority: 5 }]'))]);
    expect(stdout).toContain('openai: reserve 20% for priority >= 5 (priority < 5 may use 80% of every limit)');
  });
});

function withWaiting(extra: string): string {
  return `
resources:
  - name: openai
    limits:
      - { name: rpm, algorithm: fixed_window, rate: 10/s }
${extra}
`;
}

describe('waiting in a policy', () => {
  it('compiles lanes in file order (the first is the default), their shares, and the caps, with defaults', () => {
    const policy = parsePolicy(withWaiting('    lanes: { interactive: 0.7, batch: 0.3 }\n    wait: { max_waiters: 50 }\nserver: { max_waiters: 7 }'), 'p.yaml');
    const resource = policy.resources.get('openai')!;
    expect(resource.lanes).toEqual(['interactive', 'batch']);
    expect(resource.laneShares).toEqual([0.7, 0.3]);
    expect(resource.maxWaiters).toBe(50);
    expect(policy.server.maxWaiters).toBe(7);
    expect(laneOf(resource, '')).toBe(1);
    expect(laneOf(resource, 'batch')).toBe(2);
    expect(laneOf(resource, 'bulk')).toBeUndefined();
    const plain = parsePolicy(withWaiting(''), 'p.yaml');
    expect(plain.resources.get('openai')!).toMatchObject({ lanes: [], laneShares: [], maxWaiters: 1_000 });
    expect(plain.server.maxWaiters).toBe(10_000);
    expect(laneOf(plain.resources.get('openai')!, '')).toBe(1);
    expect(laneOf(plain.resources.get('openai')!, 'interactive')).toBeUndefined();
  });

  it('rejects shares that do not add up to 1, shares outside (0, 1], too many lanes, bad names and caps, with their paths', () => {
    expect(problems(withWaiting('    lanes: { a: 0.5, b: 0.4 }'))).toEqual(['resources[0].lanes (line 6, column 12): expected the shares to add up to 1']);
    expect(problems(withWaiting('    lanes: { a: 0, b: 1 }'))[0]).toMatch(/^resources\[0\]\.lanes\.a .*expected a share above 0 and at most 1/);
    expect(problems(withWaiting('    lanes: { a: 1.5 }'))).toContainEqual(expect.stringMatching(/lanes\.a .*at most 1/));
    const seventeen = Array.from({ length: 17 }, (_, i) => `l${i}: ${i === 0 ? 0.84 : 0.01}`).join(', ');
    expect(problems(withWaiting(`    lanes: { ${seventeen} }`))).toContain('resources[0].lanes (line 6, column 12): expected at most 16 lanes');
    expect(problems(withWaiting('    lanes: { "a b": 1 }'))[0]).toMatch(/lanes/);
    expect(problems(withWaiting('    lanes: [a, b]'))[0]).toMatch(/^resources\[0\]\.lanes .*expected a map of lane name to share/);
    expect(problems(withWaiting('    wait: { max_waiters: 0 }'))).toEqual(['resources[0].wait.max_waiters (line 6, column 26): 0: expected at least 1']);
    expect(problems(withWaiting('    wait: { max_waiters: 5, max_wait: 1s }'))[0]).toMatch(/unknown key "max_wait"/);
    expect(problems(withWaiting('server: { max_waiters: 1000001 }'))[0]).toMatch(/^server\.max_waiters .*at most 1000000/);
  });

  it('sluice check prints each resource\'s lanes', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'check', writePolicy(withWaiting('    lanes: { interactive: 0.7, batch: 0.3 }'))]);
    expect(stdout).toContain('openai: lanes interactive 70% (the default), batch 30%');
  });
});

describe('tracing in a policy', () => {
  const RESOURCES = 'resources:\n  - name: a\n    limits: [{ name: y, algorithm: fixed_window, rate: 1/s }]\n';

  it('is off unless enabled; enabled, it compiles with upstream’s defaults and leaves the rest to OTEL_*', () => {
    expect(parsePolicy(RESOURCES, 'policy.yaml', {}).tracing).toBeNull();
    expect(parsePolicy(`${RESOURCES}tracing: { sampling_rate: 0.5 }\n`, 'policy.yaml', {}).tracing).toBeNull();
    expect(parsePolicy(`${RESOURCES}tracing: { enabled: true }\n`, 'policy.yaml', {}).tracing).toEqual({
      exporter: 'http',
      endpoint: null,
      serviceName: null,
      serviceNamespace: null,
      serviceInstanceId: null,
      samplingRate: 1,
    });
    const full = `${RESOURCES}tracing:
  enabled: true
  exporter: grpc
  endpoint: http://otel-collector:4317
  service_name: checkout-limits
  service_namespace: shop
  service_instance_id: pod-7
  sampling_rate: 0.1
`;
    expect(parsePolicy(full, 'policy.yaml', {}).tracing).toEqual({
      exporter: 'grpc',
      endpoint: 'http://otel-collector:4317',
      serviceName: 'checkout-limits',
      serviceNamespace: 'shop',
      serviceInstanceId: 'pod-7',
      samplingRate: 0.1,
    });
  });

  it('rejects a bad exporter, endpoint, name, rate or key, naming the field', () => {
    expect(
      problems(`${RESOURCES}tracing:
  enabled: yes
  exporter: zipkin
  endpoint: otel-collector:4318
  service_name: ""
  sampling_rate: 1.5
  sample_rate: 1
`),
    ).toEqual([
      'tracing.enabled (line 5, column 12): "yes": expected true or false',
      'tracing.exporter (line 6, column 13): "zipkin": expected http (OTLP/HTTP) or grpc (OTLP/gRPC)',
      'tracing.endpoint (line 7, column 13): "otel-collector:4318": expected an http:// or https:// URL, such as http://otel-collector:4318/v1/traces',
      'tracing.service_name (line 8, column 17): "": expected a non-empty string of at most 256 characters',
      'tracing.sampling_rate (line 9, column 18): 1.5: expected a number from 0 to 1',
      'tracing (line 10, column 3): unknown key "sample_rate" (did you mean sampling_rate?)',
    ]);
  });
});
