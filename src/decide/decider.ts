// The pipeline below the wire: a validated request -> the store -> a decision. Shared by every
// transport (sluice.v1 unary and stream; Envoy RLS later).
import { costFor } from '../config/policy.js';
import { holdsSlots } from '../limits/registry.js';
import type { Store, StoreVerdict } from '../store/store.js';
import type { Leases } from '../lease/leases.js';
import type { FailurePolicy } from '../guard/failure-policy.js';
import { StoreUnavailable } from '../guard/store-unavailable.js';
import { PermitTable } from './permits.js';
import { denialReason, fromVerdict, type AcquireInput, type Decision } from './decision.js';

export interface DeciderOptions {
  maxPermits: number;
  now?: () => number;
  /** Serve hot keys of leasable resources from local leases (worth it only on a remote store). */
  leases?: Leases | null;
  /** What to do when the store cannot decide; without it, store errors reach the caller. */
  failurePolicy?: FailurePolicy | null;
  /** Told when a late store answer could not be reconciled (the store failed again). */
  onReconcileError?: (err: unknown) => void;
}

export class Decider {
  readonly permits: PermitTable;
  readonly leases: Leases | null;
  readonly failurePolicy: FailurePolicy | null;
  private readonly now: () => number;
  private readonly onReconcileError: (err: unknown) => void;

  constructor(
    private readonly store: Store,
    options: DeciderOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.permits = new PermitTable(options.maxPermits, this.now);
    this.leases = options.leases ?? null;
    this.failurePolicy = options.failurePolicy ?? null;
    this.onReconcileError = options.onReconcileError ?? (() => undefined);
  }

  async acquire(input: AcquireInput): Promise<Decision> {
    const { resource, scope, cost } = input;
    const permitId = resource.permitTtlMs > 0 ? this.permits.nextId() : '';
    let decision: Decision;
    try {
      decision = (this.leases && resource.leasable && (await this.leases.acquire(input))) || (await this.fromStore(input, permitId));
      // The store denied a request the lease passed on (the key was cold, or its demand faded)
      // while this sidecar's lease on the key holds units: with those back, it may grant it.
      const reclaiming =
        this.leases && resource.leasable && !decision.granted && decision.decidedBy === 'STORE' && decision.retryAfterMs !== Number.POSITIVE_INFINITY
          ? this.leases.reclaim(scope)
          : null;
      if (reclaiming) {
        await reclaiming;
        decision = await this.fromStore(input, permitId);
      }
    } catch (err) {
      if (!this.failurePolicy || !(err instanceof StoreUnavailable)) throw err;
      decision = await this.failurePolicy.decide(input, permitId, err);
      if (err.late) this.reconcile(input, permitId, decision, err.late as Promise<StoreVerdict>);
    }
    // Only grants whose budget was charged can be settled: never those failed open.
    if (decision.granted && permitId !== '' && decision.decidedBy !== 'FAIL_OPEN') {
      decision.permitId = permitId;
      const local = decision.decidedBy === 'LOCAL_FALLBACK';
      this.permits.add(permitId, { resource, scope, cost, grantedAt: decision.decidedAt, expiresAt: this.now() + resource.permitTtlMs, local });
    }
    return decision;
  }

  private async fromStore({ resource, scope, cost }: AcquireInput, permitId: string): Promise<Decision> {
    const verdict = await this.store.acquire(resource, scope, cost, permitId);
    return fromVerdict(resource, verdict, 'STORE', (limit) => verdict.reason ?? denialReason(limit, verdict.remaining, verdict.retryAfterMs, costFor(limit, cost)));
  }

  /**
   * The store answered after the caller was answered by policy. What it granted and the caller
   * did not get, or got elsewhere, is undone: a denied caller's charge is refunded whole and its
   * concurrency slots freed; a caller granted without the store (FAIL_OPEN, or the local share)
   * keeps the charge (the request did happen) but the store's slots are freed, since no permit
   * names them. Each step is applied once, by id, like any settlement.
   */
  private reconcile({ resource, scope, cost }: AcquireInput, permitId: string, answered: Decision, late: Promise<StoreVerdict>): void {
    late
      .then(async (verdict) => {
        if (!verdict.granted) return;
        const id = permitId || this.permits.nextId();
        const grant = { permitId: id, cost, grantedAt: verdict.now };
        if (!answered.granted) {
          const units = resource.limits.map((limit) => (holdsSlots(limit) ? 0 : costFor(limit, cost)));
          await this.store.refund(resource, scope, `undo.${id}`, units, verdict.now);
        }
        if (resource.limits.some(holdsSlots)) await this.store.release(resource, scope, grant, 0);
      }, () => undefined) // never answered: nothing ran, nothing to undo
      .catch(this.onReconcileError);
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
    const policy = record.local ? this.failurePolicy : null;
    const store = policy ? policy.local : this.store;
    const resource = policy ? policy.shareOf(record.resource) : record.resource;
    try {
      await store.release(resource, record.scope, { permitId, cost: record.cost, grantedAt: record.grantedAt }, delta);
    } catch (err) {
      // The store did not take it: keep the permit so that a retried Release can still succeed.
      this.permits.add(permitId, record);
      throw err;
    }
    if (delta < 0 && !policy) this.leases?.budgetBack(record.scope);
    return true;
  }

  /**
   * Takes back a grant its caller will never see (its stream was cancelled first): frees its
   * concurrency slots and refunds its cost. (With a permit, limits that count requests keep
   * their one, as on any Release.)
   */
  async revoke({ resource, scope, cost }: AcquireInput, decision: Decision): Promise<void> {
    if (!decision.granted || decision.decidedBy === 'FAIL_OPEN') return;
    if (decision.permitId) {
      await this.release(decision.permitId, 0);
    } else {
      const policy = decision.decidedBy === 'LOCAL_FALLBACK' ? this.failurePolicy : null;
      const store = policy ? policy.local : this.store;
      const charged = policy ? policy.shareOf(resource) : resource;
      const units = charged.limits.map((limit) => costFor(limit, cost));
      await store.refund(charged, scope, this.permits.nextId(), units, decision.decidedAt);
    }
  }

  /** Gives leased budget back, then closes the store. */
  async close(): Promise<void> {
    await this.leases?.close();
    await this.failurePolicy?.close();
    await this.store.close();
  }
}
