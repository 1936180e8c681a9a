// ShouldRateLimit's semantics below the wire, through the real Decider on the memory store with a
// fake clock: statuses per descriptor, hits_addend, overrides, shadow, unlimited, replaces,
// requests_per_unit 0, all-or-nothing, headers, sluice's algorithms, and store failures.
import { beforeEach, describe, expect, it } from 'vitest';
import { Decider } from '../../src/decide/decider.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import { FailurePolicy } from '../../src/guard/failure-policy.js';
import { StoreUnavailable } from '../../src/guard/store-unavailable.js';
import type { Store } from '../../src/store/store.js';
import type { EnvoyConfig } from '../../src/envoy/config.js';
import { EnvoyStoreError, shouldRateLimit, type Code, type DescriptorStatus, type EnvoyDescriptor, type EnvoyRequest } from '../../src/envoy/limiter.js';
import { configOf } from './support.js';

const FILE = `
domain: api
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 3, name: per-user }
  - key: path
    value: /expensive
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: free
    rate_limit: { unlimited: true }
  - key: blocked
    rate_limit: { unit: second, requests_per_unit: 0, name: denylist }
  - key: tier
    rate_limit: { unit: minute, requests_per_unit: 10, name: general }
  - key: tier
    value: gold
    rate_limit: { unit: minute, requests_per_unit: 100, name: gold, replaces: [{ name: general }] }
  - key: tb
    rate_limit: { unit: second, requests_per_unit: 2, sluice_algorithm: token_bucket, sluice_burst: 4 }
  - key: path
    value: /static/*
    rate_limit: { unit: second, requests_per_unit: 5, name: static }
  - key: plan
    value: gold
    descriptors:
      - key: user
        rate_limit: { unit: minute, requests_per_unit: 10, name: gold-user }
  - key: multi
    rate_limit:
      name: llm
      unit: hour
      requests_per_unit: 100
      sluice_limits:
        - { unit: minute, requests_per_unit: 2 }
`;

// 15 s into a minute (and into an hour, a day).
const T0 = Date.UTC(2030, 0, 1, 0, 0, 15);

let now = T0;
let store: MemoryStore;
let decider: Decider;
let config: EnvoyConfig;

const d = (entries: Record<string, string> | [string, string][], extra: Partial<EnvoyDescriptor> = {}): EnvoyDescriptor => ({
  entries: (Array.isArray(entries) ? entries : Object.entries(entries)).map(([key, value]) => ({ key, value })),
  override: null,
  hits: null,
  ...extra,
});
const ask = (descriptors: EnvoyDescriptor[], more: Partial<EnvoyRequest> = {}, cfg = config) =>
  shouldRateLimit(decider, cfg, { domain: 'api', descriptors, hits: 1, ...more }, { now: () => now });

beforeEach(() => {
  now = T0;
  store = new MemoryStore({ maxKeys: 1000, now: () => now, sweepEveryMs: 0 });
  decider = new Decider(store, { maxPermits: 100, now: () => now });
  config = configOf({ 'api.yaml': FILE });
});

/** A status as one line: code, name:requests_per_unit/unit (or -), limit_remaining. */
const line = (s: DescriptorStatus) =>
  `${s.code} ${s.currentLimit ? `${s.currentLimit.name}:${s.currentLimit.requestsPerUnit}/${s.currentLimit.unit}` : '-'} ${s.remaining}`;

describe('the decision table (each row on fresh budgets)', () => {
  const rows: [string, EnvoyDescriptor[], Partial<EnvoyRequest>, Code, string[]][] = [
    ['exact value', [d({ path: '/expensive' })], {}, 'OK', ['OK :2/HOUR 1']],
    ['wildcard value', [d({ path: '/static/logo.png' })], {}, 'OK', ['OK static:5/SECOND 4']],
    ['key-only default', [d({ user: 'ann' })], {}, 'OK', ['OK per-user:3/MINUTE 2']],
    ['depth 2', [d([['plan', 'gold'], ['user', 'u1']])], {}, 'OK', ['OK gold-user:10/MINUTE 9']],
    ['more entries than the config has levels', [d([['user', 'ann'], ['extra', '1']])], {}, 'OK', ['OK - 0']],
    ['stops at a level without a limit', [d({ plan: 'gold' })], {}, 'OK', ['OK - 0']],
    ['no match', [d({ nothing: 'x' })], {}, 'OK', ['OK - 0']],
    ['unknown domain', [d({ user: 'ann' })], { domain: 'elsewhere' }, 'OK', ['OK - 0']],
    ['replaces, both in the request', [d({ tier: 'silver' }), d({ tier: 'gold' })], {}, 'OK', ['OK - 0', 'OK gold:100/MINUTE 99']],
    ['replaces, the replaced alone', [d({ tier: 'silver' })], {}, 'OK', ['OK general:10/MINUTE 9']],
    ['shadow over its limit', [d({ shadow: 's' })], { hits: 2 }, 'OK', ['OK :1/MINUTE 1']],
    ['unlimited', [d({ free: 'x' })], {}, 'OK', ['OK - 4294967295']],
    ['requests_per_unit 0', [d({ blocked: 'x' })], {}, 'OVER_LIMIT', ['OVER_LIMIT denylist:0/SECOND 0']],
    ['request hits_addend', [d({ user: 'ann' })], { hits: 3 }, 'OK', ['OK per-user:3/MINUTE 0']],
    ['request hits_addend over the limit', [d({ user: 'ann' })], { hits: 4 }, 'OVER_LIMIT', ['OVER_LIMIT per-user:3/MINUTE 3']],
    ['descriptor hits_addend overrides the request', [d({ user: 'ann' }, { hits: 1 })], { hits: 3 }, 'OK', ['OK per-user:3/MINUTE 2']],
    ['descriptor hits_addend 0 only checks', [d({ user: 'ann' }, { hits: 0 })], {}, 'OK', ['OK per-user:3/MINUTE 3']],
    ['override', [d({ user: 'ann' }, { override: { requestsPerUnit: 5, unit: 'HOUR' } })], {}, 'OK', ['OK :5/HOUR 4']],
    ['override of an unmatched descriptor', [d({ nothing: 'x' }, { override: { requestsPerUnit: 1, unit: 'SECOND' } })], {}, 'OK', ['OK :1/SECOND 0']],
    ['override of 0', [d({ user: 'ann' }, { override: { requestsPerUnit: 0, unit: 'DAY' } })], {}, 'OVER_LIMIT', ['OVER_LIMIT :0/DAY 0']],
    ['one over, the others given back', [d({ user: 'ann' }), d({ blocked: 'x' })], {}, 'OVER_LIMIT', ['OK per-user:3/MINUTE 3', 'OVER_LIMIT denylist:0/SECOND 0']],
  ];
  it.each(rows)('%s', async (_what, descriptors, request, overall, statuses) => {
    const answer = await ask(descriptors, request);
    expect(answer.overall).toBe(overall);
    expect(answer.statuses.map(line)).toEqual(statuses);
  });
});

describe('statuses', () => {
  it('one per descriptor, in order, with current_limit, limit_remaining and duration_until_reset', async () => {
    const answer = await ask([d({ user: 'ann' }), d({ nothing: 'here' }), d({ path: '/expensive' })]);
    expect(answer.overall).toBe('OK');
    expect(answer.statuses).toEqual([
      { code: 'OK', currentLimit: { name: 'per-user', requestsPerUnit: 3, unit: 'MINUTE' }, remaining: 2, resetSeconds: 45 },
      { code: 'OK', currentLimit: null, remaining: 0, resetSeconds: null },
      { code: 'OK', currentLimit: { name: '', requestsPerUnit: 2, unit: 'HOUR' }, remaining: 1, resetSeconds: 3600 - 15 },
    ]);
    expect(answer.responseHeaders).toEqual([]);
  });

  it('OVER_LIMIT when any descriptor is over; each value of a key-only rule has its own budget', async () => {
    for (let i = 0; i < 3; i++) expect((await ask([d({ user: 'bob' })])).overall).toBe('OK');
    const over = await ask([d({ user: 'bob' }), d({ user: 'cat' })]);
    expect(over.overall).toBe('OVER_LIMIT');
    expect(over.statuses.map((s) => s.code)).toEqual(['OVER_LIMIT', 'OK']);
    expect(over.statuses[0]).toMatchObject({ remaining: 0, resetSeconds: 45 });
    // The next minute is a new window.
    now = T0 + 45_000;
    expect((await ask([d({ user: 'bob' })])).overall).toBe('OK');
  });

  it('an unknown domain limits nothing, even with an override', async () => {
    const answer = await ask([d({ user: 'x' }, { override: { requestsPerUnit: 0, unit: 'SECOND' } })], { domain: 'nope' });
    expect(answer).toEqual({ overall: 'OK', statuses: [{ code: 'OK', currentLimit: null, remaining: 0, resetSeconds: null }], responseHeaders: [], dynamicMetadata: null });
  });
});

describe('all or nothing (better than upstream)', () => {
  it('a request over the limit on one descriptor consumes nothing on the others', async () => {
    await ask([d({ path: '/expensive' })]);
    await ask([d({ path: '/expensive' })]);
    for (let i = 0; i < 5; i++) {
      const answer = await ask([d({ user: 'dan' }), d({ path: '/expensive' })]);
      expect(answer.overall).toBe('OVER_LIMIT');
      // Reported as it stands: the grant was given back.
      expect(answer.statuses[0]).toMatchObject({ code: 'OK', remaining: 3 });
    }
    expect((await ask([d({ user: 'dan' })])).statuses[0]!.remaining).toBe(2);
  });
});

describe('hits_addend', () => {
  it('the request hits_addend counts that many; 0 means 1', async () => {
    expect((await ask([d({ user: 'eve' })], { hits: 2 })).statuses[0]!.remaining).toBe(1);
    const tooMany = await ask([d({ user: 'eve' })], { hits: 2 });
    expect(tooMany.statuses[0]).toMatchObject({ code: 'OVER_LIMIT', remaining: 1 });
    expect((await ask([d({ user: 'eve' })])).statuses[0]).toMatchObject({ code: 'OK', remaining: 0 });
  });

  it('a hits_addend that can never fit is over the limit until the window ends, as upstream says', async () => {
    const fresh = await ask([d({ user: 'hugo' })], { hits: 4 });
    expect(fresh.statuses[0]).toEqual({ code: 'OVER_LIMIT', currentLimit: { name: 'per-user', requestsPerUnit: 3, unit: 'MINUTE' }, remaining: 3, resetSeconds: 45 });
    await ask([d({ user: 'hugo' })]);
    now += 10_000;
    expect((await ask([d({ user: 'hugo' })], { hits: 40 })).statuses[0]).toMatchObject({ code: 'OVER_LIMIT', remaining: 2, resetSeconds: 35 });
  });

  it('a descriptor hits_addend overrides the request; a present 0 only checks', async () => {
    const answer = await ask([d({ user: 'fay' }, { hits: 3 }), d({ user: 'gus' })], { hits: 2 });
    expect(answer.statuses.map((s) => s.remaining)).toEqual([0, 1]);
    // A check on an exhausted budget is over the limit; on a budget with room it takes nothing.
    expect((await ask([d({ user: 'fay' }, { hits: 0 })])).statuses[0]).toMatchObject({ code: 'OVER_LIMIT', remaining: 0 });
    for (let i = 0; i < 3; i++) expect((await ask([d({ user: 'gus' }, { hits: 0 })])).statuses[0]).toMatchObject({ code: 'OK', remaining: 1 });
    expect((await ask([d({ user: 'gus' })])).statuses[0]!.remaining).toBe(0);
  });
});

describe('limit override', () => {
  it('applies its requests_per_unit and unit, unnamed, and shares the budget of its unit', async () => {
    const override = { requestsPerUnit: 5, unit: 'MINUTE' as const };
    expect((await ask([d({ user: 'hal' })])).statuses[0]!.remaining).toBe(2);
    const answer = await ask([d({ user: 'hal' }, { override })]);
    expect(answer.statuses[0]).toEqual({ code: 'OK', currentLimit: { name: '', requestsPerUnit: 5, unit: 'MINUTE' }, remaining: 3, resetSeconds: 45 });
    // It applies to descriptors the config does not know, too.
    expect((await ask([d({ unknown: 'x' }, { override: { requestsPerUnit: 1, unit: 'SECOND' } })])).statuses[0]).toMatchObject({ remaining: 0, resetSeconds: 1 });
    expect((await ask([d({ unknown: 'x' }, { override: { requestsPerUnit: 1, unit: 'SECOND' } })])).overall).toBe('OVER_LIMIT');
    // requests_per_unit 0 blocks.
    expect((await ask([d({ user: 'hal' }, { override: { requestsPerUnit: 0, unit: 'DAY' } })])).overall).toBe('OVER_LIMIT');
  });

  it('an override of another unit keeps its own budget, leaving the configured one alone', async () => {
    expect((await ask([d({ user: 'ida' })], { hits: 2 })).statuses[0]!.remaining).toBe(1);
    expect((await ask([d({ user: 'ida' }, { override: { requestsPerUnit: 5, unit: 'HOUR' } })])).statuses[0]!.remaining).toBe(4);
    expect((await ask([d({ user: 'ida' })])).statuses[0]).toMatchObject({ code: 'OK', remaining: 0 });
    expect((await ask([d({ user: 'ida' })])).overall).toBe('OVER_LIMIT');
    expect((await ask([d({ user: 'ida' }, { override: { requestsPerUnit: 5, unit: 'HOUR' } })])).statuses[0]!.remaining).toBe(3);
  });
});

describe('shadow_mode, unlimited, replaces, requests_per_unit 0', () => {
  it('shadow_mode counts but never denies', async () => {
    expect((await ask([d({ shadow: 's' })])).statuses[0]).toMatchObject({ code: 'OK', remaining: 0 });
    const over = await ask([d({ shadow: 's' })]);
    expect(over.overall).toBe('OK');
    expect(over.statuses[0]).toMatchObject({ code: 'OK', remaining: 0, currentLimit: { requestsPerUnit: 1 } });
  });

  it('unlimited answers OK with the most remaining and no limit', async () => {
    expect((await ask([d({ free: 'x' })])).statuses[0]).toEqual({ code: 'OK', currentLimit: null, remaining: 4294967295, resetSeconds: null });
  });

  it('a limit named in another descriptor’s replaces does not apply, and is not charged', async () => {
    const both = await ask([d({ tier: 'silver' }), d({ tier: 'gold' })]);
    expect(both.statuses[0]).toEqual({ code: 'OK', currentLimit: null, remaining: 0, resetSeconds: null });
    expect(both.statuses[1]).toMatchObject({ currentLimit: { name: 'gold' }, remaining: 99 });
    expect((await ask([d({ tier: 'silver' })])).statuses[0]).toMatchObject({ currentLimit: { name: 'general' }, remaining: 9 });
  });

  it('requests_per_unit 0 is always over the limit', async () => {
    const answer = await ask([d({ blocked: '10.0.0.1' })]);
    expect(answer.overall).toBe('OVER_LIMIT');
    expect(answer.statuses[0]).toEqual({ code: 'OVER_LIMIT', currentLimit: { name: 'denylist', requestsPerUnit: 0, unit: 'SECOND' }, remaining: 0, resetSeconds: 1 });
  });
});

describe('response headers', () => {
  it('RateLimit-Limit, -Remaining and -Reset of the descriptor closest to its limit, when enabled', async () => {
    const withHeaders = configOf({ 'api.yaml': FILE }, { responseHeaders: true });
    const answer = await ask([d({ user: 'ivy' }), d({ path: '/expensive' }), d({ free: 'x' })], {}, withHeaders);
    expect(answer.responseHeaders).toEqual([
      { key: 'RateLimit-Limit', value: '2' },
      { key: 'RateLimit-Remaining', value: '1' },
      { key: 'RateLimit-Reset', value: String(3600 - 15) },
    ]);
    await ask([d({ user: 'ivy' })], { hits: 2 }, withHeaders);
    const over = await ask([d({ path: '/expensive' }), d({ user: 'ivy' })], {}, withHeaders);
    expect(over.responseHeaders).toEqual([
      { key: 'RateLimit-Limit', value: '3' },
      { key: 'RateLimit-Remaining', value: '0' },
      { key: 'RateLimit-Reset', value: '45' },
    ]);
    expect((await ask([d({ nothing: 'x' })], {}, withHeaders)).responseHeaders).toEqual([]);
  });
});

describe('sluice algorithms through extension keys', () => {
  it('token_bucket: a burst, then a refill; over the limit, the reset is when the request fits', async () => {
    for (let i = 0; i < 4; i++) expect((await ask([d({ tb: 'k' })])).overall).toBe('OK');
    const over = await ask([d({ tb: 'k' })]);
    expect(over.statuses[0]).toMatchObject({ code: 'OVER_LIMIT', currentLimit: { requestsPerUnit: 2, unit: 'SECOND' }, resetSeconds: 1 });
    now += 500;
    expect((await ask([d({ tb: 'k' })])).overall).toBe('OK');
    expect((await ask([d({ tb: 'k' })])).overall).toBe('OVER_LIMIT');
  });

  it('several limits per descriptor: the one that denies is the current_limit', async () => {
    await ask([d({ multi: 'm' })]);
    const second = await ask([d({ multi: 'm' })]);
    expect(second.statuses[0]).toMatchObject({ code: 'OK', currentLimit: { name: 'llm', requestsPerUnit: 2, unit: 'MINUTE' }, remaining: 0 });
    const over = await ask([d({ multi: 'm' })]);
    expect(over.statuses[0]).toMatchObject({ code: 'OVER_LIMIT', currentLimit: { name: 'llm', requestsPerUnit: 2, unit: 'MINUTE' }, resetSeconds: 45 });
    now += 45_000;
    expect((await ask([d({ multi: 'm' })])).statuses[0]).toMatchObject({ code: 'OK', currentLimit: { requestsPerUnit: 2, unit: 'MINUTE' }, remaining: 1 });
  });
});

describe('when the store cannot decide', () => {
  /** A store that is down: every call fails as the guard reports it. */
  const down: Store = {
    acquire: () => Promise.reject(new StoreUnavailable('timeout', 'store unavailable: no answer within 20 ms')),
    take: () => Promise.reject(new StoreUnavailable('timeout', 'store unavailable: no answer within 20 ms')),
    release: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    refund: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    heartbeat: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    ping: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    join: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    retry: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    leave: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    inspect: () => Promise.reject(new StoreUnavailable('timeout', 'x')),
    listen: () => undefined,
    close: () => Promise.resolve(),
  };
  const deciderFor = () => new Decider(down, { maxPermits: 10, failurePolicy: new FailurePolicy({ maxKeys: 100, retryAfterMs: () => 500 }) });

  it('on_store_failure error (the default) answers an error, so Envoy’s failure_mode_deny decides', async () => {
    const failing = configOf({ 'api.yaml': FILE }, { onStoreFailure: 'error' });
    const attempt = shouldRateLimit(deciderFor(), failing, { domain: 'api', descriptors: [d({ user: 'x' })], hits: 1 });
    await expect(attempt).rejects.toBeInstanceOf(EnvoyStoreError);
    await expect(attempt).rejects.toThrow(/store unavailable/);
  });

  it('open answers OK, closed answers OVER_LIMIT, local enforces this sidecar’s share', async () => {
    const open = await shouldRateLimit(deciderFor(), configOf({ 'api.yaml': FILE }, { onStoreFailure: 'open' }), { domain: 'api', descriptors: [d({ user: 'x' })], hits: 1 });
    expect(open.overall).toBe('OK');
    const closed = await shouldRateLimit(deciderFor(), configOf({ 'api.yaml': FILE }, { onStoreFailure: 'closed' }), { domain: 'api', descriptors: [d({ user: 'x' })], hits: 1 });
    expect(closed.overall).toBe('OVER_LIMIT');
    const local = deciderFor();
    const localConfig = configOf({ 'api.yaml': FILE }, { onStoreFailure: 'local' });
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push((await shouldRateLimit(local, localConfig, { domain: 'api', descriptors: [d({ user: 'x' })], hits: 1 })).overall);
    expect(answers).toEqual(['OK', 'OK', 'OK', 'OVER_LIMIT']);
  });

  it('a request that fails gives back what its other descriptors took', async () => {
    // The memory store, except that the store fails for one descriptor's scope.
    const failing = configOf({ 'api.yaml': FILE }, { onStoreFailure: 'error' });
    const flaky: Store = {
      acquire: (resource, scope, cost, permitId) =>
        scope.includes('path') ? Promise.reject(new StoreUnavailable('error', 'store unavailable: connection reset')) : store.acquire(resource, scope, cost, permitId),
      refund: (...args) => store.refund(...args),
      release: (...args) => store.release(...args),
      take: (...args) => store.take(...args),
      heartbeat: (sidecarId, ttlMs) => down.heartbeat(sidecarId, ttlMs),
      ping: () => store.ping(),
      join: (...args) => store.join(...args),
      retry: (...args) => store.retry(...args),
      leave: (...args) => store.leave(...args),
      inspect: (...args) => store.inspect(...args),
      listen: (...args) => store.listen(...args),
      close: () => store.close(),
    };
    const flakyDecider = new Decider(flaky, { maxPermits: 10, now: () => now, failurePolicy: new FailurePolicy({ maxKeys: 100, retryAfterMs: () => 500, now: () => now }) });
    await expect(shouldRateLimit(flakyDecider, failing, { domain: 'api', descriptors: [d({ user: 'jo' }), d({ path: '/expensive' })], hits: 1 }, { now: () => now })).rejects.toThrow(
      /connection reset/,
    );
    expect((await ask([d({ user: 'jo' })])).statuses[0]!.remaining).toBe(2);
  });

  it('a bug is no store failure: it goes up as it is (INTERNAL on the wire), after what was taken is given back', async () => {
    const buggy: Store = {
      acquire: (resource, scope, cost, permitId) =>
        scope.includes('path') ? Promise.reject(new TypeError('x is not a function')) : store.acquire(resource, scope, cost, permitId),
      refund: (...args) => store.refund(...args),
      release: (...args) => store.release(...args),
      take: (...args) => store.take(...args),
      heartbeat: () => store.heartbeat(),
      ping: () => store.ping(),
      join: (...args) => store.join(...args),
      retry: (...args) => store.retry(...args),
      leave: (...args) => store.leave(...args),
      inspect: (...args) => store.inspect(...args),
      listen: (...args) => store.listen(...args),
      close: () => store.close(),
    };
    const decider = new Decider(buggy, { maxPermits: 10, now: () => now, failurePolicy: new FailurePolicy({ maxKeys: 100, retryAfterMs: () => 500, now: () => now }) });
    for (const onStoreFailure of ['error', 'open'] as const) {
      const attempt = shouldRateLimit(decider, configOf({ 'api.yaml': FILE }, { onStoreFailure }), { domain: 'api', descriptors: [d({ user: 'ann' }), d({ path: '/expensive' })], hits: 1 }, { now: () => now });
      await expect(attempt).rejects.toBeInstanceOf(TypeError);
    }
    expect((await ask([d({ user: 'ann' })])).statuses[0]!.remaining).toBe(2);
  });
});

describe('quota_mode', () => {
  const QUOTA = `
domain: api
descriptors:
  - key: regular
    rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: quota
    quota_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: other_quota
    quota_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: free
    rate_limit: { unlimited: true }
`;

  it('a descriptor in quota mode over its limit is OVER_LIMIT, the request OK while another in quota mode is not, and the others keep what they took', async () => {
    const quota = configOf({ 'api.yaml': QUOTA });
    await ask([d({ quota: 'q' })], {}, quota);
    const answer = await ask([d({ regular: 'r' }), d({ quota: 'q' }), d({ other_quota: 'o' })], {}, quota);
    expect(answer.overall).toBe('OK');
    expect(answer.statuses.map(line)).toEqual(['OK :2/MINUTE 1', 'OVER_LIMIT :1/MINUTE 0', 'OK :1/MINUTE 0']);
    expect((await ask([d({ regular: 'r' })], {}, quota)).statuses[0]!.remaining).toBe(0);
    expect((await ask([d({ other_quota: 'o' })], {}, quota)).statuses[0]!.code).toBe('OVER_LIMIT');
  });

  it('the request is OVER_LIMIT when every descriptor in quota mode is over, or any other is, and then takes nothing', async () => {
    const quota = configOf({ 'api.yaml': QUOTA });
    await ask([d({ quota: 'q' }), d({ other_quota: 'o' })], {}, quota);
    const allOver = await ask([d({ regular: 'r' }), d({ quota: 'q' }), d({ other_quota: 'o' }), d({ free: 'f' })], {}, quota);
    expect(allOver.overall).toBe('OVER_LIMIT');
    expect(allOver.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT', 'OVER_LIMIT', 'OK']);
    await ask([d({ regular: 'r' })], { hits: 2 }, quota);
    const regularOver = await ask([d({ regular: 'r' }), d({ quota: 'fresh' })], {}, quota);
    expect(regularOver.overall).toBe('OVER_LIMIT');
    expect((await ask([d({ quota: 'fresh' })], {}, quota)).statuses[0]).toMatchObject({ code: 'OK', remaining: 0 });
  });

  it('envoy.quota_mode puts every descriptor in quota mode, unmatched ones too', async () => {
    const everyQuota = configOf({ 'api.yaml': QUOTA }, { quotaMode: true });
    await ask([d({ regular: 'r' })], { hits: 2 }, everyQuota);
    expect((await ask([d({ regular: 'r' }), d({ nothing: 'x' })], {}, everyQuota)).overall).toBe('OK');
    expect((await ask([d({ regular: 'r' }), d({ free: 'f' })], {}, everyQuota)).overall).toBe('OVER_LIMIT');
  });
});

describe('dynamic metadata (envoy.response_dynamic_metadata)', () => {
  const WITH_METADATA = `
domain: api
descriptors:
  - key: a
    metadata: { name: first, nested: { x: 1 }, list: [1, two] }
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: b
    metadata: { name: second, nested: { x: 2, y: 3 }, extra: true }
    rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: c
    metadata: { name: third }
    rate_limit: { unit: minute, requests_per_unit: 0 }
`;

  it('is null unless asked for', async () => {
    expect((await ask([d({ a: '1' })], {}, configOf({ 'api.yaml': WITH_METADATA }))).dynamicMetadata).toBeNull();
  });

  it('holds the domain, every descriptor and hits_addend, and the metadata of those that passed, the first to name a key keeping it', async () => {
    const config = configOf({ 'api.yaml': WITH_METADATA }, { responseDynamicMetadata: true });
    const answer = await ask(
      [d({ a: '1' }), d({ b: '2' }, { hits: 2, override: null }), d({ c: '3' }), d({ x: 'y' }, { override: { requestsPerUnit: 10, unit: 'DAY' } })],
      { hits: 0 },
      config,
    );
    expect(answer.overall).toBe('OVER_LIMIT');
    expect(answer.dynamicMetadata).toEqual({
      domain: 'api',
      descriptors: [
        { entries: ['a=1'] },
        { entries: ['b=2'], hitsAddend: 2 },
        { entries: ['c=3'] },
        { entries: ['x=y'], limit: 'requests_per_unit:10 unit:DAY' },
      ],
      metadata: { name: 'first', nested: { x: 1, y: 3 }, list: [1, 'two'], extra: true },
    });
    // The rule's own metadata is left as it was by the merge.
    const again = await ask([d({ b: '9' })], { hits: 3 }, config);
    expect(again.dynamicMetadata).toEqual({ domain: 'api', descriptors: [{ entries: ['b=9'] }], hitsAddend: 3, metadata: { name: 'second', nested: { x: 2, y: 3 }, extra: true } });
  });

  it('leaves out the metadata of a descriptor over its limit, and says nothing of metadata when none passed', async () => {
    const config = configOf({ 'api.yaml': WITH_METADATA }, { responseDynamicMetadata: true });
    await ask([d({ a: 'used' })], {}, config);
    const answer = await ask([d({ a: 'used' }), d({ b: 'fine' })], {}, config);
    expect(answer.dynamicMetadata!.metadata).toEqual({ name: 'second', nested: { x: 2, y: 3 }, extra: true });
    expect((await ask([d({ c: 'x' })], { hits: 0 }, config)).dynamicMetadata).toEqual({ domain: 'api', descriptors: [{ entries: ['c=x'] }] });
  });
});
