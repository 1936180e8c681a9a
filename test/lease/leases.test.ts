// Leases on a fake clock, over the memory store (same semantics as Redis): when they are taken,
// how they serve, that they never over-admit, and that unused budget goes back exactly once.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import type { AcquireInput, Decision } from '../../src/decide/decision.js';
import { Decider } from '../../src/decide/decider.js';
import { IDLE_MS } from '../../src/lease/leases.js';
import { demand, directAcquire, leaseClock as setup, storeRemaining, type LeaseClock } from '../support/lease-clock.js';

describe('leases', () => {
  it('leave a cold key to the store', async () => {
    const t = setup('      - { name: l, algorithm: token_bucket, rate: 1000/1s }\n');
    const leases = t.sidecar();
    expect(await leases.acquire(t.input())).toBeNull();
    t.advance(1000);
    expect(await leases.acquire(t.input())).toBeNull();
    expect(t.takes.count).toBe(0);
  });

  it('serve a hot key locally, taking about 100 ms of demand per store call', async () => {
    const t = setup('      - { name: l, algorithm: token_bucket, rate: 100000/1s }\n');
    const leases = t.sidecar();
    const outcomes = await demand(t, leases, 2000, 2000);
    const leased = outcomes.filter((o) => o.leased);
    expect(leased.length).toBeGreaterThan(0.9 * outcomes.length);
    expect(outcomes.every((o) => o.granted)).toBe(true);
    // 4000 requests at 2000/s: blocks of up to ~200 units, so dozens of takes, not thousands.
    expect(t.takes.count / outcomes.length).toBeLessThan(0.02);
  });

  it('coalesce: requests that find the lease short wait for the one take in flight, and the next take is sized for them', async () => {
    const t = setup('      - { name: l, algorithm: token_bucket, rate: 100000/1s }\n');
    const leases = t.sidecar();
    await demand(t, leases, 1000, 200);
    const before = t.takes.count;
    // A burst far beyond what is leased, all at the same instant: served by a few takes, none
    // of its requests passed on to the store one by one.
    const burst = await Promise.all(Array.from({ length: 500 }, () => leases.acquire(t.input())));
    expect(t.takes.count - before).toBeLessThanOrEqual(3);
    expect(burst.every((d) => d?.granted && d.decidedBy === 'LEASE')).toBe(true);
  });

  it('never grant more than the limit allows, across several sidecars', async () => {
    // 1000/s with a burst of 100; four sidecars each asking for 1000/s: 4x the limit.
    const t = setup('      - { name: l, algorithm: token_bucket, rate: 1000/1s, burst: 100 }\n');
    const sidecars = [t.sidecar(), t.sidecar(), t.sidecar(), t.sidecar()];
    let granted = 0;
    const durationMs = 3000;
    for (let elapsed = 0; elapsed < durationMs; elapsed += 1) {
      for (const s of sidecars) {
        const d = (await s.acquire(t.input())) ?? (await directAcquire(t));
        if (d.granted) granted++;
      }
      t.advance(1);
      if (elapsed % 10 === 0) await Promise.all(sidecars.map((s) => s.tick()));
    }
    const allowance = 100 + 1000 * (durationMs / 1000);
    expect(granted).toBeLessThanOrEqual(allowance);
    // Stranded budget is the only error, and it is small.
    expect(granted).toBeGreaterThan(0.95 * allowance);
  });

  it('expire at the end of a window: units of a closed window are never served', async () => {
    const t = setup('      - { name: w, algorithm: fixed_window, rate: 100000/1s }\n');
    const leases = t.sidecar();
    t.advance(1000 - (t.now % 1000) - 300); // 300 ms before a window edge
    const before = await demand(t, leases, 2000, 250);
    const grantedBefore = before.filter((o) => o.granted).length;
    const scope = t.input().scope;
    t.advance(60); // now 10 ms past the edge, lease still within its ttl
    const first = await leases.acquire(t.input());
    // Served (if at all) from units taken in the new window, never from the old one.
    if (first?.decidedBy === 'LEASE') expect(Math.floor(first.decidedAt / 1000)).toBe(Math.floor(t.now / 1000));
    await leases.close();
    // The old window's leftovers were not refunded into the new one: only the new grant counts.
    expect(grantedBefore).toBeGreaterThan(0);
    expect(await storeRemaining(t.store, t.resource, scope)).toBe(100000 - (first?.granted ? 1 : 0));
  });

  it('give unused units back when the ttl passes, and when demand stops', async () => {
    const t = setup('      - { name: l, algorithm: fixed_window, rate: 1000000/1d }\n');
    const leases = t.sidecar();
    const outcomes = await demand(t, leases, 2000, 500);
    const granted = outcomes.filter((o) => o.granted).length;
    expect(leases.figures.held).toBeGreaterThan(0);
    t.advance(IDLE_MS);
    await leases.tick();
    expect(leases.figures.held).toBe(0);
    expect(leases.figures.returned).toBeGreaterThan(0);
    expect(await storeRemaining(t.store, t.resource, t.input().scope)).toBe(1000000 - granted);
  });

  it('answer from a standing denial until the store said to retry, then ask again', async () => {
    const t = setup('      - { name: l, algorithm: token_bucket, rate: 50/1s, burst: 50 }\n');
    const leases = t.sidecar();
    const outcomes = await demand(t, leases, 1000, 300);
    const deniedLocally = outcomes.filter((o) => o.leased && !o.granted).map((o) => o.leased!);
    expect(deniedLocally.length).toBeGreaterThan(0);
    for (const d of deniedLocally) {
      expect(d.decidedBy).toBe('LEASE');
      expect(d.retryAfterMs).toBeGreaterThan(0);
      expect(d.retryAfterMs).toBeLessThanOrEqual(20); // one token every 20 ms
      expect(d.reason).toMatch(/limit "l"/);
    }
    // Over 300 ms at 50/s with a burst of 50: no more than 50 + 15 granted.
    const granted = outcomes.filter((o) => o.granted).length;
    expect(granted).toBeLessThanOrEqual(65);
    expect(granted).toBeGreaterThanOrEqual(60);
  });

  it('end a standing denial within the lease ttl once the store has the budget back (a flushed Redis)', async () => {
    const t = setup('      - { name: l, algorithm: fixed_window, rate: 100/1h }\n');
    const leases = t.sidecar();
    const spent = await demand(t, leases, 1000, 300);
    expect(spent.filter((o) => o.granted).length).toBe(100);
    const standing = spent.filter((o) => o.leased && !o.granted).map((o) => o.leased!);
    expect(standing.length).toBeGreaterThan(0);
    // The window's end is the honest retry_after; the denial is re-checked long before it.
    expect(Math.min(...standing.map((d) => d.retryAfterMs))).toBeGreaterThan(60_000);

    await t.store.close(); // every budget gone: what FLUSHALL or an empty restart does to Redis
    const takesBefore = t.takes.count;
    const after = await demand(t, leases, 1000, 1_200);
    const firstGrant = after.findIndex((o) => o.granted);
    expect(firstGrant).toBeGreaterThan(-1);
    expect(firstGrant).toBeLessThanOrEqual(1_000); // within the 1 s ttl at 1,000 requests a second
    expect(after.filter((o) => o.granted).length).toBe(100);
    // Re-checking costs one take per ttl while denied, not one per request: of 1,200 requests,
    // a few dozen takes (blocks of at most 10 units for the 100, shrinking near the limit).
    expect(t.takes.count - takesBefore).toBeLessThan(50);
  });

  it('give back what a lease holds when its resource is reloaded with new numbers, and take afresh under them', async () => {
    const t = setup('      - { name: l, algorithm: fixed_window, rate: 1000000/1d }\n');
    const leases = t.sidecar();
    const granted = (await demand(t, leases, 2000, 500)).filter((o) => o.granted).length;
    expect(leases.figures.held).toBeGreaterThan(0);
    // The reloaded policy: the same limit, a new capacity; a new Resource object, as a reload serves it.
    const reloaded = parsePolicy('resources:\n  - name: r\n    keys: [k]\n    lease: { enabled: true, max_fraction: 0.1, ttl: 1s }\n    limits:\n      - { name: l, algorithm: fixed_window, rate: 500000/1d }\n', 'p.yaml').resources.get('r')!;
    const held = leases.figures.held;
    const returnedBefore = leases.figures.returned;
    const first = await leases.acquire({ ...t.input(), resource: reloaded });
    expect(first?.decidedBy).toBe('LEASE'); // the key stayed hot
    expect(leases.figures.returned - returnedBefore).toBe(held);
    await leases.close();
    // Every grant so far counts against the new capacity, and nothing held under the old one is lost.
    const afterReload = first?.granted ? 1 : 0;
    expect(await storeRemaining(t.store, reloaded, t.input().scope)).toBe(500000 - granted - afterReload);
  });

  it('give every lease back on close', async () => {
    const t = setup('      - { name: l, algorithm: sliding_window, rate: 100000/1h }\n');
    const leases = t.sidecar();
    const outcomes = await demand(t, leases, 2000, 300);
    const granted = outcomes.filter((o) => o.granted).length;
    expect(leases.figures.held).toBeGreaterThan(0);
    await leases.close();
    expect(leases.figures.held).toBe(0);
    expect(await storeRemaining(t.store, t.resource, t.input().scope)).toBe(100000 - granted);
  });

  it('hold all-or-nothing over several limits: a lease serves only what every limit covers', async () => {
    const t = setup(
      '      - { name: requests, algorithm: token_bucket, rate: 100000/1s, counts: requests }\n' +
        '      - { name: tokens, algorithm: fixed_window, rate: 5000/1d }\n',
    );
    const leases = t.sidecar();
    let granted = 0;
    for (let i = 0; i < 400; i++) {
      const d = (await leases.acquire(t.input('a', 50))) ?? (await directAcquire(t, 50));
      if (d.granted) granted++;
      t.advance(1);
    }
    await leases.close();
    expect(granted).toBeLessThanOrEqual(100); // 5000 tokens / 50 each
    expect(granted).toBeGreaterThanOrEqual(95);
  });
});

describe('no false denials on one sidecar', () => {
  /** One sidecar as it decides: its leases, and the store for what they pass on. */
  function sidecarOf(t: LeaseClock) {
    const leases = t.sidecar();
    return { leases, decider: new Decider(t.store, { maxPermits: 1000, now: () => t.now, leases }) };
  }

  function burst(decider: Decider, input: AcquireInput, requests: number): Promise<Decision[]> {
    return Promise.all(Array.from({ length: requests }, () => decider.acquire(input)));
  }

  for (const [rate, requests, budget] of [
    ['50/1m', 60, 50],
    ['100/1m', 100, 100],
  ] as const) {
    it(`grant exactly the budget to ${requests} requests at once on a fresh ${rate}, leases included`, async () => {
      const t = setup(`      - { name: l, algorithm: token_bucket, rate: ${rate} }\n`);
      const { leases, decider } = sidecarOf(t);
      const answers = await burst(decider, t.input(), requests);
      expect(answers.filter((d) => d.granted).length).toBe(budget);
      expect(answers.filter((d) => d.granted && d.decidedBy === 'LEASE').length).toBeGreaterThan(0);
      // Every unit taken was served: none is held while a request was denied.
      expect(leases.figures.held).toBe(0);
    });
  }

  it('after the burst, serve nothing beyond the budget, and grant again when the store has a unit back', async () => {
    const t = setup('      - { name: l, algorithm: token_bucket, rate: 50/1m }\n');
    const { decider } = sidecarOf(t);
    expect((await burst(decider, t.input(), 60)).filter((d) => d.granted).length).toBe(50);
    t.advance(500); // one unit comes back every 1.2 s: none yet
    const early = await burst(decider, t.input(), 5);
    expect(early.filter((d) => d.granted)).toEqual([]);
    const retryAfter = Math.max(...early.map((d) => d.retryAfterMs));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(700);
    t.advance(retryAfter);
    expect((await burst(decider, t.input(), 5)).filter((d) => d.granted).length).toBe(1);
  });

  /** A hot key whose lease holds some units while the store has exactly one left. */
  async function heldWithOneLeft(lease = '{ enabled: true, max_fraction: 0.1, ttl: 1s }') {
    const t = setup('      - { name: tokens, algorithm: fixed_window, rate: 1000/1h }\n', lease);
    const sidecar = sidecarOf(t);
    await demand(t, sidecar.leases, 1000, 100);
    const held = sidecar.leases.figures.held;
    expect(held).toBeGreaterThan(0);
    const scope = t.input().scope;
    const left = await storeRemaining(t.store, t.resource, scope);
    expect((await t.store.acquire(t.resource, scope, left - 1, '')).granted).toBe(true); // another sidecar spends the rest
    return { t, ...sidecar, held };
  }

  it('never answer a standing denial that the held units and what the store has left could grant', async () => {
    const { t, decider, leases, held } = await heldWithOneLeft();
    // More than the lease holds, and more than the store has: only both together cover it.
    const answer = await decider.acquire(t.input('a', held + 1));
    expect(answer.granted).toBe(true);
    expect(leases.figures.held).toBe(0);
    expect(await storeRemaining(t.store, t.resource, t.input().scope)).toBe(0);
    // Now nothing is left anywhere: a denial is the truth.
    expect((await decider.acquire(t.input())).granted).toBe(false);
  });

  it('ask the store again, with the held units back, for a request it denied after demand faded', async () => {
    const { t, decider, leases, held } = await heldWithOneLeft('{ enabled: true, max_fraction: 0.1, ttl: 10s }');
    t.advance(3_000); // the key is cold again; no tick ran, so the lease still holds its units
    const answer = await decider.acquire(t.input('a', held + 1));
    expect(answer).toMatchObject({ granted: true, decidedBy: 'STORE' });
    expect(leases.figures.held).toBe(0);
    expect(await storeRemaining(t.store, t.resource, t.input().scope)).toBe(0);
  });

  it('end a standing denial at once when a settlement gives budget back', async () => {
    const t = setup('      - { name: tokens, algorithm: fixed_window, rate: 100/1h }\n', '{ enabled: true, max_fraction: 0.1, ttl: 10s }', '    settle_within: 1m\n');
    const { decider } = sidecarOf(t);
    const answers: Decision[] = [];
    for (let i = 0; i < 120; i++) {
      answers.push(await decider.acquire(t.input()));
      t.advance(1);
    }
    expect(answers.filter((d) => d.granted).length).toBe(100);
    expect(answers.at(-1)).toMatchObject({ granted: false, decidedBy: 'LEASE' }); // a standing denial, good for the ttl
    expect(await decider.release(answers[0]!.permitId, 0)).toBe(true); // the first request cost nothing after all
    expect((await decider.acquire(t.input())).granted).toBe(true);
    expect((await decider.acquire(t.input())).granted).toBe(false);
  });

  it('answer the requests that waited for a denied take as the store (STORE), and those after it from the standing denial (LEASE), with no store call', async () => {
    const t = setup('      - { name: tokens, algorithm: fixed_window, rate: 100/1h }\n');
    const leases = t.sidecar();
    expect((await directAcquire(t, 100)).granted).toBe(true);
    // At one instant: passed on while the key is cold, then one take that every request waits for.
    const burst = await Promise.all(Array.from({ length: 60 }, () => leases.acquire(t.input())));
    const waited = burst.filter((d) => d !== null);
    expect(waited.length).toBeGreaterThan(0);
    expect(waited.every((d) => !d.granted && d.decidedBy === 'STORE')).toBe(true);
    expect(t.takes.count).toBe(1);
    expect(leases.figures.served).toBe(0);

    const standing = leases.acquire(t.input());
    expect(standing).not.toBeInstanceOf(Promise);
    expect(standing).toMatchObject({ granted: false, decidedBy: 'LEASE', remaining: 0 });
    expect(t.takes.count).toBe(1);
    expect(leases.figures.served).toBe(1);
  });

  it('never grant more than the limit allows across several sidecars, bursts included', async () => {
    // 1000/s with a burst of 100; four sidecars, each asked 1 to 3 requests at once every ms.
    const t = setup('      - { name: l, algorithm: token_bucket, rate: 1000/1s, burst: 100 }\n');
    const sidecars = [sidecarOf(t), sidecarOf(t), sidecarOf(t), sidecarOf(t)];
    let granted = 0;
    const durationMs = 3000;
    for (let elapsed = 0; elapsed < durationMs; elapsed += 1) {
      const answers = await Promise.all(sidecars.map((s, i) => burst(s.decider, t.input(), 1 + ((elapsed + i) % 3))));
      for (const d of answers.flat()) if (d.granted) granted++;
      t.advance(1);
      if (elapsed % 10 === 0) await Promise.all(sidecars.map((s) => s.leases.tick()));
    }
    const allowance = 100 + 1000 * (durationMs / 1000);
    expect(granted).toBeLessThanOrEqual(allowance);
    expect(granted).toBeGreaterThan(0.95 * allowance);
  });
});

describe('refunds', () => {
  it('are applied once per id, however often they are retried', async () => {
    const t = setup('      - { name: l, algorithm: fixed_window, rate: 100/1d }\n');
    const scope = t.input().scope;
    const v = await t.store.take(t.resource, scope, 1, [30], 0);
    expect(v.taken).toEqual([30]);
    expect(await t.store.refund(t.resource, scope, 'once', [30], v.now)).toBe(true);
    expect(await t.store.refund(t.resource, scope, 'once', [30], v.now)).toBe(false);
    expect(await storeRemaining(t.store, t.resource, scope)).toBe(100);
  });
});
