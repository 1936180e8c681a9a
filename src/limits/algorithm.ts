// What the stores know about an algorithm, all of it in the algorithm's own file: its math, its
// state's initial value and expiry, and what the Redis scripts need. The stores iterate the
// registry (registry.ts) instead of switching, so a new algorithm is one new file here, its entry
// in the registry and its branch in the Lua scripts.
import type { Verdict } from './verdict.js';

/** The numbers every limit has, whatever its algorithm. */
export interface LimitParams {
  /** Units: the burst, the count per window, the permits held at once. */
  capacity: number;
}

export interface Algorithm<Params extends LimitParams, State, V extends Verdict = Verdict> {
  /** As policy files spell it. */
  readonly name: string;
  /** The state of a key never seen (or fully expired). */
  initial(): State;
  /**
   * Whether `need` units fit now, and how many of `want` (a lease block, at least `need`) it would
   * take. Changes nothing that commit would not (slot algorithms may drop what has expired).
   * Algorithms with a schedule (scheduleStepMs) may lease units that fall due up to `aheadMs`
   * from now; the others ignore it. `usable` (0 < usable <= 1, default 1) is the fraction of the
   * limit this request may use: the rest is reserved for higher priorities (usableUnits rounds
   * it), and the verdict's remaining and retryAfterMs are as this request sees the limit.
   */
  take(state: State, now: number, need: number, want: number, p: Params, aheadMs?: number, usable?: number): V;
  /** The state after a granted take; `permitId` names the slot taken, for algorithms that hold them. */
  commit(state: State, verdict: V, now: number, permitId: string, p: Params): State;
  /**
   * After the fact: `delta` more units (a refund when negative) for a grant made at `grantedAt`
   * (store time), which finds the window it charged. Never past full, never past empty.
   */
  settle(state: State, now: number, grantedAt: number, delta: number, p: Params): State;
  /** The moment from which the state equals initial() again, so dropping it changes nothing. */
  expiresAt(state: State, p: Params): number;
  /** The limit with 1/n of its budget: one sidecar's share while the store is away. */
  share<L extends Params>(limit: L, n: number): L;
  /**
   * For algorithms whose units fall due one by one (a schedule): ms between units. A lease may
   * hold such units before they are due, and serves each no sooner (its verdict's dueInMs).
   */
  scheduleStepMs?(p: Params): number;
  /** For window algorithms: ms from `now` until the window closes (leased units must not outlive it). */
  windowEndsInMs?(now: number, p: Params): number;
  /**
   * For algorithms that hold slots (freed by Release, reclaimed after a ttl, never leased): frees
   * the slot a permit holds; true when it was held.
   */
  release?(state: State, permitId: string): boolean;
  readonly redis: RedisShape<Params>;
}

/** What the Redis scripts need for an algorithm (see the ARGV contract in acquire.lua). */
export interface RedisShape<Params> {
  /** The algorithm's number in the scripts' ARGV: its branch in acquire.lua and settle.lua. */
  readonly code: number;
  /**
   * The suffixes of a limit's keys, after its name, in the order the scripts read them. The first
   * names the algorithm (`rpm|tb`), so a limit whose algorithm changes starts on fresh keys.
   */
  readonly keys: readonly string[];
  /** The two numbers a and b of the limit's ARGV. */
  args(p: Params): [number, number];
}

/**
 * The units of `capacity` a request may use when only the fraction `usable` of it is its to use:
 * floored, so that what is held back is never less than the reserve says. The slack only absorbs
 * the rounding error of 1 - a sum of fractions (0.7 x 10 = 6.9999...).
 */
export function usableUnits(capacity: number, usable: number): number {
  return usable >= 1 ? capacity : Math.floor(capacity * usable + 1e-9);
}

/** A share of a capacity: at least one unit. */
export function shareOfCapacity(capacity: number, n: number): number {
  return Math.max(1, Math.floor(capacity / n));
}
