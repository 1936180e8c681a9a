// The contract every store keeps. A store holds the budgets; it is told a resource (its limits),
// the scope (which budget of that resource) and a cost, and decides atomically over all limits.
import type { Resource } from '../config/policy.js';

export interface StoreVerdict {
  granted: boolean;
  /** Index into resource.limits of the limit that decided. */
  decider: number;
  remaining: number;
  /** Infinity when the cost can never be granted. */
  retryAfterMs: number;
  resetAfterMs: number;
  /** The store's clock at the decision; a later settlement needs it to find the charged window. */
  now: number;
  /** Why the store denied when no limit did (the memory store full of live budgets). */
  reason?: string;
  /** The deciding limit denied only because of the part reserved for higher priorities. */
  reserved?: boolean;
  /** Denied because this many requests wait in the scope's line ahead of it. */
  waiting?: number;
}

/** A take for a lease: what each limit gave and has left, in policy order. */
export interface TakeVerdict extends StoreVerdict {
  /** Units taken from each limit (all 0 when not granted). */
  taken: number[];
  /** Units each limit has left after the take (due now, for a limit with a schedule). */
  left: number[];
  /**
   * Per limit, ms from `now` until the first unit taken falls due (0 or less: at once); the rest
   * follow one scheduleStepMs apart (limits/algorithm.ts). 0 for limits without a schedule.
   */
  dueInMs: number[];
  /** Milliseconds from `now` until the soonest window of a window limit closes (Infinity if none). */
  windowEndsInMs: number;
}

/**
 * A request that may wait, as it asks to join its scope's line. The line serves the highest
 * priority first; among lanes whose first tickets share it, the lane served least for its share;
 * then the earliest arrival, by the store's clock, across every sidecar.
 */
export interface Ticket {
  /** Unique across sidecars: "<sidecar>.<n>"; that sidecar hears about it (LineEvents). */
  id: string;
  cost: number;
  priority: number;
  /** The fraction of every limit it may use (config/policy.ts usableFraction of its priority). */
  usable: number;
  /** Its lane, 1-based (1 for a resource without lanes). */
  lane: number;
  /** Names the slot a concurrency limit gives it; empty when none is to be held. */
  permitId: string;
  /** How long it may wait, ms: then the store drops it. */
  waitMs: number;
}

export type LineState = 'granted' | 'waiting' | 'full' | 'never' | 'gone';

/** What the line says of a ticket: served now, still waiting, or why it is not in line. */
export interface LineVerdict extends StoreVerdict {
  /**
   * granted: served (charged); waiting: in line; full: the scope's line holds maxWaiters already;
   * never: denied at once, not kept (the cost can never fit: retryAfterMs Infinity; or the store
   * has no room for the scope: `reason` says so); gone: not in line (it was dropped, or it left).
   */
  state: LineState;
  /** The ticket as the store holds it: what to ask again or leave with. Empty unless waiting. */
  ticket: string;
  /** When waiting and first in line: ms until it fits. Infinity: unknown (it will be told). */
  turnInMs: number;
  /** Tickets waiting in the scope's line after the call. */
  waiting: number;
}

/** What the store tells a sidecar about its tickets, and every sidecar about lines that form. */
export interface LineEvents {
  /** Another call served the ticket (verdict.granted: charged), or found it can never fit. */
  answered(ticketId: string, verdict: StoreVerdict): void;
  /** The ticket is first in line and fits in `inMs`: ask again then. */
  turn(ticketId: string, inMs: number): void;
  /** Budget came back to the ticket's scope while it was first in its lane: ask again now. */
  wake(ticketId: string): void;
  /** Requests began to wait in the scope's line: no lease may serve ahead of them. */
  formed(scope: string): void;
  /** Messages may have been lost (the connection that hears them was lost and is back). */
  resync(): void;
}

/** One limit of a scope, as a request would find it now (Inspect). */
export interface LimitLook {
  /** Units a request could take now (usable 1: the reserve included). */
  remaining: number;
  /** Milliseconds until the limit is full again if nothing more is taken; 0 when full. */
  resetAfterMs: number;
}

/** A scope as the store holds it, read without charging anything. */
export interface ScopeLook {
  /** Per limit of the resource, in policy order. */
  limits: LimitLook[];
  /** Tickets waiting in the scope's line. */
  waiting: number;
}

/** A grant that can still be released or settled. */
export interface Grant {
  /** Member of every concurrency limit's permit set. */
  permitId: string;
  cost: number;
  grantedAt: number;
}

export interface Store {
  /**
   * All-or-nothing over resource.limits: either every limit is charged `cost`, or none is.
   * `permitId` names the concurrency slot taken when granted. `usable` is the fraction of every
   * limit the request may use (config/policy.ts usableFraction; 1, all of it, when absent). With
   * requests waiting in the scope's line it is granted only when its `priority` (default 0) is
   * above all of theirs (`waiting` says how many it was denied for).
   */
  acquire(resource: Resource, scope: string, cost: number, permitId: string, usable?: number, priority?: number): Promise<StoreVerdict>;
  /**
   * Like acquire, for a lease: granted when `cost` fits every limit, and then takes up to
   * `want[i]` units (at least the cost) from limit i. A limit with a schedule (a token bucket)
   * counts units that fall due within `aheadMs` of now as fitting, but never past the end of a
   * window limit of the resource. Only for resources with no concurrency limit. `usable` as for
   * acquire. Never granted while requests wait in the scope's line.
   */
  take(resource: Resource, scope: string, cost: number, want: readonly number[], aheadMs: number, usable?: number): Promise<TakeVerdict>;
  /**
   * Frees the grant's concurrency slots and charges `delta` more units (a refund when negative)
   * to its rate limits. Applied at most once per permit id.
   */
  release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void>;
  /**
   * Gives leased units back: `units[i]` to limit i, into the window they were taken from
   * (`takenAt`, store time) while it is open. Applied at most once per refundId, so a retried
   * refund never refunds twice; false when it had been applied already.
   */
  refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean>;
  /**
   * Joins the scope's line, and serves it: the ticket is granted at once when nobody waits ahead
   * of it and it fits. Past maxWaiters tickets in the line, it is not kept ('full').
   */
  join(resource: Resource, scope: string, ticket: Ticket, maxWaiters: number): Promise<LineVerdict>;
  /** Asks again for a ticket in line (after a turn, a wake, or a lost message), serving the line. */
  retry(resource: Resource, scope: string, ticket: string): Promise<LineVerdict>;
  /**
   * Takes the ticket out of the line ('gone'). A ticket served before it left answers 'granted':
   * its grant must be given back by whoever gives up on it.
   */
  leave(resource: Resource, scope: string, ticket: string): Promise<LineVerdict>;
  /**
   * The scope's limits and line as they are, charging nothing and serving nobody. A scope never
   * seen is full, and looking at it stores nothing.
   */
  inspect(resource: Resource, scope: string): Promise<ScopeLook>;
  /** Where this sidecar hears about its tickets and about lines that form. */
  listen(sidecarId: string, events: LineEvents): void;
  /** Says this sidecar is alive; answers how many sidecars share the store, this one included. */
  heartbeat(sidecarId: string, ttlMs: number): Promise<number>;
  /** Resolves when the store answers. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The store failed a call: it was silent (StoreTimeout), lost its connection, refused the work
 * (NOAUTH, NOPERM, OOM, READONLY, ...) or a script failed on the call (ScriptError). Only these
 * are store failures; anything else a store throws is a bug in sluice, never met by
 * on_store_failure nor counted against the store.
 */
export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
  }
}

/** One judgement that the store was silent; every command it failed shares it. */
export class Silence {
  constructor(readonly message: string) {}
}

/**
 * The store said nothing for the whole deadline. The command may still run: `late` settles with
 * the store's answer if it comes after all (rejects if it never does), so that what was decided
 * without it can be reconciled.
 */
export class StoreTimeout extends StoreError {
  constructor(
    message: string,
    readonly late: Promise<unknown>,
    /** The judgement this timeout came from: many commands, one piece of evidence. */
    readonly silence: Silence,
  ) {
    super(message);
    this.name = 'StoreTimeout';
    // Nobody may be listening for the late answer: never an unhandled rejection.
    late.catch(() => undefined);
  }

  /** The same timeout, its late answer read by `map`. */
  map(map: (late: unknown) => unknown): StoreTimeout {
    return new StoreTimeout(this.message, this.late.then(map), this.silence);
  }
}

/**
 * A script failed on what one call gave it or met, not because the store is unwell: that call's
 * error only, never evidence against the store.
 */
export class ScriptError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ScriptError';
  }
}

/** How long a settlement's once-marker lasts: longer than any retry of it. */
export const ONCE_TTL_MS = 60_000;
