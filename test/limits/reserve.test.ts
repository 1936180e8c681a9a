// The reserve in each algorithm's own math, on a fake clock: a request that may use only part of
// a limit (`usable`) is held to that part, its retry_after is when that part has room, and a
// denial the whole limit would not have made says so (`reserved`).
import { describe, expect, it } from 'vitest';
import { usableUnits } from '../../src/limits/algorithm.js';
import { checkConcurrency, holdPermit, type ConcurrencyState } from '../../src/limits/concurrency.js';
import { takeFixedWindow, type FixedWindowState } from '../../src/limits/fixed-window.js';
import { takeSlidingWindow, type SlidingWindowState } from '../../src/limits/sliding-window.js';
import { takeTokens } from '../../src/limits/token-bucket.js';

const W0 = 1_700_000_000 * 1000;

describe('usableUnits', () => {
  it('floors the usable part, so the reserve is never smaller than its fraction', () => {
    expect(usableUnits(10, 1)).toBe(10);
    expect(usableUnits(10, 0.8)).toBe(8);
    expect(usableUnits(10, 0.75)).toBe(7);
    // 1 - 0.3 is 0.7000000000000001 and 1 - 0.1 - 0.2 is 0.7: both keep 3 back.
    expect(usableUnits(10, 1 - 0.3)).toBe(7);
    expect(usableUnits(10, 1 - 0.1 - 0.2)).toBe(7);
    expect(usableUnits(10, 1 - 0.9)).toBe(1);
    expect(usableUnits(3, 0.5)).toBe(1);
  });
});

describe('fixed window with a reserve', () => {
  const P = { periodMs: 1000, capacity: 10 };

  it('a low priority takes 8 of 10, is denied the reserved 2 until the next window, a high priority takes them', () => {
    let state: FixedWindowState = { window: -1, count: 0 };
    for (let i = 0; i < 8; i++) {
      const v = takeFixedWindow(state, W0 + 100, 1, P, 1, 0.8);
      expect(v.allowed).toBe(true);
      state = v.next;
    }
    const low = takeFixedWindow(state, W0 + 100, 1, P, 1, 0.8);
    expect(low).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 900, reserved: true });
    const high = takeFixedWindow(state, W0 + 100, 2, P, 2, 1);
    expect(high.allowed).toBe(true);
    expect(takeFixedWindow(high.next, W0 + 100, 1, P, 1, 1)).toMatchObject({ allowed: false, reserved: false });
  });

  it('a cost past the usable part but within the capacity can never be granted to that priority, and says it is the reserve', () => {
    const v = takeFixedWindow({ window: -1, count: 0 }, W0, 9, P, 9, 0.8);
    expect(v).toMatchObject({ allowed: false, retryAfterMs: Infinity, reserved: true });
    expect(takeFixedWindow({ window: -1, count: 0 }, W0, 11, P, 11, 0.8)).toMatchObject({ retryAfterMs: Infinity, reserved: false });
  });

  it('a lease take stops at the usable part', () => {
    expect(takeFixedWindow({ window: -1, count: 0 }, W0, 1, P, 10, 0.8).taken).toBe(8);
  });
});

describe('sliding window with a reserve', () => {
  const P = { periodMs: 1000, capacity: 10 };

  it('holds the estimate to the usable part, and retry_after is when the estimate leaves room under it', () => {
    // Previous window full with 8, half of it slid out: the estimate is 4 + current.
    const state: SlidingWindowState = { window: 1_700_000_000, current: 4, previous: 8 };
    const now = W0 + 500;
    // 4 + 4 = 8: the low priority (usable 8) is full, the whole limit has 2.
    const low = takeSlidingWindow(state, now, 1, P, 1, 0.8);
    expect(low).toMatchObject({ allowed: false, remaining: 0, reserved: true });
    // Room for 1 under 8 when previous x (1000 - elapsed)/1000 <= 3: 125 ms later.
    expect(low.retryAfterMs).toBeCloseTo(125, 6);
    const later = takeSlidingWindow(state, now + low.retryAfterMs, 1, P, 1, 0.8);
    expect(later.allowed).toBe(true);
    expect(takeSlidingWindow(state, now, 2, P, 2, 1).allowed).toBe(true);
  });

  it('a cost past the usable part is never for that priority', () => {
    expect(takeSlidingWindow({ window: -2, current: 0, previous: 0 }, W0, 9, P, 9, 0.8)).toMatchObject({ retryAfterMs: Infinity, reserved: true });
  });
});

describe('token bucket with a reserve', () => {
  // One unit every 100 ms, burst 10; a low priority may use 8 of the burst.
  const P = { intervalMs: 100, capacity: 10 };

  it('a low priority cannot take the last 2 of the burst; a high priority can', () => {
    let tat = 0;
    for (let i = 0; i < 8; i++) {
      const v = takeTokens(tat, W0, 1, P, 1, 0, 0.8);
      expect(v.allowed).toBe(true);
      tat = v.nextTat;
    }
    const low = takeTokens(tat, W0, 1, P, 1, 0, 0.8);
    // The new TAT would be 900 ms ahead, past 0.8 x 10 x 100 = 800.
    expect(low).toMatchObject({ allowed: false, remaining: 0, reserved: true });
    expect(low.retryAfterMs).toBeCloseTo(100, 6);
    const high = takeTokens(tat, W0, 2, P, 2, 0, 1);
    expect(high.allowed).toBe(true);
  });

  it('the refill goes to the high priority first while it asks: the low one waits until the bucket is above the reserve line', () => {
    // The bucket is empty (TAT one burst ahead).
    const tat = W0 + 1000;
    // A unit refills after 100 ms: the high priority may take it, the low priority not until
    // the reserve line (2 units, 200 ms) plus its own unit has refilled, 300 ms.
    const high = takeTokens(tat, W0 + 100, 1, P, 1, 0, 1);
    expect(high.allowed).toBe(true);
    const low = takeTokens(tat, W0 + 100, 1, P, 1, 0, 0.8);
    expect(low.allowed).toBe(false);
    expect(low.retryAfterMs).toBeCloseTo(200, 6);
    expect(takeTokens(tat, W0 + 300, 1, P, 1, 0, 0.8).allowed).toBe(true);
    // Had the high priority taken the unit at 100 ms, the low one waits a unit longer.
    expect(takeTokens(high.nextTat, W0 + 300, 1, P, 1, 0, 0.8).allowed).toBe(false);
  });

  it('a cost past the usable burst is never for that priority', () => {
    expect(takeTokens(0, W0, 9, P, 9, 0, 0.8)).toMatchObject({ allowed: false, retryAfterMs: Infinity, reserved: true });
    expect(takeTokens(0, W0, 8, P, 8, 0, 0.8).allowed).toBe(true);
  });

  it('a lease take ahead of time stops at the usable part of the schedule', () => {
    // Empty bucket save 2 reserved units' worth: no unit is due for the low priority within 50 ms.
    const tat = W0 + 800;
    expect(takeTokens(tat, W0, 1, P, 5, 50, 0.8).allowed).toBe(false);
    // With 250 ms ahead, units due at 100 and 200 ms (for the low priority's part) are taken.
    const v = takeTokens(tat, W0, 1, P, 5, 250, 0.8);
    expect(v).toMatchObject({ allowed: true, taken: 2 });
    expect(v.dueInMs).toBeCloseTo(100, 6);
  });
});

describe('concurrency with a reserve', () => {
  const P = { capacity: 5, ttlMs: 1000 };

  it('a low priority holds at most the usable permits; retry_after is when one it may use frees', () => {
    const state: ConcurrencyState = { held: 0, permits: [] };
    holdPermit(state, W0, 'a', 2, P);
    holdPermit(state, W0 + 100, 'b', 2, P);
    // Usable 0.8 of 5 = 4: held 4, a low priority is denied although 1 permit is free.
    const low = checkConcurrency(state, W0 + 200, 1, P, 0.8);
    expect(low).toMatchObject({ allowed: false, remaining: 0, reserved: true, retryAfterMs: 800 });
    expect(checkConcurrency(state, W0 + 200, 1, P, 1)).toMatchObject({ allowed: true, remaining: 0 });
    expect(checkConcurrency(state, W0 + 200, 5, P, 0.8)).toMatchObject({ retryAfterMs: Infinity, reserved: true });
  });
});
