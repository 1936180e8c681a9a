// GCRA, the token bucket kept as one number: the theoretical arrival time (TAT) at which the
// bucket would be full again. A request of `cost` units moves the TAT by cost x interval and is
// allowed when the new TAT is at most `capacity` (burst) intervals ahead of now.
//
// The TAT is also a schedule: the unit that moves it to `t` is due (conforms) at t - burst x
// interval. A lease may take units ahead of their time (a slice of the schedule, up to `aheadMs`
// past now) and serve each no sooner than it falls due, so whoever serves them, the grants follow
// the one schedule and never exceed burst + rate x elapsed (docs/leases.md).
//
// Reserve: a request that may use only `usable` of the limit is allowed when the new TAT is at
// most usableUnits(burst, usable) intervals ahead of now: it cannot take the last, reserved part
// of the burst. The rate is shared, not split: refill goes first to whoever asks when the bucket
// is below the reserve line, so higher priorities, while they ask, get the refill before lower
// ones, and lower ones get the rest.
import { shareOfCapacity, usableUnits, type Algorithm } from './algorithm.js';
import { EPSILON, NEVER, type Verdict } from './verdict.js';

export interface TokenBucketParams {
  /** Milliseconds per unit: period / rate. */
  intervalMs: number;
  /** The burst: units that can be taken at once from a full bucket. */
  capacity: number;
}

export interface TokenBucketVerdict extends Verdict {
  /** The TAT to store if this request is committed. */
  nextTat: number;
}

/**
 * `tat` is the stored TAT, or 0 for a key never seen (a full bucket). With `aheadMs` > 0 (a lease),
 * the take is allowed when `cost` units fall due within aheadMs, and takes up to `want` units
 * that do; `dueInMs` says when the first of them falls due, the rest follow one interval apart.
 * A refused take's retryAfterMs is when `cost` units would conform now, whatever aheadMs.
 */
export function takeTokens(tat: number, now: number, cost: number, p: TokenBucketParams, want = cost, aheadMs = 0, usable = 1): TokenBucketVerdict {
  const base = Math.max(tat, now);
  const burst = usableUnits(p.capacity, usable);
  const window = burst * p.intervalMs;
  const available = units(now + window - base, p);
  if (cost > burst) {
    return { allowed: false, taken: 0, remaining: available, retryAfterMs: NEVER, resetAfterMs: base - now, nextTat: tat, reserved: cost <= p.capacity };
  }
  const allowAt = base + cost * p.intervalMs - window;
  if (allowAt > now + aheadMs + EPSILON) {
    const reserved = burst < p.capacity && allowAt - (p.capacity - burst) * p.intervalMs <= now + aheadMs + EPSILON;
    return { allowed: false, taken: 0, remaining: available, retryAfterMs: allowAt - now, resetAfterMs: base - now, nextTat: tat, reserved };
  }
  const taken = Math.max(cost, Math.min(want, aheadMs > 0 ? units(now + aheadMs + window - base, p) : available));
  const nextTat = base + taken * p.intervalMs;
  return {
    allowed: true,
    taken,
    remaining: units(now + window - nextTat, p),
    retryAfterMs: 0,
    resetAfterMs: nextTat - now,
    dueInMs: base + p.intervalMs - window - now,
    nextTat,
  };
}

/**
 * Settles a granted request's real cost: a negative delta refunds (never past a full bucket), a
 * positive one charges the extra, at most to an empty bucket (TAT now + burst x interval). A
 * larger charge would lock the key for longer than the limit's own horizon: a settlement can
 * drain a limit, never more. A TAT already further ahead (units leased ahead of their time) is
 * never pulled back by a charge; a refund moves it back by what it returns, which only moves
 * units no sidecar holds any more (docs/leases.md).
 */
export function settleTokens(tat: number, now: number, delta: number, p: TokenBucketParams): number {
  const base = Math.max(tat, now);
  const settled = base + delta * p.intervalMs;
  if (delta < 0) return Math.max(settled, now);
  return Math.min(settled, Math.max(base, now + p.capacity * p.intervalMs));
}

function units(ms: number, p: TokenBucketParams): number {
  return Math.max(0, Math.floor(ms / p.intervalMs + EPSILON));
}

/** The state is the TAT; 0 (a full bucket) for a key never seen, and again once the TAT has passed. */
export const tokenBucket: Algorithm<TokenBucketParams, number, TokenBucketVerdict> = {
  name: 'token_bucket',
  initial: () => 0,
  take: (tat, now, need, want, p, aheadMs, usable) => takeTokens(tat, now, need, p, want, aheadMs, usable),
  commit: (_tat, verdict) => verdict.nextTat,
  settle: (tat, now, _grantedAt, delta, p) => settleTokens(tat, now, delta, p),
  expiresAt: (tat) => tat,
  scheduleStepMs: (p) => p.intervalMs,
  // 1/n of the burst, refilled at 1/n of the rate.
  share: (limit, n) => ({ ...limit, capacity: shareOfCapacity(limit.capacity, n), intervalMs: limit.intervalMs * n }),
  redis: { code: 1, keys: ['|tb'], args: (p) => [p.intervalMs, p.capacity] },
};
