// Concurrency permits: at most `capacity` units held at once. Every permit carries an expiry,
// so a holder that dies without releasing is reclaimed once its ttl has passed.
// Reserve: a request that may use only `usable` of the limit fits when held + cost <=
// usableUnits(capacity, usable); the rest of the permits are for higher priorities.
import { shareOfCapacity, usableUnits, type Algorithm } from './algorithm.js';
import { NEVER, type Verdict } from './verdict.js';

export interface ConcurrencyParams {
  capacity: number;
  ttlMs: number;
}

export interface HeldPermit {
  id: string;
  cost: number;
  expiresAt: number;
}

/**
 * Permits in expiry order (kept so on insert: a reloaded policy may change the ttl), so that
 * reclaiming and finding when room frees up read only the front of the list.
 */
export interface ConcurrencyState {
  held: number;
  permits: HeldPermit[];
}

/** Drops the permits whose ttl has passed. Mutates: the state is the store's own. */
export function reclaimExpired(state: ConcurrencyState, now: number): void {
  let expired = 0;
  while (expired < state.permits.length && state.permits[expired]!.expiresAt <= now) {
    state.held -= state.permits[expired]!.cost;
    expired++;
  }
  if (expired > 0) state.permits.splice(0, expired);
}

/** Call after reclaimExpired. Slots are never leased: a grant takes exactly its cost. */
export function checkConcurrency(state: ConcurrencyState, now: number, cost: number, p: ConcurrencyParams, usable = 1): Verdict {
  const lastExpiry = state.permits.length > 0 ? state.permits[state.permits.length - 1]!.expiresAt : now;
  const capacity = usableUnits(p.capacity, usable);
  const remaining = Math.max(0, capacity - state.held);
  if (cost > capacity) {
    return { allowed: false, taken: 0, remaining, retryAfterMs: NEVER, resetAfterMs: lastExpiry - now, reserved: cost <= p.capacity };
  }
  if (state.held + cost > capacity) {
    const reserved = state.held + cost <= p.capacity;
    return { allowed: false, taken: 0, remaining, retryAfterMs: untilFreed(state, now, cost, capacity), resetAfterMs: lastExpiry - now, reserved };
  }
  // A take of nothing (a look at the state) holds no slot: the limit is full again when the last held one expires.
  return { allowed: true, taken: cost, remaining: capacity - state.held - cost, retryAfterMs: 0, resetAfterMs: cost > 0 ? p.ttlMs : lastExpiry - now };
}

export function holdPermit(state: ConcurrencyState, now: number, id: string, cost: number, p: ConcurrencyParams): void {
  const expiresAt = now + p.ttlMs;
  state.permits.splice(insertionPoint(state.permits, expiresAt), 0, { id, cost, expiresAt });
  state.held += cost;
}

/** After every permit expiring at or before `expiresAt`: a binary search (mostly the end). */
function insertionPoint(permits: readonly HeldPermit[], expiresAt: number): number {
  let low = 0;
  let high = permits.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (permits[mid]!.expiresAt <= expiresAt) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** True when the permit was held (and is now freed). */
export function releasePermit(state: ConcurrencyState, id: string): boolean {
  const at = state.permits.findIndex((permit) => permit.id === id);
  if (at < 0) return false;
  state.held -= state.permits[at]!.cost;
  state.permits.splice(at, 1);
  return true;
}

/**
 * When enough held permits will have expired for `cost` to fit under `capacity` (the part of the
 * limit the request may use), if none is released first. Reads only the soonest to expire, and at
 * most as many as units are lacking (each holds one or more).
 */
function untilFreed(state: ConcurrencyState, now: number, cost: number, capacity: number): number {
  let held = state.held;
  for (const permit of state.permits) {
    held -= permit.cost;
    if (held + cost <= capacity) return permit.expiresAt - now;
  }
  return NEVER;
}

export const concurrency: Algorithm<ConcurrencyParams, ConcurrencyState> = {
  name: 'concurrency',
  initial: () => ({ held: 0, permits: [] }),
  take: (state, now, need, _want, p, _aheadMs, usable) => {
    reclaimExpired(state, now);
    return checkConcurrency(state, now, need, p, usable);
  },
  commit: (state, verdict, now, permitId, p) => {
    holdPermit(state, now, permitId, verdict.taken, p);
    return state;
  },
  // Slots are freed by release, never settled in units.
  settle: (state) => state,
  expiresAt: (state) => (state.permits.length > 0 ? state.permits[state.permits.length - 1]!.expiresAt : 0),
  share: (limit, n) => ({ ...limit, capacity: shareOfCapacity(limit.capacity, n) }),
  release: releasePermit,
  // The permits (members "<units>:<permit id>" scored by expiry), then their held total.
  redis: { code: 4, keys: ['|cc', '|cc|held'], args: (p) => [p.ttlMs, p.capacity] },
};
