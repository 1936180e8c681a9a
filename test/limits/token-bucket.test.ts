// GCRA token bucket, driven by an explicit clock: `now` is a plain number the tests advance.
import { describe, expect, it } from 'vitest';
import { settleTokens, takeTokens, type TokenBucketParams } from '../../src/limits/token-bucket.js';

// 10 per second, burst 10: one unit every 100 ms.
const P: TokenBucketParams = { intervalMs: 100, capacity: 10 };
const START = 1_700_000_000_000;

/** A bucket under test: the stored TAT and a fake clock. */
function bucket(params: TokenBucketParams = P) {
  let tat = 0;
  const b = {
    now: START,
    take(cost = 1) {
      const v = takeTokens(tat, b.now, cost, params);
      if (v.allowed) tat = v.nextTat;
      return v;
    },
    settle(delta: number) {
      tat = settleTokens(tat, b.now, delta, params);
    },
    get tat() {
      return tat;
    },
  };
  return b;
}

describe('token bucket (GCRA)', () => {
  it('a fresh bucket grants a burst of capacity, counting remaining down, then denies', () => {
    const b = bucket();
    for (let i = 1; i <= 10; i++) {
      const v = b.take();
      expect(v.allowed).toBe(true);
      expect(v.remaining).toBe(10 - i);
      expect(v.retryAfterMs).toBe(0);
    }
    const denied = b.take();
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    expect(denied.retryAfterMs).toBe(100);
    // A full bucket after a 10-unit burst is 10 intervals away.
    expect(denied.resetAfterMs).toBe(1000);
  });

  it('after the burst, admits at the steady rate: one unit per interval, no more', () => {
    const b = bucket();
    for (let i = 0; i < 10; i++) expect(b.take().allowed).toBe(true);
    let granted = 0;
    // 2 seconds in 10 ms steps: the steady rate is 10/s, so exactly 20 more.
    for (let step = 0; step < 200; step++) {
      b.now += 10;
      while (b.take().allowed) granted++;
    }
    expect(granted).toBe(20);
  });

  it('a denied request is allowed after exactly retry_after, and not 1 ms before', () => {
    const b = bucket();
    expect(b.take(10).allowed).toBe(true);
    b.now += 30;
    const denied = b.take(3);
    expect(denied.allowed).toBe(false);
    // 3 units need 300 ms of refill; 30 ms have passed.
    expect(denied.retryAfterMs).toBe(270);
    const t = b.now;
    b.now = t + denied.retryAfterMs - 1;
    expect(b.take(3).allowed).toBe(false);
    b.now = t + denied.retryAfterMs;
    const granted = b.take(3);
    expect(granted.allowed).toBe(true);
    expect(granted.remaining).toBe(0);
  });

  it('a denial does not change the state', () => {
    const b = bucket();
    b.take(10);
    const before = b.tat;
    const v = b.take(1);
    expect(v.allowed).toBe(false);
    expect(v.nextTat).toBe(before);
    expect(b.tat).toBe(before);
  });

  it('weights by cost: cost 3 takes 3 units', () => {
    const b = bucket();
    const v = b.take(3);
    expect(v.allowed).toBe(true);
    expect(v.remaining).toBe(7);
    expect(v.nextTat).toBe(START + 300);
    expect(b.take(3).remaining).toBe(4);
    expect(b.take(3).remaining).toBe(1);
    const denied = b.take(3);
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(1);
    expect(denied.retryAfterMs).toBe(200);
    expect(b.take(1).allowed).toBe(true);
  });

  it('a cost above the burst is never allowed: retryAfterMs is Infinity', () => {
    const b = bucket();
    const v = b.take(11);
    expect(v.allowed).toBe(false);
    expect(v.retryAfterMs).toBe(Infinity);
    expect(v.remaining).toBe(10);
    // Nothing was taken.
    expect(b.take(10).allowed).toBe(true);
  });

  it('a cost equal to the burst is allowed from a full bucket', () => {
    const b = bucket();
    const v = b.take(10);
    expect(v.allowed).toBe(true);
    expect(v.remaining).toBe(0);
  });

  it('a burst different from the rate: 1 per second, burst 3', () => {
    const b = bucket({ intervalMs: 1000, capacity: 3 });
    expect(b.take().remaining).toBe(2);
    expect(b.take().remaining).toBe(1);
    expect(b.take().remaining).toBe(0);
    const denied = b.take();
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBe(1000);
    // An idle bucket never holds more than the burst.
    b.now += 60_000;
    expect(b.take().remaining).toBe(2);
  });

  it('remaining counts whole units refilled since', () => {
    const b = bucket();
    b.take(10);
    b.now += 250; // 2.5 units back
    const v = b.take(4);
    expect(v.allowed).toBe(false);
    expect(v.remaining).toBe(2);
    expect(v.retryAfterMs).toBe(150);
  });

  describe('settlement', () => {
    it('a refund gives units back', () => {
      const b = bucket();
      b.take(5);
      b.settle(-2);
      expect(b.tat).toBe(START + 300);
      expect(b.take(1).remaining).toBe(6);
    });

    it('a refund never fills past a full bucket', () => {
      const b = bucket();
      b.take(5);
      b.settle(-100);
      expect(b.tat).toBe(b.now);
      const v = b.take(1);
      expect(v.remaining).toBe(9);
      // A second full burst is not available.
      expect(b.take(10).allowed).toBe(false);
    });

    it('a refund after the bucket has refilled on its own does nothing', () => {
      const b = bucket();
      b.take(5);
      b.now += 10_000;
      b.settle(-5);
      expect(b.take(10).allowed).toBe(true);
      expect(b.take(1).allowed).toBe(false);
    });

    it('a positive delta charges the extra', () => {
      const b = bucket();
      b.take(5);
      b.settle(3);
      expect(b.tat).toBe(START + 800);
      const v = b.take(3);
      expect(v.allowed).toBe(false);
      expect(v.remaining).toBe(2);
    });

    it('a charge drains the bucket at most: the TAT stops at now + burst x interval', () => {
      const b = bucket();
      b.take(5);
      b.settle(10); // 18 units charged against a burst of 10
      expect(b.tat).toBe(START + 1000);
      const empty = b.take(1);
      expect(empty.allowed).toBe(false);
      expect(empty.retryAfterMs).toBe(100);
      expect(empty.resetAfterMs).toBe(1000);
    });

    it.each([1e12, 1e15])('a charge of %d on 60/1m is an empty bucket, full again a minute later', (delta) => {
      const b = bucket({ intervalMs: 1000, capacity: 60 });
      b.take(1);
      b.settle(delta);
      expect(b.tat).toBe(START + 60_000);
      expect(b.take(1).retryAfterMs).toBe(1000);
      b.now += 60_000;
      const full = b.take(60);
      expect(full.allowed).toBe(true);
      expect(full.remaining).toBe(0);
    });

    it('a zero delta changes nothing on a bucket in use', () => {
      const b = bucket();
      b.take(4);
      const before = b.tat;
      b.settle(0);
      expect(b.tat).toBe(before);
    });
  });
});
