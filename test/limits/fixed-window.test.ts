// Epoch-aligned fixed windows, driven by an explicit clock.
import { describe, expect, it } from 'vitest';
import { settleFixedWindow, takeFixedWindow, windowIndex, type FixedWindowState, type WindowParams } from '../../src/limits/fixed-window.js';

// 5 per second.
const P: WindowParams = { periodMs: 1000, capacity: 5 };
// The first millisecond of a window.
const W0 = 1_700_000_000_000;

function counter(params: WindowParams = P) {
  let state: FixedWindowState = { window: -1, count: 0 };
  const c = {
    now: W0,
    take(cost = 1) {
      const v = takeFixedWindow(state, c.now, cost, params);
      state = v.next;
      return v;
    },
    settle(grantedAt: number, delta: number) {
      state = settleFixedWindow(state, c.now, grantedAt, delta, params);
      return state;
    },
    get state() {
      return state;
    },
  };
  return c;
}

describe('fixed window', () => {
  it('windows are epoch-aligned', () => {
    expect(W0 % 1000).toBe(0);
    expect(windowIndex(W0, 1000)).toBe(W0 / 1000);
    expect(windowIndex(W0 - 1, 1000)).toBe(W0 / 1000 - 1);
    expect(windowIndex(W0 + 999, 1000)).toBe(W0 / 1000);
    expect(windowIndex(W0 + 1000, 1000)).toBe(W0 / 1000 + 1);
    // A 1m window starts on the minute.
    expect(windowIndex(60_000 * 7 + 59_999, 60_000)).toBe(7);
    expect(windowIndex(60_000 * 8, 60_000)).toBe(8);
  });

  it('grants capacity in a window, then denies until the next window starts', () => {
    const c = counter();
    c.now = W0 + 200;
    for (let i = 1; i <= 5; i++) {
      const v = c.take();
      expect(v.allowed).toBe(true);
      expect(v.remaining).toBe(5 - i);
      expect(v.resetAfterMs).toBe(800);
    }
    const denied = c.take();
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    expect(denied.retryAfterMs).toBe(800);
    expect(denied.resetAfterMs).toBe(800);
  });

  it('the last ms of a window is still that window; the first ms of the next is fresh', () => {
    const c = counter();
    c.now = W0 + 999;
    expect(c.take(5).allowed).toBe(true);
    const denied = c.take();
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBe(1);
    c.now = W0 + 1000;
    const fresh = c.take();
    expect(fresh.allowed).toBe(true);
    expect(fresh.remaining).toBe(4);
    expect(fresh.resetAfterMs).toBe(1000);
  });

  it('a denied request is allowed after exactly retry_after, and not 1 ms before', () => {
    const c = counter();
    c.now = W0 + 123;
    c.take(5);
    const denied = c.take(2);
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBe(877);
    const t = c.now;
    c.now = t + denied.retryAfterMs - 1;
    expect(c.take(2).allowed).toBe(false);
    c.now = t + denied.retryAfterMs;
    expect(c.take(2).allowed).toBe(true);
  });

  it('a denial does not change the state', () => {
    const c = counter();
    c.take(4);
    const before = c.state;
    const v = c.take(2);
    expect(v.allowed).toBe(false);
    expect(v.remaining).toBe(1);
    expect(c.state).toEqual(before);
    expect(c.take(1).allowed).toBe(true);
  });

  it('weights by cost: cost 3 takes 3', () => {
    const c = counter();
    const v = c.take(3);
    expect(v.allowed).toBe(true);
    expect(v.remaining).toBe(2);
    expect(v.next).toEqual({ window: W0 / 1000, count: 3 });
    expect(c.take(3).allowed).toBe(false);
    expect(c.take(2).remaining).toBe(0);
  });

  it('a cost above capacity is never allowed: retryAfterMs is Infinity', () => {
    const c = counter();
    const v = c.take(6);
    expect(v.allowed).toBe(false);
    expect(v.retryAfterMs).toBe(Infinity);
    expect(v.remaining).toBe(5);
    // Even in a fresh window.
    c.now += 5000;
    expect(c.take(6).retryAfterMs).toBe(Infinity);
    expect(c.take(5).allowed).toBe(true);
  });

  it('a window several periods later starts from zero', () => {
    const c = counter();
    c.take(5);
    c.now = W0 + 7_500;
    const v = c.take(5);
    expect(v.allowed).toBe(true);
    expect(v.remaining).toBe(0);
  });

  describe('settlement', () => {
    it('a refund in the charged window gives units back', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(5);
      c.now += 400;
      expect(c.settle(grantedAt, -2)).toEqual({ window: W0 / 1000, count: 3 });
      const v = c.take(2);
      expect(v.allowed).toBe(true);
      expect(v.remaining).toBe(0);
    });

    it('a refund never gives back more than was counted', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(2);
      expect(c.settle(grantedAt, -10).count).toBe(0);
      expect(c.take(5).allowed).toBe(true);
      expect(c.take(1).allowed).toBe(false);
    });

    it('a refund into a closed window does nothing', () => {
      const c = counter();
      const grantedAt = W0 + 900;
      c.now = grantedAt;
      c.take(4);
      c.now = W0 + 1000;
      c.take(3);
      const before = c.state;
      expect(c.settle(grantedAt, -4)).toEqual(before);
      expect(c.state).toEqual({ window: W0 / 1000 + 1, count: 3 });
      expect(c.take(3).allowed).toBe(false);
      expect(c.take(2).allowed).toBe(true);
    });

    it('a positive delta charges the current window', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(1);
      c.settle(grantedAt, 2);
      expect(c.state.count).toBe(3);
      const v = c.take(3);
      expect(v.allowed).toBe(false);
      expect(v.remaining).toBe(2);
    });

    it('a charge fills the window at most to capacity, and the next window is full again', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(1);
      c.settle(grantedAt, 1e15);
      expect(c.state.count).toBe(5);
      expect(c.take(1).retryAfterMs).toBe(1000);
      // A refund then gives back from a drained window, not from the charge's full size.
      c.settle(grantedAt, -2);
      expect(c.state.count).toBe(3);
      c.now = W0 + 1000;
      const next = c.take(5);
      expect(next.allowed).toBe(true);
      expect(next.remaining).toBe(0);
    });

    it('a positive delta after the window closed lands in the new window', () => {
      const c = counter();
      const grantedAt = c.now;
      c.take(5);
      c.now = W0 + 1500;
      c.settle(grantedAt, 2);
      expect(c.state).toEqual({ window: W0 / 1000 + 1, count: 2 });
      expect(c.take(3).allowed).toBe(true);
      expect(c.take(1).allowed).toBe(false);
    });
  });
});
