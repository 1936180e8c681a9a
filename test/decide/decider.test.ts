// The decider on the memory store with a fake clock: what a decision says, permits that can be
// released or settled once, and which failures the failure policy answers.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { Decider, type LeaseSource } from '../../src/decide/decider.js';
import { granted, type AcquireInput, type Decision } from '../../src/decide/decision.js';
import { PERMIT_ID } from '../../src/decide/permits.js';
import { scopeOf } from '../../src/decide/scope.js';
import { FailurePolicy } from '../../src/guard/failure-policy.js';
import { StoreUnavailable } from '../../src/guard/store-unavailable.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import type { Store } from '../../src/store/store.js';

const policy = parsePolicy(
  `
resources:
  - name: api
    keys: [tenant]
    limits:
      - { name: minute, algorithm: fixed_window, rate: 3/1m }
  - name: llm
    keys: [tenant]
    settle_within: 10s
    limits:
      - { name: requests, algorithm: fixed_window, rate: 10000/1m, counts: requests }
      - { name: tokens, algorithm: fixed_window, rate: 1000/1m }
  - name: slots
    keys: [tenant]
    on_store_failure: closed
    limits:
      - { name: inflight, algorithm: concurrency, max: 2, ttl: 30s }
  - name: metered
    keys: [tenant]
    on_store_failure: closed
    settle_within: 10s
    lease: { enabled: true }
    limits:
      - { name: tokens, algorithm: token_bucket, rate: 100/1s }
`,
  'p.yaml',
);

/** 12:00:00.000 UTC: the start of a minute, so fixed windows close a minute later. */
const START = Date.UTC(2026, 0, 1, 12);

function world(wrap: (store: MemoryStore) => Store = (store) => store, leases: LeaseSource | null = null) {
  const clock = { now: START };
  const now = () => clock.now;
  const memory = new MemoryStore({ maxKeys: 1_000, now, sweepEveryMs: 0 });
  const failurePolicy = new FailurePolicy({ maxKeys: 100, now, retryAfterMs: () => 500 });
  const decider = new Decider(wrap(memory), { maxPermits: 100, now, failurePolicy, leases });
  return { clock, decider };
}

/** Stands for the leases: each request gets what `answer` gives, or what it throws, as it comes. */
function leases(answer: () => Decision | null | Promise<Decision | null>): LeaseSource {
  return { acquire: answer, reclaim: () => null, budgetBack: () => undefined, lineFormed: () => undefined, close: async () => undefined };
}

const tokens = policy.resources.get('metered')!.limits[0]!;
const fromLease = () => granted(tokens, 'LEASE', { remaining: 41, resetAfterMs: 0, decidedAt: START });

function input(name: string, cost = 1, tenant = 'acme'): AcquireInput {
  const resource = policy.resources.get(name)!;
  return { resource, scope: scopeOf(resource, [tenant]), cost, priority: 0 };
}

describe('the decider', () => {
  it('grants from the store to the limit, then denies saying which limit, what is left and when to retry', async () => {
    const { clock, decider } = world();
    clock.now += 15_000;
    for (let left = 2; left >= 0; left--) {
      expect(await decider.acquire(input('api'))).toEqual({
        granted: true,
        permitId: '',
        retryAfterMs: 0,
        remaining: left,
        limit: 3,
        resetAfterMs: 45_000,
        limitName: 'minute',
        decidedBy: 'STORE',
        reason: '',
        decidedAt: START + 15_000,
        waitedMs: 0,
      });
    }
    expect(await decider.acquire(input('api'))).toMatchObject({
      granted: false,
      permitId: '',
      retryAfterMs: 45_000,
      remaining: 0,
      decidedBy: 'STORE',
      reason: 'limit "minute" has 0 of 3 left',
    });
    // Another tenant has its own budget.
    expect((await decider.acquire(input('api', 1, 'other'))).granted).toBe(true);
  });

  it('a cost past the capacity can never be granted, and says so', async () => {
    const { decider } = world();
    expect(await decider.acquire(input('api', 4))).toMatchObject({
      granted: false,
      retryAfterMs: Number.POSITIVE_INFINITY,
      reason: 'cost 4 exceeds the capacity 3 of limit "minute": it can never be granted',
    });
  });

  it('a concurrency grant carries a permit: its release frees the slot, once', async () => {
    const { decider } = world();
    const first = await decider.acquire(input('slots'));
    const second = await decider.acquire(input('slots'));
    expect(first.permitId).not.toBe('');
    expect(second.permitId).not.toBe(first.permitId);
    expect((await decider.acquire(input('slots'))).granted).toBe(false);
    expect(await decider.release(first.permitId, undefined)).toBe(true);
    expect(await decider.release(first.permitId, undefined)).toBe(false);
    expect(decider.permits.size).toBe(1);
    expect((await decider.acquire(input('slots'))).granted).toBe(true);
  });

  it('settles the actual cost within settle_within: the difference is refunded to the limits that count cost', async () => {
    const { clock, decider } = world();
    const granted = await decider.acquire(input('llm', 600));
    expect(granted).toMatchObject({ granted: true, limitName: 'tokens', remaining: 400 });
    expect(await decider.release(granted.permitId, 100)).toBe(true);
    // 500 back to tokens; the request still counts once.
    expect(await decider.acquire(input('llm', 900))).toMatchObject({ granted: true, remaining: 0, limitName: 'tokens' });
    const late = await decider.acquire(input('llm', 1, 'late'));
    clock.now += 10_000;
    expect(await decider.release(late.permitId, 0)).toBe(false);
  });

  it('revokes a grant its caller never saw: its cost goes back', async () => {
    const { decider } = world();
    const grant = await decider.acquire(input('api', 3));
    expect(grant.granted).toBe(true);
    await decider.revoke(input('api', 3), grant);
    expect((await decider.acquire(input('api', 3))).granted).toBe(true);
  });

  it('a request that does not wait goes ahead of those waiting in line only with a priority above all of theirs', async () => {
    let memory: MemoryStore | undefined;
    const { decider } = world((store) => (memory = store));
    const api = input('api', 1);
    expect((await decider.acquire(input('api', 2))).granted).toBe(true);
    // 1 of 3 is left; a priority 1 request waits for 2.
    const ticket = { id: 's.1', cost: 2, priority: 1, usable: 1, lane: 1, permitId: '', waitMs: 30_000 };
    expect((await memory!.join(api.resource, api.scope, ticket, 10)).state).toBe('waiting');
    expect((await decider.acquire({ ...api, priority: 1 })).granted).toBe(false);
    expect(await decider.acquire({ ...api, priority: 2 })).toMatchObject({ granted: true, remaining: 0 });
  });

  it('a store failure is answered by on_store_failure; a bug is not: it reaches the caller', async () => {
    let failWith: unknown = null;
    const { decider } = world((memory) => {
      const failing = Object.create(memory) as MemoryStore;
      failing.acquire = (...args) => (failWith ? Promise.reject(failWith) : memory.acquire(...args));
      return failing;
    });
    failWith = new StoreUnavailable('timeout', 'store unavailable: no answer within 20ms');
    expect(await decider.acquire(input('slots'))).toMatchObject({
      granted: false,
      decidedBy: 'FAIL_CLOSED',
      retryAfterMs: 500,
      reason: 'store unavailable: no answer within 20ms',
    });
    failWith = new TypeError('a bug');
    await expect(decider.acquire(input('slots'))).rejects.toBe(failWith);
    failWith = null;
    expect(await decider.acquire(input('slots'))).toMatchObject({ granted: true, decidedBy: 'STORE' });
  });
});

describe('decideNow', () => {
  it('a lease that answers at once is answered at once: a Decision, not a promise, with its permit', () => {
    const { decider } = world(undefined, leases(fromLease));
    const decision = decider.decideNow(input('metered', 5));
    expect(decision).not.toBeInstanceOf(Promise);
    expect(decision).toMatchObject({ granted: true, decidedBy: 'LEASE', remaining: 41 });
    expect((decision as Decision).permitId).toMatch(PERMIT_ID);
    expect(decider.permits.size).toBe(1);
  });

  it('a lease that has nothing to say sends the request to the store, and a lease still taking is followed', async () => {
    let answer: Decision | null | Promise<Decision | null> = null;
    const { decider } = world(undefined, leases(() => answer));
    const fromStore = decider.decideNow(input('metered'));
    expect(fromStore).toBeInstanceOf(Promise);
    expect(await fromStore).toMatchObject({ granted: true, decidedBy: 'STORE', remaining: 99 });
    answer = Promise.resolve(fromLease());
    const taking = decider.decideNow(input('metered'));
    expect(taking).toBeInstanceOf(Promise);
    expect(await taking).toMatchObject({ granted: true, decidedBy: 'LEASE' });
    expect(decider.permits.size).toBe(2);
    // Resources that cannot be leased never ask the lease.
    answer = Promise.reject(new Error('asked'));
    answer.catch(() => undefined);
    expect(await decider.decideNow(input('slots'))).toMatchObject({ granted: true, decidedBy: 'STORE' });
  });

  it('a lease that fails at once on the store is answered by on_store_failure; on a bug, the caller gets the bug', async () => {
    let failWith: Error = new StoreUnavailable('timeout', 'store unavailable: no answer within 20ms');
    const { decider } = world(
      undefined,
      leases(() => {
        throw failWith;
      }),
    );
    expect(await decider.decideNow(input('metered'))).toMatchObject({ granted: false, decidedBy: 'FAIL_CLOSED', reason: 'store unavailable: no answer within 20ms' });
    failWith = new TypeError('a bug');
    await expect(decider.decideNow(input('metered'))).rejects.toBe(failWith);
    expect(decider.permits.size).toBe(0);
  });
});
