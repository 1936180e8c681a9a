// Every number a policy can hold, at its bound (loads) and one past it (refused with the field, its
// line and column, and the value).
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/config/load.js';

function problems(yaml: string): string[] {
  try {
    parsePolicy(yaml, 'policy.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return (err as PolicyError).problems;
  }
  throw new Error('expected the policy to be rejected');
}

/** A policy whose line 4 (and only line 4) holds the limit under test. */
const withLimit = (limit: string, extra = '') => `resources:
  - name: r${extra}
    limits:
      - ${limit}
`;
const LIMIT_FIELD = 'resources[0].limits[0]';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

describe('policy bounds: durations', () => {
  const cases: [string, string, (value: string) => string, number, string, string][] = [
    // field, its place, yaml with the value, the bound in ms, the bound as text, one past it
    ['store.timeout', 'line 2, column 12', (v) => `store:\n  timeout: ${v}\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n`, 60_000, '1m', '60001ms'],
    ['server.shutdown_grace', 'line 2, column 19', (v) => `server:\n  shutdown_grace: ${v}\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n`, 3_600_000, '1h', '3600001ms'],
    ['resources[0].lease.ttl', 'line 3, column 19', (v) => `resources:\n  - name: r\n    lease: { ttl: ${v} }\n    limits: [{ name: l, algorithm: fixed_window, rate: 1/s }]\n`, 60_000, '1m', '1.0001m'],
    ['resources[0].settle_within', 'line 3, column 20', (v) => `resources:\n  - name: r\n    settle_within: ${v}\n    limits: [{ name: l, algorithm: fixed_window, rate: 1/s }]\n`, 86_400_000, '1d', '24.001h'],
    [`${LIMIT_FIELD}.ttl`, 'line 4, column 57', (v) => withLimit(`{ name: l, algorithm: concurrency, max: 1, ttl: ${v} }`), 86_400_000, '1d', '86400001ms'],
  ];

  for (const [field, place, yaml, maxMs, maxText, past] of cases) {
    it(`${field}: at most ${maxText}`, () => {
      const policy = parsePolicy(yaml(maxText), 'p.yaml');
      const values = [policy.store.timeoutMs, policy.server.shutdownGraceMs, ...[...policy.resources.values()].flatMap((r) => [r.lease.ttlMs, r.permitTtlMs])];
      expect(values).toContain(maxMs);
      expect(problems(yaml(past))).toEqual([`${field} (${place}): "${past}": expected at most ${maxText}`]);
    });
  }

  it('refuses what once overflowed timers and Redis: 25d timeout, 30d grace, a 9999999999999d ttl, 400 digits', () => {
    expect(problems(`store: { timeout: 25d }\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]`)).toEqual([
      'store.timeout (line 1, column 19): "25d": expected at most 1m',
    ]);
    expect(problems(`server: { shutdown_grace: 30d }\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]`)).toEqual([
      'server.shutdown_grace (line 1, column 27): "30d": expected at most 1h',
    ]);
    expect(problems(withLimit('{ name: l, algorithm: concurrency, max: 1, ttl: 9999999999999d }'))).toEqual([
      `${LIMIT_FIELD}.ttl (line 4, column 57): "9999999999999d": expected at most 1d`,
    ]);
    // Echoed cut short.
    expect(problems(withLimit(`{ name: l, algorithm: concurrency, max: 1, ttl: ${'9'.repeat(400)}ms }`))).toEqual([
      `${LIMIT_FIELD}.ttl (line 4, column 57): "${'9'.repeat(60)}…": expected at most 1d`,
    ]);
  });

  it('a duration is whole milliseconds, at least 1', () => {
    expect(parsePolicy(withLimit('{ name: l, algorithm: concurrency, max: 1, ttl: 1.5s }'), 'p.yaml').resources.get('r')!.permitTtlMs).toBe(1500);
    expect(problems(withLimit('{ name: l, algorithm: concurrency, max: 1, ttl: 1.5ms }'))).toEqual([
      `${LIMIT_FIELD}.ttl (line 4, column 57): "1.5ms": expected a whole number of milliseconds`,
    ]);
    expect(problems(withLimit('{ name: l, algorithm: concurrency, max: 1, ttl: 0s }'))).toEqual([
      `${LIMIT_FIELD}.ttl (line 4, column 57): "0s": expected a duration such as 20ms, 30s, 1m`,
    ]);
  });
});

describe('policy bounds: rates and counts', () => {
  it(`N of a window is at most 2^53-1 (${MAX_SAFE}); past it, and 400 digits, are refused`, () => {
    for (const algorithm of ['fixed_window', 'sliding_window']) {
      const policy = parsePolicy(withLimit(`{ name: l, algorithm: ${algorithm}, rate: ${MAX_SAFE}/1d }`), 'p.yaml');
      expect(policy.resources.get('r')!.limits[0]).toMatchObject({ capacity: MAX_SAFE, periodMs: 86_400_000 });
      const tooMany = (rate: string) => `${LIMIT_FIELD}.rate (line 4, column ${algorithm.length + 39}): "${rate}": expected N at most ${MAX_SAFE} (2^53-1, the largest exact count)`;
      expect(problems(withLimit(`{ name: l, algorithm: ${algorithm}, rate: 9007199254740992/1d }`))).toEqual([tooMany('9007199254740992/1d')]);
      expect(problems(withLimit(`{ name: l, algorithm: ${algorithm}, rate: ${'7'.repeat(400)}/1d }`))).toEqual([tooMany(`${'7'.repeat(60)}…`)]);
    }
  });

  it('a period is at most 365d and whole milliseconds', () => {
    expect(parsePolicy(withLimit('{ name: l, algorithm: fixed_window, rate: 1/365d }'), 'p.yaml').resources.get('r')!.limits[0]).toMatchObject({ periodMs: 31_536_000_000 });
    const rate = `${LIMIT_FIELD}.rate (line 4, column 51)`;
    expect(problems(withLimit('{ name: l, algorithm: fixed_window, rate: 1/31536000001ms }'))).toEqual([`${rate}: "1/31536000001ms": expected a period of at most 365d`]);
    expect(problems(withLimit(`{ name: l, algorithm: fixed_window, rate: 1/${'9'.repeat(400)}d }`))).toEqual([`${rate}: "1/${'9'.repeat(58)}…": expected a period of at most 365d`]);
    expect(problems(withLimit('{ name: l, algorithm: fixed_window, rate: 1/0.5ms }'))).toEqual([`${rate}: "1/0.5ms": expected a period of whole milliseconds`]);
  });

  it('a token bucket runs at most one unit per microsecond, exactly on the microsecond grid', () => {
    const bucket = (rate: string, burst = '') => withLimit(`{ name: l, algorithm: token_bucket, rate: ${rate}${burst} }`);
    expect(parsePolicy(bucket('1000000/1s'), 'p.yaml').resources.get('r')!.limits[0]).toMatchObject({ capacity: 1_000_000, intervalMs: 0.001 });
    // Off the grid but at least 1 ms apart: rounded up to the next microsecond, under 0.1% slower.
    expect(parsePolicy(bucket('7/1s'), 'p.yaml').resources.get('r')!.limits[0]).toMatchObject({ capacity: 7, intervalMs: 142.858 });
    expect(parsePolicy(bucket('1000/1s'), 'p.yaml').resources.get('r')!.limits[0]).toMatchObject({ intervalMs: 1 });
    expect(problems(bucket('1500000/1s'))).toEqual([
      expect.stringMatching(/^resources\[0\]\.limits\[0\]\.rate \(line 4, column 51\): "1500000\/1s": a token bucket keeps time in whole microseconds, .* expected N at most 1000 \(one per ms\) or a divisor of 1000000/),
    ]);
    expect(problems(bucket('600001/1s'))).toEqual([expect.stringMatching(/^resources\[0\]\.limits\[0\]\.rate \(line 4, column 51\): .*would run 17% slow/)]);
  });

  it('a token bucket refills from empty within 365d: burst at most 365d / interval', () => {
    const bucket = (burst: number) => withLimit(`{ name: l, algorithm: token_bucket, rate: 1000/1s, burst: ${burst} }`);
    expect(parsePolicy(bucket(31_536_000_000), 'p.yaml').resources.get('r')!.limits[0]).toMatchObject({ capacity: 31_536_000_000, intervalMs: 1 });
    expect(problems(bucket(31_536_000_001))).toEqual([
      `${LIMIT_FIELD}.burst (line 4, column 67): 31536000001: expected at most 31536000000: an empty bucket of 31536000001 would take more than 365d to refill`,
    ]);
  });

  it(`burst and max are whole numbers from 1 to ${MAX_SAFE}`, () => {
    expect(parsePolicy(withLimit(`{ name: l, algorithm: concurrency, max: ${MAX_SAFE}, ttl: 1s }`), 'p.yaml').resources.get('r')!.limits[0]).toMatchObject({ capacity: MAX_SAFE });
    const max = `${LIMIT_FIELD}.max (line 4, column 49)`;
    expect(problems(withLimit('{ name: l, algorithm: concurrency, max: 9007199254740992, ttl: 1s }'))).toEqual([`${max}: 9007199254740992: expected at most ${MAX_SAFE}`]);
    // Too long for a number: YAML reads it as a string.
    expect(problems(withLimit(`{ name: l, algorithm: concurrency, max: ${'9'.repeat(400)}, ttl: 1s }`))).toEqual([`${max}: "${'9'.repeat(60)}…": expected a whole number`]);
    expect(problems(withLimit('{ name: l, algorithm: token_bucket, rate: 1/365d, burst: 9007199254740992 }'))).toEqual([
      `${LIMIT_FIELD}.burst (line 4, column 66): 9007199254740992: expected at most ${MAX_SAFE}`,
    ]);
    expect(problems(withLimit('{ name: l, algorithm: concurrency, max: 2.5, ttl: 1s }'))).toEqual([`${max}: 2.5: expected a whole number`]);
  });

  it('store.max_keys is at most 1,000,000', () => {
    const yaml = (n: number) => `store: { max_keys: ${n} }\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]`;
    expect(parsePolicy(yaml(1_000_000), 'p.yaml').store.maxKeys).toBe(1_000_000);
    expect(problems(yaml(1_000_001))).toEqual(['store.max_keys (line 1, column 20): 1000001: expected at most 1000000']);
  });

  it('at most 10,000 resources', () => {
    const resources = (n: number) =>
      `resources:\n${Array.from({ length: n }, (_, i) => `  - { name: r${i}, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }\n`).join('')}`;
    expect(parsePolicy(resources(10_000), 'p.yaml').resources.size).toBe(10_000);
    expect(problems(resources(10_001))).toEqual(['line 2, column 3: a list of more than 10000 items; a policy needs fewer']);
  });
});
