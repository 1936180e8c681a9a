// The embedded store: budgets in this process's memory, for a single sidecar or a first try
// with no Redis. Same semantics as the Redis store (one test suite runs against both). Bounded
// without ever refunding: only a scope whose state has expired is dropped (that changes nothing),
// and when maxKeys scopes all hold live budgets a new scope is refused, never one evicted.
import { costFor, type Limit, type Resource } from '../../config/policy.js';
import { decidingLimit } from '../../limits/combine.js';
import { algorithmOf } from '../../limits/registry.js';
import type { Verdict } from '../../limits/verdict.js';
import { ONCE_TTL_MS, type Grant, type LineEvents, type LineVerdict, type ScopeLook, type Store, type StoreVerdict, type TakeVerdict, type Ticket } from '../store.js';
import { MemoryLines } from './memory-line.js';

/** A limit's state, as its algorithm made it (limits/registry.ts): only that algorithm reads it. */
type LimitState = unknown;

interface ScopeEntry {
  /** What each state belongs to (limitTags): a state is only ever fed to the limit it was made for. */
  tags: readonly string[];
  /** The limits the entry was last fitted to, in the order of its states. */
  limits: readonly Limit[];
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

/** A request denied for those waiting ahead, with no token bucket to pace by, comes back after this at most. */
const LINED_RETRY_MS = 1_000;

/** When the table is full, expired scopes are looked for in all of it at most this often. */
const FULL_SWEEP_EVERY_MS = 1_000;
/** Expired scopes dropped from the least recently used end per new scope, at most. */
const EXPIRED_PER_NEW_SCOPE = 8;

export class MemoryStore implements Store {
  /** In least recently used order: a scope is moved to the end each time it is used. */
  private readonly scopes = new Map<string, ScopeEntry>();
  /** New scopes refused because maxKeys scopes held live budgets. */
  refusedScopes = 0;
  private lastSweep = Number.NEGATIVE_INFINITY;
  /** Settlements already applied, by id, until they can no longer be retried. */
  private readonly settled = new Map<string, number>();
  private readonly now: () => number;
  private readonly maxKeys: number;
  private readonly fullReason: string;
  private readonly sweeper: NodeJS.Timeout | undefined;
  private readonly lines: MemoryLines;

  constructor(options: MemoryStoreOptions) {
    this.now = options.now ?? Date.now;
    this.lines = new MemoryLines(this.now, (resource, scope, cost, permitId, usable, commit) => {
      const decided = this.decide(resource, scope, cost, undefined, permitId, 0, usable, commit);
      if (!decided) return this.full();
      const { verdicts, ...verdict } = decided;
      return verdict;
    });
    this.maxKeys = options.maxKeys;
    this.fullReason = `memory store full: ${options.maxKeys} scopes hold live budgets (store.max_keys)`;
    const every = options.sweepEveryMs ?? 10_000;
    if (every > 0) this.sweeper = setInterval(() => this.sweep(), every).unref();
  }

  get size(): number {
    return this.scopes.size;
  }

  async acquire(resource: Resource, scope: string, cost: number, permitId: string, usable = 1, priority = 0): Promise<StoreVerdict> {
    this.lines.serve(resource, scope);
    const first = this.lines.firstPriority(scope);
    const lined = first !== undefined && priority <= first;
    const decided = this.decide(resource, scope, cost, undefined, permitId, 0, usable, !lined);
    if (!decided) return this.full();
    const { verdicts, ...verdict } = decided;
    if (lined) return this.lined(resource, verdict, scope);
    return verdict;
  }

  join(resource: Resource, scope: string, ticket: Ticket, maxWaiters: number): Promise<LineVerdict> {
    return Promise.resolve(this.lines.join(resource, scope, ticket, maxWaiters));
  }

  retry(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return Promise.resolve(this.lines.retry(resource, scope, ticket));
  }

  leave(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return Promise.resolve(this.lines.leave(resource, scope, ticket));
  }

  /** Reads the scope's entry in place: it neither moves in the LRU order nor is made when absent. */
  async inspect(resource: Resource, scope: string): Promise<ScopeLook> {
    const now = this.now();
    const found = this.scopes.get(scope);
    const entry = found && found.expiresAt > now ? found : undefined;
    const tags = limitTags(resource);
    const limits = resource.limits.map((limit, i) => {
      const at = !entry ? -1 : entry.tags === tags ? i : entry.tags.indexOf(tags[i]!);
      const algorithm = algorithmOf(limit);
      const { remaining, resetAfterMs } = algorithm.take(at >= 0 ? entry!.states[at] : algorithm.initial(), now, 0, 0, limit);
      return { remaining, resetAfterMs: Math.max(0, resetAfterMs) };
    });
    return { limits, waiting: this.lines.waiting(scope) };
  }

  listen(_sidecarId: string, events: LineEvents): void {
    this.lines.listen(events);
  }

  /**
   * A verdict turned into a denial for the requests waiting ahead: come back about when they will
   * have been served, at the pace of the slowest token bucket; without one, when the window ends
   * or in a second (acquire.lua alike).
   */
  private lined(resource: Resource, verdict: StoreVerdict, scope: string): StoreVerdict {
    const waiting = this.lines.waiting(scope);
    const now = this.now();
    let interval = 0;
    let windowEndsInMs = LINED_RETRY_MS;
    for (const limit of resource.limits) {
      if (limit.algorithm === 'token_bucket') interval = Math.max(interval, limit.intervalMs);
      windowEndsInMs = Math.min(windowEndsInMs, algorithmOf(limit).windowEndsInMs?.(now, limit) ?? windowEndsInMs);
    }
    const hint = interval > 0 ? Math.ceil(waiting * interval) : Math.ceil(windowEndsInMs);
    const retryAfterMs = verdict.retryAfterMs === Number.POSITIVE_INFINITY ? verdict.retryAfterMs : Math.max(verdict.granted ? 0 : verdict.retryAfterMs, hint, 1);
    return { ...verdict, granted: false, retryAfterMs, reserved: verdict.granted ? false : verdict.reserved, waiting };
  }

  async take(resource: Resource, scope: string, cost: number, want: readonly number[], aheadMs: number, usable = 1): Promise<TakeVerdict> {
    const now = this.now();
    let windowEndsInMs = Number.POSITIVE_INFINITY;
    for (const limit of resource.limits) {
      const endsIn = algorithmOf(limit).windowEndsInMs?.(now, limit);
      if (endsIn !== undefined) windowEndsInMs = Math.min(windowEndsInMs, endsIn);
    }
    this.lines.serve(resource, scope);
    const lined = this.lines.waiting(scope) > 0;
    const decided = this.decide(resource, scope, cost, want, '', Math.min(aheadMs, windowEndsInMs), usable, !lined);
    if (!decided) {
      const none = resource.limits.map(() => 0);
      return { ...this.full(), taken: none, left: none, dueInMs: none, windowEndsInMs: Number.POSITIVE_INFINITY };
    }
    const { verdicts, ...decidedVerdict } = decided;
    const verdict = lined ? this.lined(resource, decidedVerdict, scope) : decidedVerdict;
    return {
      ...verdict,
      taken: verdicts.map((v) => (verdict.granted ? v.taken : 0)),
      left: verdicts.map((v) => v.remaining),
      dueInMs: verdicts.map((v) => (verdict.granted ? (v.dueInMs ?? 0) : 0)),
      windowEndsInMs,
    };
  }

  async release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    if (!this.once(grant.permitId)) return;
    this.settleEach(resource, scope, (limit, state, now) => {
      const algorithm = algorithmOf(limit);
      if (algorithm.release) algorithm.release(state, grant.permitId);
      else if (!limit.countsRequests && delta !== 0) return algorithm.settle(state, now, grant.grantedAt, delta, limit);
      return state;
    });
    this.lines.wake(scope);
  }

  async refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    if (!this.once(refundId)) return false;
    this.settleEach(resource, scope, (limit, state, now, i) => {
      const amount = units[i] ?? 0;
      return amount > 0 ? algorithmOf(limit).settle(state, now, takenAt, -amount, limit) : state;
    });
    this.lines.wake(scope);
    return true;
  }

  /**
   * Settles a grant made under `resource`, which a reloaded policy may have replaced since: each of
   * its limits settles the state kept under the limit's name and algorithm, if the scope still has
   * one, and the scope keeps the version it was fitted to (as the Redis store keeps a key per
   * limit). Re-fitting the scope to the old version would drop the state of limits added since.
   */
  private settleEach(resource: Resource, scope: string, settle: (limit: Limit, state: LimitState, now: number, i: number) => LimitState): void {
    const now = this.now();
    let entry = this.scopes.get(scope);
    if (entry && entry.expiresAt > now) {
      this.scopes.delete(scope);
      this.scopes.set(scope, entry);
    } else {
      // Refused only for a new scope in a full table: no slot to free, only an extra charge is lost.
      entry = this.entry(resource, scope, now);
      if (!entry) return;
    }
    const tags = limitTags(resource);
    for (let i = 0; i < tags.length; i++) {
      const at = entry.tags === tags ? i : entry.tags.indexOf(tags[i]!);
      if (at >= 0) entry.states[at] = settle(resource.limits[i]!, entry.states[at], now, i);
    }
    this.settleExpiry(scope, entry, entry.limits, now);
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
    this.lastSweep = now;
    for (const [scope, entry] of this.scopes) if (entry.expiresAt <= now) this.scopes.delete(scope);
    for (const [id, until] of this.settled) if (until <= now) this.settled.delete(id);
  }

  /** Decides over every limit; commits a grant only when `commit` (a check that changes nothing otherwise). */
  private decide(resource: Resource, scope: string, cost: number, want: readonly number[] | undefined, permitId: string, aheadMs: number, usable: number, commit = true) {
    const now = this.now();
    const entry = this.entry(resource, scope, now);
    if (!entry) return undefined;
    const verdicts: Verdict[] = resource.limits.map((limit, i) => {
      const need = costFor(limit, cost);
      return algorithmOf(limit).take(entry.states[i], now, need, Math.max(need, want?.[i] ?? need), limit, aheadMs, usable);
    });
    const decider = decidingLimit(verdicts);
    const granted = verdicts.every((v) => v.allowed);
    if (granted && commit) {
      resource.limits.forEach((limit, i) => {
        entry.states[i] = algorithmOf(limit).commit(entry.states[i], verdicts[i]!, now, permitId, limit);
      });
    }
    this.settleExpiry(scope, entry, resource.limits, now);
    const v = verdicts[decider]!;
    const reserved = v.reserved === true;
    return { granted, decider, remaining: v.remaining, retryAfterMs: v.retryAfterMs, resetAfterMs: v.resetAfterMs, now, reserved, verdicts };
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

  /** The denial for a request whose scope finds no room. */
  private full(): StoreVerdict {
    return {
      granted: false,
      decider: 0,
      remaining: 0,
      retryAfterMs: FULL_SWEEP_EVERY_MS,
      resetAfterMs: 0,
      now: this.now(),
      reason: this.fullReason,
    };
  }

  /**
   * The scope's entry, moved to the most recently used end; undefined when the scope is new and
   * every one of maxKeys scopes still holds live state (dropping one would refund its budget).
   */
  private entry(resource: Resource, scope: string, now: number): ScopeEntry | undefined {
    const tags = limitTags(resource);
    let entry = this.scopes.get(scope);
    if (entry) {
      this.scopes.delete(scope);
      if (entry.expiresAt <= now) entry = undefined;
      else if (entry.tags !== tags) adopt(entry, resource, tags);
    } else if (this.scopes.size >= this.maxKeys && !this.makeRoom(now)) {
      this.refusedScopes++;
      return undefined;
    }
    entry ??= { tags, limits: resource.limits, states: resource.limits.map((limit) => algorithmOf(limit).initial()), expiresAt: now };
    this.scopes.set(scope, entry);
    return entry;
  }

  /**
   * Drops expired scopes to make room for one: first from the least recently used end (cheap,
   * and where idle scopes gather), then, at most once per FULL_SWEEP_EVERY_MS, from the whole
   * table, so a full table of live budgets costs a new scope O(1), not a scan.
   */
  private makeRoom(now: number): boolean {
    for (let i = 0; i < EXPIRED_PER_NEW_SCOPE; i++) {
      const oldest = this.scopes.entries().next().value;
      if (!oldest || oldest[1].expiresAt > now) break;
      this.scopes.delete(oldest[0]);
    }
    if (this.scopes.size >= this.maxKeys && now - this.lastSweep >= FULL_SWEEP_EVERY_MS) this.sweep(now);
    return this.scopes.size < this.maxKeys;
  }

  /** Records when the entry's state is back to a fresh one; one that already is takes no room. */
  private settleExpiry(scope: string, entry: ScopeEntry, limits: readonly Limit[], now: number): void {
    entry.expiresAt = expiry(limits, entry.states);
    if (entry.expiresAt <= now) this.scopes.delete(scope);
  }
}

/** Per limit, its name and algorithm: what the Redis store names its keys by. Cached per resource. */
const tagCache = new WeakMap<Resource, readonly string[]>();

function limitTags(resource: Resource): readonly string[] {
  let tags = tagCache.get(resource);
  if (!tags) {
    tags = resource.limits.map((limit) => `${limit.name}|${limit.algorithm}`);
    tagCache.set(resource, tags);
  }
  return tags;
}

/**
 * Fits an entry made under another version of the resource (a reloaded policy, or the failure
 * policy's share of it): each limit keeps the state of the limit with its name and algorithm, if
 * there was one, and starts fresh otherwise, like the Redis store's keys.
 */
function adopt(entry: ScopeEntry, resource: Resource, tags: readonly string[]): void {
  const same = tags.length === entry.tags.length && tags.every((tag, i) => tag === entry.tags[i]);
  if (!same) {
    entry.states = tags.map((tag, i) => {
      const was = entry.tags.indexOf(tag);
      return was >= 0 ? entry.states[was] : algorithmOf(resource.limits[i]!).initial();
    });
  }
  entry.tags = tags;
  entry.limits = resource.limits;
}

/** The moment after which the scope's state equals a fresh one, so dropping it changes nothing. */
function expiry(limits: readonly Limit[], states: readonly LimitState[]): number {
  let at = 0;
  limits.forEach((limit, i) => {
    at = Math.max(at, algorithmOf(limit).expiresAt(states[i], limit));
  });
  return at;
}
