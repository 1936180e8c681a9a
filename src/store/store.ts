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
   * `permitId` names the concurrency slot taken when granted.
   */
  acquire(resource: Resource, scope: string, cost: number, permitId: string): Promise<StoreVerdict>;
  /**
   * Frees the grant's concurrency slots and charges `delta` more units (a refund when negative)
   * to its rate limits. The caller ensures each grant is released once.
   */
  release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void>;
  close(): Promise<void>;
}
