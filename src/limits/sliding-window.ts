// The weighted sliding window: two epoch-aligned counters, the current window's and the one
// before it. The previous count is weighted by how much of it the sliding window still covers,
// so the estimate moves smoothly instead of resetting at the window edge. Constant memory per
// key, unlike a sliding log.
//
// Reserve: a request that may use only `usable` of the limit fits when estimate + cost <=
// usableUnits(capacity, usable), and its retry_after is when the estimate leaves room under that.
import { EPSILON, NEVER, type Verdict } from './verdict.js';
import { untilWindowEnds, windowIndex, type WindowParams } from './fixed-window.js';
import { shareOfCapacity, usableUnits, type Algorithm } from './algorithm.js';

export interface SlidingWindowState {
  window: number;
  current: number;
  previous: number;
}

export interface SlidingWindowVerdict extends Verdict {
  next: SlidingWindowState;
}

/** The state as seen at `now`: counters shifted if one or more windows have closed since. */
export function rollSlidingWindow(state: SlidingWindowState, now: number, periodMs: number): SlidingWindowState {
  const window = windowIndex(now, periodMs);
  if (state.window === window) return state;
  if (state.window === window - 1) return { window, current: 0, previous: state.current };
  return { window, current: 0, previous: 0 };
}

export function takeSlidingWindow(state: SlidingWindowState, now: number, cost: number, p: WindowParams, want = cost, usable = 1): SlidingWindowVerdict {
  const rolled = rollSlidingWindow(state, now, p.periodMs);
  const elapsed = now - rolled.window * p.periodMs;
  const estimate = (rolled.previous * (p.periodMs - elapsed)) / p.periodMs + rolled.current;
  const capacity = usableUnits(p.capacity, usable);
  const available = left(capacity - estimate);
  if (cost > capacity) {
    const reserved = cost <= p.capacity;
    return { allowed: false, taken: 0, remaining: available, retryAfterMs: NEVER, resetAfterMs: resetAfter(rolled, elapsed, p), next: state, reserved };
  }
  if (estimate + cost > capacity + EPSILON) {
    return {
      allowed: false,
      taken: 0,
      remaining: available,
      retryAfterMs: retryAfter(rolled, elapsed, cost, p.periodMs, capacity),
      resetAfterMs: resetAfter(rolled, elapsed, p),
      next: state,
      reserved: estimate + cost <= p.capacity + EPSILON,
    };
  }
  const taken = Math.max(cost, Math.min(want, available));
  const next = { window: rolled.window, current: rolled.current + taken, previous: rolled.previous };
  return { allowed: true, taken, remaining: left(capacity - estimate - taken), retryAfterMs: 0, resetAfterMs: resetAfter(next, elapsed, p), next };
}

/**
 * A refund comes off the window that was charged while either counter still holds it; an extra
 * charge lands in the current window, whose count it takes at most to capacity. More would keep
 * the next window denied too: a settlement can drain a limit, never more.
 */
export function settleSlidingWindow(state: SlidingWindowState, now: number, grantedAt: number, delta: number, p: WindowParams): SlidingWindowState {
  const rolled = rollSlidingWindow(state, now, p.periodMs);
  if (delta >= 0) return { ...rolled, current: Math.min(rolled.current + delta, p.capacity) };
  const charged = windowIndex(grantedAt, p.periodMs);
  if (charged === rolled.window) return { ...rolled, current: Math.max(0, rolled.current + delta) };
  if (charged === rolled.window - 1) return { ...rolled, previous: Math.max(0, rolled.previous + delta) };
  return rolled;
}

/**
 * The earliest moment the estimate leaves room for `cost` under `capacity` (the part of the limit
 * the request may use). While the current count fits, that is when enough of the previous window
 * has slid out; otherwise it is in the next window, once enough of today's current count has slid
 * out in turn.
 */
function retryAfter(s: SlidingWindowState, elapsed: number, cost: number, periodMs: number, capacity: number): number {
  const room = capacity - cost;
  const sinceNow = s.current <= room
    ? periodMs - elapsed - (periodMs * (room - s.current)) / s.previous
    : periodMs - elapsed + periodMs - (periodMs * room) / s.current;
  return Math.max(sinceNow, EPSILON);
}

function resetAfter(s: SlidingWindowState, elapsed: number, p: WindowParams): number {
  if (s.current > 0) return 2 * p.periodMs - elapsed;
  if (s.previous > 0) return p.periodMs - elapsed;
  return 0;
}

function left(units: number): number {
  return Math.max(0, Math.floor(units + EPSILON));
}

export const slidingWindow: Algorithm<WindowParams, SlidingWindowState, SlidingWindowVerdict> = {
  name: 'sliding_window',
  initial: () => ({ window: -2, current: 0, previous: 0 }),
  take: (state, now, need, want, p, _aheadMs, usable) => takeSlidingWindow(state, now, need, p, want, usable),
  commit: (_state, verdict) => verdict.next,
  settle: settleSlidingWindow,
  // The current count still weighs on the next window.
  expiresAt: (state, p) => (state.window + 2) * p.periodMs,
  share: (limit, n) => ({ ...limit, capacity: shareOfCapacity(limit.capacity, n) }),
  windowEndsInMs: (now, p) => untilWindowEnds(now, p.periodMs),
  redis: { code: 3, keys: ['|sw'], args: (p) => [p.periodMs, p.capacity] },
};
