// The embedded store: budgets in this process's memory, for a single sidecar or a first try
// with no Redis. Same semantics as the Redis store (one test suite runs against both). Bounded:
// a scope whose state has expired is dropped, and past maxKeys the least recently used goes.
import { costFor, type Limit, type Resource } from '../../config/policy.js';
import { decidingLimit } from '../../limits/combine.js';
import { checkConcurrency, holdPermit, reclaimExpired, releasePermit, type ConcurrencyState } from '../../limits/concurrency.js';
import { settleFixedWindow, takeFixedWindow, windowIndex, type FixedWindowState } from '../../limits/fixed-window.js';
import { settleSlidingWindow, takeSlidingWindow, type SlidingWindowState } from '../../limits/sliding-window.js';
import { settleTokens, takeTokens } from '../../limits/token-bucket.js';
import type { Verdict } from '../../limits/verdict.js';
import { ONCE_TTL_MS, type Grant, type Store, type StoreVerdict, type TakeVerdict } from '../store.js';

type LimitState = number | FixedWindowState | SlidingWindowState | ConcurrencyState;

interface ScopeEntry {
  states: LimitState[];
  /** When every state is back to its initial value, so the entry can be dropped. */
  expiresAt: number;
}

export interface MemoryStoreOptions {
  maxKeys: number;
  now?: () => number;
  /** How often expired scopes are swept; 0 disables the timer (tests sweep by hand). */
  sweepEveryMs?: number;
}

export class MemoryStore implements Store {
  private readonly scopes = new Map<string, ScopeEntry>();
  /** Settlements already applied, by id, until they can no longer be retried. */
  private readonly settled = new Map<string, number>();
  private readonly now: () => number;
  private readonly maxKeys: number;
  private readonly sweeper: NodeJS.Timeout | undefined;

  constructor(options: MemoryStoreOptions) {
    this.now = options.now ?? Date.now;
    this.maxKeys = options.maxKeys;
    const every = options.sweepEveryMs ?? 10_000;
    if (every > 0) this.sweeper = setInterval(() => this.sweep(), every).unref();
  }

  get size(): number {
    return this.scopes.size;
  }

  async acquire(resource: Resource, scope: string, cost: number, permitId: string): Promise<StoreVerdict> {
    const { verdicts, ...verdict } = this.decide(resource, scope, cost, undefined, permitId);
    return verdict;
  }

  async take(resource: Resource, scope: string, cost: number, want: readonly number[]): Promise<TakeVerdict> {
    const { verdicts, ...verdict } = this.decide(resource, scope, cost, want, '');
    let windowEndsInMs = Number.POSITIVE_INFINITY;
    for (const limit of resource.limits) {
      if (limit.algorithm === 'fixed_window' || limit.algorithm === 'sliding_window') {
        windowEndsInMs = Math.min(windowEndsInMs, (windowIndex(verdict.now, limit.periodMs) + 1) * limit.periodMs - verdict.now);
      }
    }
    return {
      ...verdict,
      taken: verdicts.map((v) => (verdict.granted ? v.taken : 0)),
      left: verdicts.map((v) => v.remaining),
      windowEndsInMs,
    };
  }

  async release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    if (!this.once(grant.permitId)) return;
    const now = this.now();
    const entry = this.entry(resource, scope, now);
    resource.limits.forEach((limit, i) => {
      if (limit.algorithm === 'concurrency') releasePermit(entry.states[i] as ConcurrencyState, grant.permitId);
      else if (!limit.countsRequests && delta !== 0) entry.states[i] = settle(limit, entry.states[i]!, now, grant.grantedAt, delta);
    });
    entry.expiresAt = expiry(resource.limits, entry.states);
  }

  async refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    if (!this.once(refundId)) return false;
    const now = this.now();
    const entry = this.entry(resource, scope, now);
    resource.limits.forEach((limit, i) => {
      const amount = units[i] ?? 0;
      if (limit.algorithm !== 'concurrency' && amount > 0) entry.states[i] = settle(limit, entry.states[i]!, now, takenAt, -amount);
    });
    entry.expiresAt = expiry(resource.limits, entry.states);
    return true;
  }

  /** One process, one sidecar. */
  async heartbeat(): Promise<number> {
    return 1;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.scopes.clear();
    this.settled.clear();
  }

  /** Drops every scope whose state has fully expired, and settlement ids past their ttl. */
  sweep(now = this.now()): void {
    for (const [scope, entry] of this.scopes) if (entry.expiresAt <= now) this.scopes.delete(scope);
    for (const [id, until] of this.settled) if (until <= now) this.settled.delete(id);
  }

  private decide(resource: Resource, scope: string, cost: number, want: readonly number[] | undefined, permitId: string) {
    const now = this.now();
    const entry = this.entry(resource, scope, now);
    const verdicts: Verdict[] = resource.limits.map((limit, i) => {
      const need = costFor(limit, cost);
      return check(limit, entry.states[i]!, now, need, Math.max(need, want?.[i] ?? need));
    });
    const decider = decidingLimit(verdicts);
    const granted = verdicts.every((v) => v.allowed);
    if (granted) {
      resource.limits.forEach((limit, i) => {
        entry.states[i] = commit(limit, entry.states[i]!, verdicts[i]!, now, permitId);
      });
      entry.expiresAt = expiry(resource.limits, entry.states);
    }
    const v = verdicts[decider]!;
    return { granted, decider, remaining: v.remaining, retryAfterMs: v.retryAfterMs, resetAfterMs: v.resetAfterMs, now, verdicts };
  }

  /** True the first time an id is seen within ONCE_TTL_MS. */
  private once(id: string): boolean {
    if (id === '') return true;
    const now = this.now();
    const until = this.settled.get(id);
    if (until !== undefined && until > now) return false;
    this.settled.set(id, now + ONCE_TTL_MS);
    return true;
  }

  private entry(resource: Resource, scope: string, now: number): ScopeEntry {
    let entry = this.scopes.get(scope);
    if (entry && entry.expiresAt > now && entry.states.length === resource.limits.length) {
      // Move to the back of the map's order: the front is then the least recently used.
      this.scopes.delete(scope);
    } else {
      entry = { states: resource.limits.map(initialState), expiresAt: now };
    }
    this.scopes.set(scope, entry);
    if (this.scopes.size > this.maxKeys) this.scopes.delete(this.scopes.keys().next().value!);
    return entry;
  }
}

function initialState(limit: Limit): LimitState {
  switch (limit.algorithm) {
    case 'token_bucket':
      return 0;
    case 'fixed_window':
      return { window: -1, count: 0 };
    case 'sliding_window':
      return { window: -2, current: 0, previous: 0 };
    case 'concurrency':
      return { held: 0, permits: [] };
  }
}

function check(limit: Limit, state: LimitState, now: number, need: number, want: number): Verdict {
  switch (limit.algorithm) {
    case 'token_bucket':
      return takeTokens(state as number, now, need, limit, want);
    case 'fixed_window':
      return takeFixedWindow(state as FixedWindowState, now, need, limit, want);
    case 'sliding_window':
      return takeSlidingWindow(state as SlidingWindowState, now, need, limit, want);
    case 'concurrency':
      reclaimExpired(state as ConcurrencyState, now);
      return checkConcurrency(state as ConcurrencyState, now, need, limit);
  }
}

function commit(limit: Limit, state: LimitState, verdict: Verdict, now: number, permitId: string): LimitState {
  switch (limit.algorithm) {
    case 'token_bucket':
      return (verdict as ReturnType<typeof takeTokens>).nextTat;
    case 'fixed_window':
      return (verdict as ReturnType<typeof takeFixedWindow>).next;
    case 'sliding_window':
      return (verdict as ReturnType<typeof takeSlidingWindow>).next;
    case 'concurrency':
      holdPermit(state as ConcurrencyState, now, permitId, verdict.taken, limit);
      return state;
  }
}

function settle(limit: Exclude<Limit, { algorithm: 'concurrency' }>, state: LimitState, now: number, grantedAt: number, delta: number): LimitState {
  switch (limit.algorithm) {
    case 'token_bucket':
      return settleTokens(state as number, now, delta, limit);
    case 'fixed_window':
      return settleFixedWindow(state as FixedWindowState, now, grantedAt, delta, limit);
    case 'sliding_window':
      return settleSlidingWindow(state as SlidingWindowState, now, grantedAt, delta, limit);
  }
}

/** The moment after which the scope's state equals a fresh one, so dropping it changes nothing. */
function expiry(limits: readonly Limit[], states: readonly LimitState[]): number {
  let at = 0;
  limits.forEach((limit, i) => {
    const state = states[i]!;
    switch (limit.algorithm) {
      case 'token_bucket':
        at = Math.max(at, state as number);
        break;
      case 'fixed_window':
        at = Math.max(at, ((state as FixedWindowState).window + 1) * limit.periodMs);
        break;
      case 'sliding_window':
        at = Math.max(at, ((state as SlidingWindowState).window + 2) * limit.periodMs);
        break;
      case 'concurrency': {
        const permits = (state as ConcurrencyState).permits;
        if (permits.length > 0) at = Math.max(at, permits[permits.length - 1]!.expiresAt);
        break;
      }
    }
  });
  return at;
}
