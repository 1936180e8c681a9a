// The embedded store: budgets in this process's memory, for a single sidecar or a first try
// with no Redis. Same semantics as the Redis store (one test suite runs against both). Bounded:
// a scope whose state has expired is dropped, and past maxKeys the least recently used goes.
import { costFor, type Limit, type Resource } from '../../config/policy.js';
import { decidingLimit } from '../../limits/combine.js';
import { checkConcurrency, holdPermit, reclaimExpired, releasePermit, type ConcurrencyState } from '../../limits/concurrency.js';
import { settleFixedWindow, takeFixedWindow, type FixedWindowState } from '../../limits/fixed-window.js';
import { settleSlidingWindow, takeSlidingWindow, type SlidingWindowState } from '../../limits/sliding-window.js';
import { settleTokens, takeTokens } from '../../limits/token-bucket.js';
import type { Verdict } from '../../limits/verdict.js';
import type { Grant, Store, StoreVerdict } from '../store.js';

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
    const now = this.now();
    const entry = this.entry(resource, scope, now);
    const verdicts: Verdict[] = resource.limits.map((limit, i) => check(limit, entry.states[i]!, now, costFor(limit, cost)));
    const decider = decidingLimit(verdicts);
    const granted = verdicts.every((v) => v.allowed);
    if (granted) {
      resource.limits.forEach((limit, i) => {
        entry.states[i] = commit(limit, entry.states[i]!, verdicts[i]!, now, permitId, costFor(limit, cost));
      });
      entry.expiresAt = expiry(resource.limits, entry.states);
    }
    const v = verdicts[decider]!;
    return { granted, decider, remaining: v.remaining, retryAfterMs: v.retryAfterMs, resetAfterMs: v.resetAfterMs, now };
  }

  async release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    const now = this.now();
    const entry = this.entry(resource, scope, now);
    resource.limits.forEach((limit, i) => {
      const state = entry.states[i]!;
      if (limit.countsRequests && limit.algorithm !== 'concurrency') return;
      switch (limit.algorithm) {
        case 'token_bucket':
          if (delta !== 0) entry.states[i] = settleTokens(state as number, now, delta, limit);
          break;
        case 'fixed_window':
          if (delta !== 0) entry.states[i] = settleFixedWindow(state as FixedWindowState, now, grant.grantedAt, delta, limit);
          break;
        case 'sliding_window':
          if (delta !== 0) entry.states[i] = settleSlidingWindow(state as SlidingWindowState, now, grant.grantedAt, delta, limit);
          break;
        case 'concurrency':
          releasePermit(state as ConcurrencyState, grant.permitId);
          break;
      }
    });
    entry.expiresAt = expiry(resource.limits, entry.states);
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.scopes.clear();
  }

  /** Drops every scope whose state has fully expired. */
  sweep(now = this.now()): void {
    for (const [scope, entry] of this.scopes) if (entry.expiresAt <= now) this.scopes.delete(scope);
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

function check(limit: Limit, state: LimitState, now: number, cost: number): Verdict {
  switch (limit.algorithm) {
    case 'token_bucket':
      return takeTokens(state as number, now, cost, limit);
    case 'fixed_window':
      return takeFixedWindow(state as FixedWindowState, now, cost, limit);
    case 'sliding_window':
      return takeSlidingWindow(state as SlidingWindowState, now, cost, limit);
    case 'concurrency':
      reclaimExpired(state as ConcurrencyState, now);
      return checkConcurrency(state as ConcurrencyState, now, cost, limit);
  }
}

function commit(limit: Limit, state: LimitState, verdict: Verdict, now: number, permitId: string, cost: number): LimitState {
  switch (limit.algorithm) {
    case 'token_bucket':
      return (verdict as ReturnType<typeof takeTokens>).nextTat;
    case 'fixed_window':
      return (verdict as ReturnType<typeof takeFixedWindow>).next;
    case 'sliding_window':
      return (verdict as ReturnType<typeof takeSlidingWindow>).next;
    case 'concurrency':
      holdPermit(state as ConcurrencyState, now, permitId, cost, limit);
      return state;
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
