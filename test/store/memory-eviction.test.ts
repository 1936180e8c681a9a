// The memory store under a flood of new scopes, on a fake clock: a full table never evicts a live
// budget (that would refund it); new scopes are refused with a reason instead, until states
// expire. And a limit whose algorithm changes under the same name never reads the old state.
import { describe, expect, it, vi } from 'vitest';
import { scopeOf } from '../../src/decide/scope.js';
import { FailurePolicy } from '../../src/guard/failure-policy.js';
import { StoreUnavailable } from '../../src/guard/store-unavailable.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import { useSidecar } from '../support/sidecar.js';
import { testResource } from '../support/store-checks.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const MAX_KEYS = 100_000;
// Mid-day, so the daily window does not close while the test's clock moves by hours.
const START = 1_700_000_000_000 - (1_700_000_000_000 % DAY) + DAY / 4;

describe('memory store: a full table refuses new scopes and keeps every live budget', () => {
  it('100,001 other tenants leave a spent 10/1d spent and 5 held slots held; past the cap new scopes are denied with the reason', async () => {
    let now = START;
    const store = new MemoryStore({ maxKeys: MAX_KEYS, now: () => now, sweepEveryMs: 0 });
    const daily = testResource(['{ name: daily, algorithm: fixed_window, rate: 10/1d }']);
    const slots = testResource(['{ name: inflight, algorithm: concurrency, max: 5, ttl: 2h }']);
    const spent = scopeOf(daily, ['spender']);
    const holder = scopeOf(slots, ['holder']);

    expect((await store.acquire(daily, spent, 10, '')).granted).toBe(true);
    for (let i = 0; i < 5; i++) expect((await store.acquire(slots, holder, 1, `slot${i}`)).granted).toBe(true);

    // Each tenant spends 1 of its 10: all live until the day ends. Two scopes are already held.
    let granted = 0;
    let refused = 0;
    let reason: string | undefined;
    for (let i = 0; i <= MAX_KEYS; i++) {
      now += 0.01;
      const v = await store.acquire(daily, scopeOf(daily, [`other${i}`]), 1, '');
      if (v.granted) granted++;
      else {
        refused++;
        reason = v.reason;
        expect(v.retryAfterMs).toBeGreaterThan(0);
        expect(Number.isFinite(v.retryAfterMs)).toBe(true);
      }
    }
    expect(granted).toBe(MAX_KEYS - 2);
    expect(refused).toBe(3);
    expect(store.refusedScopes).toBe(3);
    expect(store.size).toBe(MAX_KEYS);
    expect(reason).toBe(`memory store full: ${MAX_KEYS} scopes hold live budgets (store.max_keys)`);

    // The spent budget is still spent and the slots are still held.
    const again = await store.acquire(daily, spent, 1, '');
    expect(again.granted).toBe(false);
    expect(again.reason).toBeUndefined();
    expect(again.remaining).toBe(0);
    const slot = await store.acquire(slots, holder, 1, 'slot6');
    expect(slot.granted).toBe(false);
    expect(slot.remaining).toBe(0);
    // A scope already in the table is served as before.
    const known = await store.acquire(daily, scopeOf(daily, ['other0']), 1, '');
    expect(known.granted).toBe(true);
    expect(known.remaining).toBe(8);

    // Two hours on the slots have expired: that scope's place goes to a new one.
    now += 2 * HOUR + 1_000;
    const first = await store.acquire(daily, scopeOf(daily, ['late0']), 1, '');
    expect(first.granted).toBe(true);
    expect((await store.acquire(daily, scopeOf(daily, ['late1']), 1, ''))).toMatchObject({ granted: false, reason: expect.stringContaining('memory store full') });

    // Once the day is over every state has expired and new scopes are served again; the spender
    // has its whole budget back because its day is over, not because it was evicted.
    now = START - (START % DAY) + DAY + 1;
    const fresh = await store.acquire(daily, scopeOf(daily, ['next-day']), 1, '');
    expect(fresh.granted).toBe(true);
    expect(fresh.remaining).toBe(9);
    expect((await store.acquire(daily, spent, 10, '')).granted).toBe(true);
    await store.close();
  });

  it('a full table costs a new scope no scan of the table: one sweep per second of store time at most', async () => {
    let now = START;
    const store = new MemoryStore({ maxKeys: 20_000, now: () => now, sweepEveryMs: 0 });
    const sweeps = vi.spyOn(store, 'sweep');
    const daily = testResource(['{ name: daily, algorithm: fixed_window, rate: 10/1d }']);
    for (let i = 0; i < 20_000; i++) await store.acquire(daily, scopeOf(daily, [`t${i}`]), 1, '');
    expect(sweeps).not.toHaveBeenCalled();
    for (let i = 0; i < 20_000; i++) {
      now += 0.1; // 2 s of store time over the loop
      expect((await store.acquire(daily, scopeOf(daily, [`new${i}`]), 1, '')).granted).toBe(false);
    }
    expect(sweeps.mock.calls.length).toBeLessThanOrEqual(3); // at 0, 1 and 2 s: not one per refusal
    expect(store.refusedScopes).toBe(20_000);
    await store.close();
  });

  it('a scope whose request was denied and holds nothing takes no place in the table', async () => {
    const store = new MemoryStore({ maxKeys: 2, now: () => START, sweepEveryMs: 0 });
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 10/1d }']);
    for (let i = 0; i < 5; i++) expect((await store.acquire(res, scopeOf(res, [`big${i}`]), 11, '')).granted).toBe(false);
    expect(store.size).toBe(0);
    expect(store.refusedScopes).toBe(0);
    expect((await store.acquire(res, scopeOf(res, ['a']), 1, ''))).toMatchObject({ granted: true });
    expect((await store.acquire(res, scopeOf(res, ['b']), 1, ''))).toMatchObject({ granted: true });
    expect(store.size).toBe(2);
  });

  it('inspecting scopes takes no place in the table, and a full table still answers for its live ones', async () => {
    const store = new MemoryStore({ maxKeys: 1, now: () => START, sweepEveryMs: 0 });
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 10/1d }']);
    for (let i = 0; i < 100; i++) expect(await store.inspect(res, scopeOf(res, [`look${i}`]))).toEqual({ limits: [{ remaining: 10, resetAfterMs: 0 }], waiting: 0 });
    expect(store.size).toBe(0);
    expect((await store.acquire(res, scopeOf(res, ['a']), 3, ''))).toMatchObject({ granted: true });
    expect((await store.inspect(res, scopeOf(res, ['a']))).limits[0]!.remaining).toBe(7);
    expect(store.size).toBe(1);
    expect(store.refusedScopes).toBe(0);
  });

  it('the failure policy\'s local share keeps working on a full table: live shares kept, new scopes denied', async () => {
    let now = START;
    const failures = new FailurePolicy({ maxKeys: 3, now: () => now, retryAfterMs: () => 500 });
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 2/1d }']);
    const local = { ...res, onStoreFailure: 'local' as const };
    const down = new StoreUnavailable('timeout', 'store timed out');
    const decide = (tenant: string) => failures.decide({ resource: local, scope: scopeOf(local, [tenant]), cost: 1, priority: 0 }, '', down);
    for (const tenant of ['a', 'b', 'c']) expect((await decide(tenant)).granted).toBe(true);
    expect((await decide('a')).granted).toBe(true);
    expect((await decide('a')).granted).toBe(false); // a's share is spent, and stays spent
    const refused = await decide('d');
    expect(refused).toMatchObject({ granted: false, decidedBy: 'LOCAL_FALLBACK' });
    expect(failures.local.refusedScopes).toBe(1);
    expect((await decide('a')).granted).toBe(false);
    now += DAY;
    expect((await decide('d')).granted).toBe(true);
    await failures.close();
  });
});

describe('memory store: an algorithm change under the same limit name', () => {
  it.each([
    ['token_bucket', 'fixed_window'],
    ['fixed_window', 'sliding_window'],
    ['sliding_window', 'token_bucket'],
    ['fixed_window', 'concurrency'],
    ['concurrency', 'token_bucket'],
  ])('%s -> %s: the new algorithm starts full and never reads the old state', async (from, to) => {
    const limit = (algorithm: string) =>
      algorithm === 'concurrency' ? `{ name: rpm, algorithm: concurrency, max: 3, ttl: 1h }` : `{ name: rpm, algorithm: ${algorithm}, rate: 3/1h }`;
    const store = new MemoryStore({ maxKeys: 100, now: () => START, sweepEveryMs: 0 });
    const before = testResource([limit(from)]);
    // The same resource name, as after a policy reload.
    const after = { ...testResource([limit(to)]), name: before.name };
    const scope = scopeOf(before, ['t']);
    for (let i = 0; i < 3; i++) expect((await store.acquire(before, scope, 1, `old${i}`)).granted).toBe(true);
    expect((await store.acquire(before, scope, 1, 'old3')).granted).toBe(false);
    for (let i = 0; i < 3; i++) {
      const v = await store.acquire(after, scope, 1, `new${i}`);
      expect(v.granted).toBe(true);
      expect(v.remaining).toBe(2 - i);
    }
    expect((await store.acquire(after, scope, 1, 'new3')).granted).toBe(false);
    await store.close();
  });

  it('a limit that keeps its name and algorithm keeps its state when others change around it', async () => {
    const store = new MemoryStore({ maxKeys: 100, now: () => START, sweepEveryMs: 0 });
    const before = testResource(['{ name: daily, algorithm: fixed_window, rate: 5/1d }', '{ name: rpm, algorithm: token_bucket, rate: 5/1h }']);
    const after = { ...testResource(['{ name: rpm, algorithm: sliding_window, rate: 5/1h }', '{ name: daily, algorithm: fixed_window, rate: 5/1d }']), name: before.name };
    const scope = scopeOf(before, ['t']);
    expect((await store.acquire(before, scope, 4, '')).granted).toBe(true);
    const v = await store.acquire(after, scope, 1, '');
    expect(v.granted).toBe(true);
    expect(after.limits[v.decider]!.name).toBe('daily');
    expect(v.remaining).toBe(0);
    await store.close();
  });
});

describe('memory store through a sidecar process', () => {
  const running = useSidecar(
    () => `
store: { max_keys: 3 }
resources:
  - name: daily
    keys: [tenant]
    limits:
      - { name: daily, algorithm: fixed_window, rate: 2/1d }
`,
  );

  it('a full table denies a new tenant, keeps the others\' budgets, and counts the refusal', async () => {
    const acquire = (tenant: string) => running.client.acquire({ resource: 'daily', descriptors: { tenant } });
    for (const tenant of ['a', 'b', 'c']) expect(await acquire(tenant)).toMatchObject({ granted: true, remaining: 1 });
    expect(await acquire('a')).toMatchObject({ granted: true, remaining: 0 });
    expect(await acquire('d')).toMatchObject({ granted: false, decided_by: 'STORE' });
    expect(await acquire('a')).toMatchObject({ granted: false, remaining: 0 });
    expect(await acquire('b')).toMatchObject({ granted: true, remaining: 0 });
    const metrics = await (await fetch(`http://${running.sidecar.admin}/metrics`)).text();
    expect(metrics).toMatch(/^sluice_memory_scopes_refused_total 1$/m);
  });
});
