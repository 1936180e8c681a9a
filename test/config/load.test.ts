import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/config/load.js';
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
    expect(policy.server).toEqual({ listen: '127.0.0.1:50051', admin: '127.0.0.1:9464', shutdownGraceMs: 10_000 });
    expect(policy.store).toEqual({ redis: null, timeoutMs: 20, maxKeys: 1_000_000 });
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

  it('names the place of every problem, all at once', () => {
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
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^server\.listen \(line 3\): expected host:port or unix:\/path$/),
        expect.stringMatching(/^resources\[0\]\.on_store_failure \(line 7\): expected open, closed or local$/),
        expect.stringMatching(/^resources\[0\]\.limits\[0\]\.rate \(line 9\): expected N\/period/),
        expect.stringMatching(/^resources\[0\]\.limits\[0\] \(line 9\): unknown key "burts"$/),
        expect.stringMatching(/^resources\[0\]\.limits\[1\]\.algorithm .*: expected algorithm to be one of token_bucket/),
        expect.stringMatching(/^resources\[0\]\.limits\[2\]\.max .*: expected at least 1$/),
        expect.stringMatching(/^resources\[0\]\.limits\[2\]\.ttl .*: expected a duration/),
      ]),
    );
  });

  it('rejects duplicate names and keys after the shape is right', () => {
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
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^resources\[1\]\.name .*: duplicate name "a"/),
        expect.stringMatching(/^resources\[0\]\.limits\[1\]\.name .*: duplicate name "x"/),
        expect.stringMatching(/^resources\[0\]\.keys\[1\] .*: duplicate key "tenant"/),
      ]),
    );
  });

  it('reports YAML syntax errors with line and column', () => {
    expect(problems('resources:\n  - name: [unclosed\n')[0]).toMatch(/^line \d+, column \d+: /);
  });

  it('rejects a file with no resources and an unknown top-level key', () => {
    expect(problems('resourcez: []')).toEqual(
      expect.arrayContaining(['resources: required (array)', '(top level): unknown key "resourcez"']),
    );
  });

  it('lets the environment override listen, admin and the Redis URL', () => {
    const policy = parsePolicy(VALID, 'p.yaml', {
      SLUICE_LISTEN: 'unix:/tmp/sluice.sock',
      SLUICE_ADMIN: 'off',
      SLUICE_REDIS_URL: 'redis://10.0.0.1:6380',
    });
    expect(policy.server.listen).toBe('unix:/tmp/sluice.sock');
    expect(policy.server.admin).toBeNull();
    expect(policy.store.redis).toEqual({ url: 'redis://10.0.0.1:6380', prefix: 'sluice' });
  });

  it('validates what the environment says too', () => {
    expect(problems(VALID, { SLUICE_REDIS_URL: 'http://example' })).toEqual([expect.stringMatching(/^store\.redis\.url: expected redis:\/\//)]);
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
    expect(failed?.stderr).toContain('resources[0].limits[0].rate (line 4): expected N/period');
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
