// GCRA, the token bucket kept as one number: the theoretical arrival time (TAT) at which the
// bucket would be full again. A request of `cost` units moves the TAT by cost x interval and is
// allowed when the new TAT is at most `capacity` (burst) intervals ahead of now.
import { shareOfCapacity, type Algorithm } from './algorithm.js';
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

/** `tat` is the stored TAT, or 0 for a key never seen (a full bucket). */
export function takeTokens(tat: number, now: number, cost: number, p: TokenBucketParams, want = cost): TokenBucketVerdict {
  const base = Math.max(tat, now);
  const window = p.capacity * p.intervalMs;
  const available = units(now + window - base, p);
  if (cost > p.capacity) {
    return { allowed: false, taken: 0, remaining: available, retryAfterMs: NEVER, resetAfterMs: base - now, nextTat: tat };
  }
  const allowAt = base + cost * p.intervalMs - window;
  if (allowAt > now + EPSILON) {
    return { allowed: false, taken: 0, remaining: available, retryAfterMs: allowAt - now, resetAfterMs: base - now, nextTat: tat };
  }
  const taken = Math.max(cost, Math.min(want, available));
  const nextTat = base + taken * p.intervalMs;
  return { allowed: true, taken, remaining: units(now + window - nextTat, p), retryAfterMs: 0, resetAfterMs: nextTat - now, nextTat };
}

/**
 * Settles a granted request's real cost: a negative delta refunds (never past a full bucket), a
 * positive one charges the extra, at most to an empty bucket (TAT now + burst x interval). A
 * larger charge would lock the key for longer than the limit's own horizon: a settlement can
 * drain a limit, never more.
 */
export function settleTokens(tat: number, now: number, delta: number, p: TokenBucketParams): number {
  const settled = Math.max(tat, now) + delta * p.intervalMs;
  return Math.min(Math.max(settled, now), now + p.capacity * p.intervalMs);
}

function units(ms: number, p: TokenBucketParams): number {
  return Math.max(0, Math.floor(ms / p.intervalMs + EPSILON));
}

/** The state is the TAT; 0 (a full bucket) for a key never seen, and again once the TAT has passed. */
export const tokenBucket: Algorithm<TokenBucketParams, number, TokenBucketVerdict> = {
  name: 'token_bucket',
  initial: () => 0,
  take: (tat, now, need, want, p) => takeTokens(tat, now, need, p, want),
  commit: (_tat, verdict) => verdict.nextTat,
  settle: (tat, now, _grantedAt, delta, p) => settleTokens(tat, now, delta, p),
  expiresAt: (tat) => tat,
  // 1/n of the burst, refilled at 1/n of the rate.
  share: (limit, n) => ({ ...limit, capacity: shareOfCapacity(limit.capacity, n), intervalMs: limit.intervalMs * n }),
  redis: { code: 1, keys: ['|tb'], args: (p) => [p.intervalMs, p.capacity] },
};
