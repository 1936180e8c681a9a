// Concurrency permits: at most `capacity` units held at once. Every permit carries an expiry,
// so a holder that dies without releasing is reclaimed once its ttl has passed.
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

/** Permits in expiry order (the ttl is fixed per limit, so this is also grant order). */
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
export function checkConcurrency(state: ConcurrencyState, now: number, cost: number, p: ConcurrencyParams): Verdict {
  const lastExpiry = state.permits.length > 0 ? state.permits[state.permits.length - 1]!.expiresAt : now;
  if (cost > p.capacity) {
    return { allowed: false, taken: 0, remaining: p.capacity - state.held, retryAfterMs: NEVER, resetAfterMs: lastExpiry - now };
  }
  if (state.held + cost > p.capacity) {
    return { allowed: false, taken: 0, remaining: p.capacity - state.held, retryAfterMs: untilFreed(state, now, cost, p), resetAfterMs: lastExpiry - now };
  }
  return { allowed: true, taken: cost, remaining: p.capacity - state.held - cost, retryAfterMs: 0, resetAfterMs: p.ttlMs };
}

export function holdPermit(state: ConcurrencyState, now: number, id: string, cost: number, p: ConcurrencyParams): void {
  state.permits.push({ id, cost, expiresAt: now + p.ttlMs });
  state.held += cost;
}

/** True when the permit was held (and is now freed). */
export function releasePermit(state: ConcurrencyState, id: string): boolean {
  const at = state.permits.findIndex((permit) => permit.id === id);
  if (at < 0) return false;
  state.held -= state.permits[at]!.cost;
  state.permits.splice(at, 1);
  return true;
}

/** When enough held permits will have expired for `cost` to fit, if none is released first. */
function untilFreed(state: ConcurrencyState, now: number, cost: number, p: ConcurrencyParams): number {
  let held = state.held;
  for (const permit of state.permits) {
    held -= permit.cost;
    if (held + cost <= p.capacity) return permit.expiresAt - now;
  }
  return NEVER;
}
