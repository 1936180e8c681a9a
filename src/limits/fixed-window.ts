// A counter per epoch-aligned window (Envoy's windows: a 1m window starts on the minute).
// Reserve: a request that may use only `usable` of the limit fits when count + cost <=
// usableUnits(capacity, usable); the rest of the window is for higher priorities.
import { shareOfCapacity, usableUnits, type Algorithm } from './algorithm.js';
import { NEVER, type Verdict } from './verdict.js';

export interface WindowParams {
  periodMs: number;
  /** Units per window. */
  capacity: number;
}

export interface FixedWindowState {
  /** Index of the window the count belongs to: floor(time / period). */
  window: number;
  count: number;
}

export interface FixedWindowVerdict extends Verdict {
  next: FixedWindowState;
}

export function windowIndex(now: number, periodMs: number): number {
  return Math.floor(now / periodMs);
}

export function takeFixedWindow(state: FixedWindowState, now: number, cost: number, p: WindowParams, want = cost, usable = 1): FixedWindowVerdict {
  const window = windowIndex(now, p.periodMs);
  const count = state.window === window ? state.count : 0;
  const capacity = usableUnits(p.capacity, usable);
  const available = Math.max(0, capacity - count);
  const untilNext = (window + 1) * p.periodMs - now;
  if (cost > capacity) {
    const reserved = cost <= p.capacity;
    return { allowed: false, taken: 0, remaining: available, retryAfterMs: NEVER, resetAfterMs: count > 0 ? untilNext : 0, next: state, reserved };
  }
  if (cost > available) {
    return { allowed: false, taken: 0, remaining: available, retryAfterMs: untilNext, resetAfterMs: untilNext, next: state, reserved: count + cost <= p.capacity };
  }
  const taken = Math.max(cost, Math.min(want, available));
  // A take of nothing (a look at the state) leaves a fresh window full: nothing to reset.
  const resetAfterMs = count + taken > 0 ? untilNext : 0;
  return { allowed: true, taken, remaining: available - taken, retryAfterMs: 0, resetAfterMs, next: { window, count: count + taken } };
}

/**
 * A refund returns units to the window that was charged, if it is still the current one (a
 * closed window's budget cannot be spent again). An extra charge lands in the current window, at
 * most up to its capacity: a settlement can drain a limit, never more.
 */
export function settleFixedWindow(state: FixedWindowState, now: number, grantedAt: number, delta: number, p: WindowParams): FixedWindowState {
  const window = windowIndex(now, p.periodMs);
  const count = state.window === window ? state.count : 0;
  if (delta < 0) {
    if (windowIndex(grantedAt, p.periodMs) !== window) return state;
    return { window, count: Math.max(0, count + delta) };
  }
  return { window, count: Math.min(count + delta, p.capacity) };
}

/** Until the window that `now` is in closes. */
export function untilWindowEnds(now: number, periodMs: number): number {
  return (windowIndex(now, periodMs) + 1) * periodMs - now;
}

export const fixedWindow: Algorithm<WindowParams, FixedWindowState, FixedWindowVerdict> = {
  name: 'fixed_window',
  initial: () => ({ window: -1, count: 0 }),
  take: (state, now, need, want, p, _aheadMs, usable) => takeFixedWindow(state, now, need, p, want, usable),
  commit: (_state, verdict) => verdict.next,
  settle: settleFixedWindow,
  expiresAt: (state, p) => (state.window + 1) * p.periodMs,
  share: (limit, n) => ({ ...limit, capacity: shareOfCapacity(limit.capacity, n) }),
  windowEndsInMs: (now, p) => untilWindowEnds(now, p.periodMs),
  redis: { code: 2, keys: ['|fw'], args: (p) => [p.periodMs, p.capacity] },
};
