// Leases and the reserve, on a fake clock over the memory store: leases take units as the lowest
// priority would, so a low-priority flood served from leases never takes the reserve, and a
// high-priority request the lease cannot serve goes to the store with its own priority.
import { describe, expect, it } from 'vitest';
import { Decider } from '../../src/decide/decider.js';
import type { Decision } from '../../src/decide/decision.js';
import { leaseClock } from '../support/lease-clock.js';

const RESERVE = '    reserve: [{ fraction: 0.2, min_priority: 5 }]\n';

function setUp(limit: string) {
  const t = leaseClock(`      - ${limit}\n`, '{ enabled: true, max_fraction: 0.1, ttl: 1s }', RESERVE);
  const sidecars = [t.sidecar(), t.sidecar()];
  const deciders = sidecars.map((leases) => new Decider(t.store, { maxPermits: 10_000, now: () => t.now, leases }));
  return { t, sidecars, deciders };
}

describe('leases with a reserve', () => {
  it.each([
    { algorithm: 'fixed_window', limit: '{ name: rate, algorithm: fixed_window, rate: 100/1s }' },
    { algorithm: 'token_bucket', limit: '{ name: rate, algorithm: token_bucket, rate: 100/1s }' },
  ])('$algorithm: a low-priority flood at 2x the limit through two sidecars\' leases never takes the 20% reserve', async ({ limit }) => {
    const { t, sidecars, deciders } = setUp(limit);
    // Start on a window's edge so that one second is one window.
    t.advance(1000 - (t.now % 1000));
    const start = t.now;
    let lowGranted = 0;
    let leaseServed = 0;
    const highDecisions: Decision[] = [];
    const windows = limit.includes('fixed_window');
    // 200 low-priority requests a second, alternating sidecars, for 3 s; twice in the last tenth
    // of each second, once the low ones have drained their part, a high-priority request.
    for (let i = 0; i < 600; i++) {
      const d = await deciders[i % 2]!.acquire(t.input('a', 1, 0));
      if (d.granted) lowGranted++;
      if (d.decidedBy === 'LEASE') leaseServed++;
      if (i % 200 === 179 || i % 200 === 199) {
        // A window's low-priority part is gone by now (a bucket's refills half of them still).
        if (windows) expect((await deciders[i % 2]!.acquire(t.input('a', 1, 0))).granted).toBe(false);
        highDecisions.push(await deciders[(i + 1) % 2]!.acquire(t.input('a', 1, 9)));
      }
      t.advance(5);
      await Promise.all(sidecars.map((s) => s.tick()));
    }
    const seconds = (t.now - start) / 1000;
    // The low priority got at most its 80%: 80 a second (and for the bucket, its 80 of the burst once).
    const allowed = limit.includes('token_bucket') ? 80 + 100 * seconds : 80 * seconds;
    expect(lowGranted).toBeLessThanOrEqual(allowed);
    expect(lowGranted).toBeGreaterThan(0.6 * 80 * seconds);
    expect(leaseServed).toBeGreaterThan(100);
    // Every high-priority request found the reserve there, while the low ones were denied.
    expect(highDecisions.length).toBe(6);
    for (const d of highDecisions) expect(d).toMatchObject({ granted: true });
  });

  it('a high-priority request the lease holds too few for is passed on, never denied by a standing low-priority denial', async () => {
    const { t, deciders } = setUp('{ name: rate, algorithm: fixed_window, rate: 100/1d }');
    // Drain the low priority's 80 through the leases until they stand denied.
    let denial: Decision | undefined;
    for (let i = 0; i < 200 && !denial; i++) {
      const d = await deciders[0]!.acquire(t.input('a', 1, 0));
      if (!d.granted && d.decidedBy === 'LEASE') denial = d;
      t.advance(1);
    }
    expect(denial).toBeDefined();
    const high = await deciders[0]!.acquire(t.input('a', 1, 9));
    expect(high).toMatchObject({ granted: true, decidedBy: 'STORE' });
    // The store's reason names the reserve for the low priority.
    const low = await deciders[1]!.acquire(t.input('a', 1, 0));
    expect(low.granted).toBe(false);
  });
});
