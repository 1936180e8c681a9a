// A token bucket at its limit, leased as slices of its schedule, on a fake clock over the memory
// store: the invariant (never more than burst + rate x elapsed, at any moment), how few takes it
// costs, how sidecars of unequal demand share it, what a dead sidecar strands, window edges, and
// that a leased denial's retry_after is the truth.
import { describe, expect, it } from 'vitest';
import type { Decision } from '../../src/decide/decision.js';
import type { Leases } from '../../src/lease/leases.js';
import { directAcquire, leaseClock, type LeaseClock } from '../support/lease-clock.js';

const HOT = '      - { name: rps, algorithm: token_bucket, rate: 2000/1s, burst: 200 }\n';
const RATE_PER_MS = 2;
const BURST = 200;

interface Run {
  /** Grants per sidecar. */
  granted: number[];
  /** Requests per sidecar. */
  asked: number[];
  takes: number;
  /** The most grants ever were above burst + rate x elapsed (0 or less: never above). */
  worstExcess: number;
}

/**
 * Open-loop demand over `sidecars` for `ms`: `perMs[i]` requests each ms to sidecar i, every
 * answer awaited before the clock moves (the store answers at once). Grants are counted against
 * burst + rate x elapsed after every step, from `since` (the key's first request).
 */
async function saturate(t: LeaseClock, sidecars: (Leases | null)[], perMs: readonly number[], ms: number, since = t.now): Promise<Run> {
  const run: Run = { granted: sidecars.map(() => 0), asked: sidecars.map(() => 0), takes: 0, worstExcess: Number.NEGATIVE_INFINITY };
  const takesBefore = t.takes.count;
  const owed = perMs.map(() => 0);
  let total = 0;
  for (let step = 0; step < ms * 4; step++) {
    for (let i = 0; i < sidecars.length; i++) {
      const leases = sidecars[i];
      if (!leases) continue;
      owed[i]! += perMs[i]! / 4;
      for (; owed[i]! >= 1; owed[i]!--) {
        run.asked[i]!++;
        const d = (await leases.acquire(t.input())) ?? (await directAcquire(t));
        if (d.granted) {
          run.granted[i]!++;
          total++;
        }
      }
    }
    run.worstExcess = Math.max(run.worstExcess, total - (BURST + RATE_PER_MS * (t.now - since)));
    t.advance(0.25);
    if (step % 40 === 0) await Promise.all(sidecars.map((s) => s?.tick()));
  }
  run.takes = t.takes.count - takesBefore;
  return run;
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

describe('a token bucket at its limit, leased as slices of its schedule', () => {
  it('never grants more than burst + rate x elapsed at any moment, and keeps the key nearly off the store', async () => {
    const t = leaseClock(HOT);
    const sidecars = [t.sidecar(), t.sidecar(), t.sidecar(), t.sidecar()];
    const start = t.now;
    const run = await saturate(t, sidecars, [1, 1, 1, 1], 5_000, start);
    const allowed = BURST + RATE_PER_MS * (t.now - start);
    expect(run.worstExcess).toBeLessThanOrEqual(0);
    expect(sum(run.granted)).toBeGreaterThanOrEqual(0.98 * allowed);
    // Takes for leases, not calls per request: 10,000 grants from a few hundred takes.
    expect(run.takes / sum(run.granted)).toBeLessThanOrEqual(0.05);
  });

  it('shares the schedule between sidecars in proportion to their demand', async () => {
    const t = leaseClock(HOT);
    const sidecars = [t.sidecar(), t.sidecar(), t.sidecar(), t.sidecar()];
    const perMs = [0.4, 0.8, 1.2, 1.6]; // 2x the rate in all, 1:2:3:4
    await saturate(t, sidecars, perMs, 1_000); // demand settles
    const run = await saturate(t, sidecars, perMs, 4_000);
    const total = sum(run.granted);
    for (let i = 0; i < perMs.length; i++) {
      const shareOfDemand = perMs[i]! / sum(perMs);
      expect(Math.abs(run.granted[i]! / total / shareOfDemand - 1)).toBeLessThanOrEqual(0.1);
    }
  });

  it('strands what a dead sidecar held, once: the others get the rest of the schedule', async () => {
    const t = leaseClock(HOT);
    const sidecars: (Leases | null)[] = [t.sidecar(), t.sidecar(), t.sidecar(), t.sidecar()];
    const start = t.now;
    const before = await saturate(t, sidecars, [1, 1, 1, 1], 2_000, start);
    const dead = sidecars[3]!;
    const stranded = dead.figures.held;
    expect(stranded).toBeGreaterThan(0);
    // A slice spans at most max_fraction (0.1) of a second of the schedule: 200 units, taken
    // ahead as demand runs out, so at most two of them at once.
    expect(stranded).toBeLessThanOrEqual(2 * 200);
    sidecars[3] = null; // killed: it never serves nor gives back what it holds
    const after = await saturate(t, sidecars, [4 / 3, 4 / 3, 4 / 3, 0], 3_000, start);
    const allowed = BURST + RATE_PER_MS * (t.now - start);
    const granted = sum(before.granted) + sum(after.granted);
    expect(after.worstExcess).toBeLessThanOrEqual(0);
    // Only the dead sidecar's units are lost, and only once (no more than 2% besides).
    expect(granted).toBeLessThanOrEqual(allowed - stranded);
    expect(granted).toBeGreaterThanOrEqual(0.98 * allowed - stranded);
  });

  it('never serves a unit of a closed window, nor one a window did not allow', async () => {
    const t = leaseClock(HOT + '      - { name: per-second, algorithm: fixed_window, rate: 1500/1s }\n');
    const sidecars = [t.sidecar(), t.sidecar(), t.sidecar(), t.sidecar()];
    t.advance(1000 - (t.now % 1000)); // on a window edge
    const perWindow: number[] = [];
    for (let w = 0; w < 4; w++) {
      const run = await saturate(t, sidecars, [1, 1, 1, 1], 1_000);
      perWindow.push(sum(run.granted));
      expect(run.worstExcess).toBeLessThanOrEqual(0);
    }
    for (const granted of perWindow) expect(granted).toBeLessThanOrEqual(1500);
    // The window, not the bucket, is the tighter limit: most of it is used.
    expect(Math.min(...perWindow.slice(1))).toBeGreaterThan(0.9 * 1500);
  });

  it("answers a leased denial with a retry_after that is the truth on this sidecar: denied before it, granted at it", async () => {
    const t = leaseClock(HOT);
    const sidecars = [t.sidecar(), t.sidecar()];
    await saturate(t, sidecars, [2, 2], 500);
    let checked = 0;
    for (let probe = 0; probe < 50; probe++) {
      const denial = (await sidecars[0]!.acquire(t.input())) as Decision | null;
      if (!denial || denial.granted) {
        t.advance(0.25);
        continue;
      }
      expect(denial.decidedBy).toBe('LEASE');
      expect(denial.retryAfterMs).toBeGreaterThan(0);
      const retryAt = t.now + denial.retryAfterMs;
      if (denial.retryAfterMs > 0.01) {
        t.advance(denial.retryAfterMs - 0.01);
        expect(((await sidecars[0]!.acquire(t.input())) as Decision).granted).toBe(false);
      }
      t.advance(retryAt - t.now);
      expect(((await sidecars[0]!.acquire(t.input())) as Decision).granted).toBe(true);
      checked++;
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('stays nearly off the store beside a window that never binds (the window clips how far ahead a take reaches)', async () => {
    const t = leaseClock(HOT + '      - { name: per-second, algorithm: fixed_window, rate: 100000/1s }\n');
    const sidecars = [t.sidecar(), t.sidecar(), t.sidecar(), t.sidecar()];
    await saturate(t, sidecars, [1, 1, 1, 1], 500);
    const run = await saturate(t, sidecars, [1, 1, 1, 1], 3_000);
    expect(run.worstExcess).toBeLessThanOrEqual(0);
    expect(run.takes / sum(run.asked)).toBeLessThanOrEqual(0.02);
  });

  it('takes no more than a slice ahead for a crowd of requests that arrive at once', async () => {
    const t = leaseClock(HOT, '{ enabled: true, max_fraction: 0.1, ttl: 1m }');
    const leases = t.sidecar();
    await saturate(t, [leases], [4], 500);
    t.advance(400); // idle: what it held goes back, the key is still hot
    await leases.tick();
    expect(leases.figures.held).toBe(0);
    await Promise.all(Array.from({ length: 5_000 }, () => leases.acquire(t.input())));
    // A slice is 200 units (max_fraction of a second at 2000/s), the burst is all due at once.
    expect(leases.figures.held).toBeLessThanOrEqual(200 + BURST);
  });

  it("answers a leased grant's remaining with what is due, not what is held for later", async () => {
    const t = leaseClock(HOT);
    const sidecars = [t.sidecar(), t.sidecar()];
    await saturate(t, sidecars, [2, 2], 500);
    let checked = 0;
    for (let probe = 0; probe < 200 && checked < 20; probe++) {
      const first = (await sidecars[0]!.acquire(t.input())) as Decision | null;
      if (first?.granted) {
        const next = (await sidecars[0]!.acquire(t.input())) as Decision;
        expect(next.granted).toBe(first.remaining > 0);
        checked++;
      }
      t.advance(0.1);
    }
    expect(checked).toBe(20);
  });
});
