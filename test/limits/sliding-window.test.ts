// The weighted sliding window (current + weighted previous counter), driven by an explicit clock.
import { describe, expect, it } from 'vitest';
import { rollSlidingWindow, settleSlidingWindow, takeSlidingWindow, type SlidingWindowState } from '../../src/limits/sliding-window.js';
import type { WindowParams } from '../../src/limits/fixed-window.js';

// 10 per second.
const P: WindowParams = { periodMs: 1000, capacity: 10 };
// The first millisecond of window N.
const N = 1_700_000_000;
const W0 = N * 1000;

function counter(initial: SlidingWindowState = { window: -2, current: 0, previous: 0 }, params: WindowParams = P) {
  let state = initial;
  const c = {
    now: W0,
    take(cost = 1) {
      const v = takeSlidingWindow(state, c.now, cost, params);
      state = v.next;
      return v;
    },
    settle(grantedAt: number, delta: number) {
      state = settleSlidingWindow(state, c.now, grantedAt, delta, params);
      return state;
    },
    get state() {
      return state;
    },
  };
  return c;
}

describe('sliding window', () => {
  it('grants capacity from a fresh counter, then denies', () => {
    const c = counter();
    for (let i = 1; i <= 10; i++) {
      const v = c.take();
      expect(v.allowed).toBe(true);
      expect(v.remaining).toBe(10 - i);
    }
    const denied = c.take();
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    // 10 in the current window (elapsed 0): 1 unit of room once 1/10 of it has slid out of the
    // next window, i.e. 1000 + 100 ms from now.
    expect(denied.retryAfterMs).toBe(1100);
  });

  it('weights the previous window by how much of it the sliding window still covers', () => {
    // capacity 10, previous window full (10), halfway through the current window: estimate 5.
    const c = counter({ window: N - 1, current: 10, previous: 0 });
    c.now = W0 + 500;
    const denied = c.take(6);
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(5);
    const v = c.take(5);
    expect(v.allowed).toBe(true);
    expect(v.remaining).toBe(0);
    expect(v.next).toEqual({ window: N, current: 5, previous: 10 });
  });

  it('the previous window weighs fully at the first ms and not at all a period later', () => {
    const full = counter({ window: N - 1, current: 10, previous: 0 });
    full.now = W0;
    expect(full.take(1).allowed).toBe(false);
    const quarter = counter({ window: N - 1, current: 8, previous: 0 });
    quarter.now = W0 + 750; // 8 x 0.25 = 2
    expect(quarter.take(8).remaining).toBe(0);
    const gone = counter({ window: N - 2, current: 10, previous: 10 });
    gone.now = W0;
    expect(gone.take(10).allowed).toBe(true);
  });

  it('rolls the counters when windows close', () => {
    expect(rollSlidingWindow({ window: N, current: 3, previous: 7 }, W0 + 999, 1000)).toEqual({ window: N, current: 3, previous: 7 });
    expect(rollSlidingWindow({ window: N, current: 3, previous: 7 }, W0 + 1000, 1000)).toEqual({ window: N + 1, current: 0, previous: 3 });
    expect(rollSlidingWindow({ window: N, current: 3, previous: 7 }, W0 + 2000, 1000)).toEqual({ window: N + 2, current: 0, previous: 0 });
  });

  it('window edge: last ms of a window vs first ms of the next', () => {
    const c = counter();
    c.now = W0 + 999;
    expect(c.take(10).allowed).toBe(true);
    expect(c.take(1).allowed).toBe(false);
    // First ms of the next window: the previous 10 still weigh 10 x 1000/1000.
    c.now = W0 + 1000;
    const edge = c.take(1);
    expect(edge.allowed).toBe(false);
    expect(edge.remaining).toBe(0);
    // ... and 9.99 one ms later, which still leaves no whole unit...
    c.now = W0 + 1001;
    expect(c.take(1).allowed).toBe(false);
    // ... until a tenth has slid out.
    c.now = W0 + 1100;
    const v = c.take(1);
    expect(v.allowed).toBe(true);
    expect(v.remaining).toBe(0);
  });

  it('retry_after while the current count fits: when enough of the previous window has slid out', () => {
    const c = counter({ window: N - 1, current: 10, previous: 0 });
    c.now = W0 + 500; // estimate 5
    const denied = c.take(6);
    // Room for 6 needs the previous 10 to weigh 4: at 600 ms into the window.
    expect(denied.retryAfterMs).toBe(100);
    const t = c.now;
    c.now = t + denied.retryAfterMs - 1;
    expect(c.take(6).allowed).toBe(false);
    c.now = t + denied.retryAfterMs;
    expect(c.take(6).allowed).toBe(true);
  });

  it('retry_after when the current count alone is too much: in the next window', () => {
    const c = counter();
    c.now = W0 + 200;
    c.take(8);
    const denied = c.take(4);
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(2);
    // Room 6 needs the 8 to weigh 6: 250 ms into the next window, which is 800 ms away.
    expect(denied.retryAfterMs).toBe(1050);
    const t = c.now;
    c.now = t + denied.retryAfterMs - 1;
    expect(c.take(4).allowed).toBe(false);
    c.now = t + denied.retryAfterMs;
    expect(c.take(4).allowed).toBe(true);
  });

  it('weights by cost: cost 3 takes 3', () => {
    const c = counter();
    const v = c.take(3);
    expect(v.remaining).toBe(7);
    expect(v.next.current).toBe(3);
    expect(c.take(3).remaining).toBe(4);
    expect(c.take(3).remaining).toBe(1);
    expect(c.take(3).allowed).toBe(false);
  });

  it('a cost above capacity is never allowed: retryAfterMs is Infinity', () => {
    const c = counter();
    const v = c.take(11);
    expect(v.allowed).toBe(false);
    expect(v.retryAfterMs).toBe(Infinity);
    expect(v.remaining).toBe(10);
    expect(c.state).toEqual({ window: -2, current: 0, previous: 0 });
    expect(c.take(10).allowed).toBe(true);
  });

  it('a denial does not change the state', () => {
    const c = counter();
    c.take(9);
    const before = c.state;
    expect(c.take(2).allowed).toBe(false);
    expect(c.state).toEqual(before);
  });

  describe('settlement', () => {
    it('a refund in the charged window gives units back', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(10);
      c.now += 300;
      expect(c.settle(grantedAt, -4)).toEqual({ window: N, current: 6, previous: 0 });
      expect(c.take(4).allowed).toBe(true);
      expect(c.take(1).allowed).toBe(false);
    });

    it('a refund never goes below zero', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(2);
      expect(c.settle(grantedAt, -10).current).toBe(0);
      expect(c.take(10).allowed).toBe(true);
      expect(c.take(1).allowed).toBe(false);
    });

    it('a refund of a grant from the previous window comes off the previous counter', () => {
      const c = counter();
      const grantedAt = W0 + 900;
      c.now = grantedAt;
      c.take(10);
      c.now = W0 + 1500; // previous 10 weighs 5
      expect(c.settle(grantedAt, -4)).toEqual({ window: N + 1, current: 0, previous: 6 });
      // 6 x 0.5 = 3: room for 7, not 8.
      expect(c.take(8).allowed).toBe(false);
      expect(c.take(7).allowed).toBe(true);
    });

    it('a refund into a window that has slid out entirely does nothing', () => {
      const c = counter();
      const grantedAt = W0 + 100;
      c.now = grantedAt;
      c.take(10);
      c.now = W0 + 1000;
      expect(c.take(1).allowed).toBe(false); // the previous 10 still weigh 10
      c.now = W0 + 2500; // the charged window N is now two windows back
      const settled = c.settle(grantedAt, -5);
      expect(settled).toEqual({ window: N + 2, current: 0, previous: 0 });
      expect(c.take(10).allowed).toBe(true);
    });

    it('a refund into a closed window leaves the current counter alone', () => {
      const c = counter();
      const grantedAt = W0 + 100;
      c.now = grantedAt;
      c.take(4);
      c.now = W0 + 1100;
      c.take(5);
      c.now = W0 + 2100; // window N (charged) has now slid out; N+1 holds 5 as previous
      const settled = c.settle(grantedAt, -4);
      expect(settled).toEqual({ window: N + 2, current: 0, previous: 5 });
    });

    it('a positive delta charges the current window', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(2);
      c.now += 10;
      expect(c.settle(grantedAt, 5)).toEqual({ window: N, current: 7, previous: 0 });
      const v = c.take(4);
      expect(v.allowed).toBe(false);
      expect(v.remaining).toBe(3);
    });

    it('a charge takes the current count at most to capacity: the next window frees as after a full one', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(2);
      expect(c.settle(grantedAt, 1e15)).toEqual({ window: N, current: 10, previous: 0 });
      expect(c.take(1).allowed).toBe(false);
      // Half-way through the next window half of the drained window has slid out.
      c.now = W0 + 1500;
      const half = c.take(5);
      expect(half.allowed).toBe(true);
      expect(half.remaining).toBe(0);
      // Two windows on, nothing of it is left.
      c.now = W0 + 3000;
      expect(c.take(10).allowed).toBe(true);
    });
  });
});
