// The decision vocabulary: what a request asks and what sluice answers. Everything that decides
// (the store path, leases, the failure policy) speaks it, so it imports nothing that decides.
import type { Limit, Resource } from '../config/policy.js';
import type { StoreVerdict } from '../store/store.js';

/** Who decided, as AcquireResponse.decided_by names it. */
export const DECIDED_BY = ['LEASE', 'STORE', 'FAIL_OPEN', 'FAIL_CLOSED', 'LOCAL_FALLBACK'] as const;
export type DecidedBy = (typeof DECIDED_BY)[number];

export interface AcquireInput {
  resource: Resource;
  /** From scopeOf(resource, values). */
  scope: string;
  /** Units, at least 1. */
  cost: number;
  /**
   * Higher is more important; the resource's reserve decides how much of each limit it may use
   * (usableFraction). Envoy traffic has none: 0.
   */
  priority: number;
  /** Present when it may wait for a grant (max_wait > 0); absent, it is answered at once. */
  wait?: WaitTerms;
}

/** How a request may wait in its scope's line. */
export interface WaitTerms {
  /** Longest wait, ms, > 0. */
  maxWaitMs: number;
  /** Its lane of the resource, 1-based (1 when the resource has none). */
  lane: number;
  /** Aborted when its caller goes away: it leaves the line, charged nothing. */
  signal: AbortSignal | null;
}

export interface Decision {
  granted: boolean;
  /** Empty unless the grant can be released or settled. */
  permitId: string;
  /** Infinity when the cost can never be granted; 0 on grants. */
  retryAfterMs: number;
  remaining: number;
  limit: number;
  resetAfterMs: number;
  limitName: string;
  decidedBy: DecidedBy;
  /** Empty on grants. */
  reason: string;
  /** The store's time of the decision. */
  decidedAt: number;
  /** How long it waited in line, ms (0 unless it waited). */
  waitedMs: number;
}

/** What the limit that speaks for a decision says about it. */
export interface Standing {
  remaining: number;
  resetAfterMs: number;
  /** The store's time of the decision. */
  decidedAt: number;
}

export function granted(limit: Limit, decidedBy: DecidedBy, standing: Standing): Decision {
  return {
    granted: true,
    permitId: '',
    retryAfterMs: 0,
    remaining: standing.remaining,
    limit: limit.capacity,
    resetAfterMs: standing.resetAfterMs,
    limitName: limit.name,
    decidedBy,
    reason: '',
    decidedAt: standing.decidedAt,
    waitedMs: 0,
  };
}

export function denied(limit: Limit, decidedBy: DecidedBy, standing: Standing & { retryAfterMs: number }, reason: string): Decision {
  return {
    granted: false,
    permitId: '',
    retryAfterMs: standing.retryAfterMs,
    remaining: standing.remaining,
    limit: limit.capacity,
    resetAfterMs: standing.resetAfterMs,
    limitName: limit.name,
    decidedBy,
    reason,
    decidedAt: standing.decidedAt,
    waitedMs: 0,
  };
}

/** Why the reserve denied `cost` units of a limit to a request of `priority`. */
export function reserveReason(limit: Limit, remaining: number, retryAfterMs: number, cost: number, priority: number): string {
  const held = `the rest of limit "${limit.name}" is reserved for priorities above ${priority}`;
  if (retryAfterMs === Number.POSITIVE_INFINITY) return `cost ${cost} exceeds what priority ${priority} may use of limit "${limit.name}" (capacity ${limit.capacity}): ${held}`;
  return `priority ${priority} has ${remaining} of limit "${limit.name}" left; ${held}`;
}

/** A store's verdict over a resource: its deciding limit speaks; `reason` says why on a denial. */
export function fromVerdict(resource: Resource, verdict: StoreVerdict, decidedBy: DecidedBy, reason: (limit: Limit) => string): Decision {
  const limit = resource.limits[verdict.decider]!;
  const standing = { remaining: verdict.remaining, resetAfterMs: verdict.resetAfterMs, decidedAt: verdict.now, retryAfterMs: verdict.retryAfterMs };
  return verdict.granted ? granted(limit, decidedBy, standing) : denied(limit, decidedBy, standing, reason(limit));
}

/** Why a limit denies `cost` units: it never can (the cost is past its capacity), or not now. */
export function denialReason(limit: Limit, remaining: number, retryAfterMs: number, cost: number): string {
  if (retryAfterMs === Number.POSITIVE_INFINITY) {
    return `cost ${cost} exceeds the capacity ${limit.capacity} of limit "${limit.name}": it can never be granted`;
  }
  return `limit "${limit.name}" has ${remaining} of ${limit.capacity} left`;
}
