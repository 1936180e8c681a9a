// The pipeline below the wire: a validated request -> the store -> a decision. Shared by every
// transport (sluice.v1 unary and stream; Envoy RLS later).
import { costFor, type Resource } from '../config/policy.js';
import type { Store } from '../store/store.js';
import type { Leases } from '../lease/leases.js';
import { PermitTable } from './permits.js';

export type DecidedBy = 'LEASE' | 'STORE' | 'FAIL_OPEN' | 'FAIL_CLOSED' | 'LOCAL_FALLBACK';

export interface AcquireInput {
  resource: Resource;
  /** From scopeOf(resource, values). */
  scope: string;
  /** Units, at least 1. */
  cost: number;
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
}

export interface DeciderOptions {
  maxPermits: number;
  now?: () => number;
  /** Serve hot keys of leasable resources from local leases (worth it only on a remote store). */
  leases?: Leases | null;
}

export class Decider {
  readonly permits: PermitTable;
  readonly leases: Leases | null;
  private readonly now: () => number;

  constructor(
    private readonly store: Store,
    options: DeciderOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.permits = new PermitTable(options.maxPermits, this.now);
    this.leases = options.leases ?? null;
  }

  async acquire(input: AcquireInput): Promise<Decision> {
    const { resource, scope, cost } = input;
    if (this.leases && resource.leasable) {
      const leased = await this.leases.acquire(input);
      if (leased) {
        if (leased.granted && resource.permitTtlMs > 0) {
          leased.permitId = this.permits.nextId();
          this.permits.add(leased.permitId, { resource, scope, cost, grantedAt: leased.decidedAt, expiresAt: this.now() + resource.permitTtlMs });
        }
        return leased;
      }
    }
    const issuesPermit = resource.permitTtlMs > 0;
    const permitId = issuesPermit ? this.permits.nextId() : '';
    const verdict = await this.store.acquire(resource, scope, cost, permitId);
    const limit = resource.limits[verdict.decider]!;
    if (verdict.granted && issuesPermit) {
      this.permits.add(permitId, { resource, scope, cost, grantedAt: verdict.now, expiresAt: this.now() + resource.permitTtlMs });
    }
    return {
      granted: verdict.granted,
      permitId: verdict.granted ? permitId : '',
      retryAfterMs: verdict.retryAfterMs,
      remaining: verdict.remaining,
      limit: limit.capacity,
      resetAfterMs: verdict.resetAfterMs,
      limitName: limit.name,
      decidedBy: 'STORE',
      reason: verdict.granted ? '' : denialReason(limit.name, limit.capacity, verdict.remaining, verdict.retryAfterMs, costFor(limit, cost)),
      decidedAt: verdict.now,
    };
  }

  /**
   * Frees the permit's concurrency slots and, given actualCost, refunds or charges the difference
   * from what was acquired. False, changing nothing, when the permit is unknown, expired or
   * already released.
   */
  async release(permitId: string, actualCost: number | undefined): Promise<boolean> {
    const record = this.permits.take(permitId);
    if (!record) return false;
    const delta = actualCost === undefined ? 0 : actualCost - record.cost;
    try {
      await this.store.release(record.resource, record.scope, { permitId, cost: record.cost, grantedAt: record.grantedAt }, delta);
    } catch (err) {
      // The store did not take it: keep the permit so that a retried Release can still succeed.
      this.permits.add(permitId, record);
      throw err;
    }
    return true;
  }

  /**
   * Takes back a grant its caller will never see (its stream was cancelled first): frees its
   * concurrency slots and refunds its cost. (With a permit, limits that count requests keep
   * their one, as on any Release.)
   */
  async revoke({ resource, scope, cost }: AcquireInput, decision: Decision): Promise<void> {
    if (!decision.granted) return;
    if (decision.permitId) {
      await this.release(decision.permitId, 0);
    } else {
      const units = resource.limits.map((limit) => costFor(limit, cost));
      await this.store.refund(resource, scope, this.permits.nextId(), units, decision.decidedAt);
    }
  }

  /** Gives leased budget back, then closes the store. */
  async close(): Promise<void> {
    await this.leases?.close();
    await this.store.close();
  }
}

function denialReason(name: string, capacity: number, remaining: number, retryAfterMs: number, cost: number): string {
  if (retryAfterMs === Number.POSITIVE_INFINITY) {
    return `cost ${cost} exceeds the capacity ${capacity} of limit "${name}": it can never be granted`;
  }
  return `limit "${name}" has ${remaining} of ${capacity} left`;
}
