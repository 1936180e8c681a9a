// The pipeline below the wire: a validated request -> the store -> a decision. Shared by every
// transport (sluice.v1 unary and stream; Envoy RLS later).
import { costFor, usableFraction, type Limit, type Resource } from '../config/policy.js';
import { holdsSlots } from '../limits/registry.js';
import type { ScopeLook, Store, StoreVerdict } from '../store/store.js';
import type { FailurePolicy } from '../guard/failure-policy.js';
import { StoreUnavailable } from '../guard/store-unavailable.js';
import { PermitTable } from './permits.js';
import { Waiters, type WaitObserver, type Waited } from '../wait/waiters.js';
import { denialReason, denied, fromVerdict, reserveReason, type AcquireInput, type Decision, type WaitTerms } from './decision.js';

/**
 * What the decider asks of leases: a decision now when the lease can answer at once, null when
 * the request should go to the store, a promise while a take is under way.
 */
export interface LeaseSource {
  acquire(input: AcquireInput): Decision | null | Promise<Decision | null>;
  /** Gives back what the key's lease holds, if anything (then a promise that resolves once it is back). */
  reclaim(scope: string): Promise<void> | null;
  /** Budget came back to the key in the store (a settlement for less): a standing denial ends. */
  budgetBack(scope: string): void;
  /** Requests wait in the key's line somewhere: the lease gives back what it holds and serves none ahead of them. */
  lineFormed(scope: string): void;
  close(): Promise<void>;
}

export interface DeciderOptions {
  maxPermits: number;
  now?: () => number;
  /** Serve hot keys of leasable resources from local leases (worth it only on a remote store). */
  leases?: LeaseSource | null;
  /** What to do when the store cannot decide; without it, store errors reach the caller. */
  failurePolicy?: FailurePolicy | null;
  /** Told when a late store answer could not be reconciled (the store failed again). */
  onReconcileError?: (err: unknown) => void;
  /** Requests with max_wait wait in their scopes' lines; without it they are answered at once. */
  waiting?: { sidecarId: string; maxWaiters: number; observer?: WaitObserver } | null;
}

export class Decider {
  readonly permits: PermitTable;
  readonly leases: LeaseSource | null;
  readonly failurePolicy: FailurePolicy | null;
  readonly waiters: Waiters | null;
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
    const waiting = options.waiting;
    this.waiters = waiting
      ? new Waiters(store, {
          ...waiting,
          now: this.now,
          giveBack: (input, permitId, verdict, ticketId) => this.undo(input, permitId, verdict.now, `undo.${ticketId}`).catch(this.onReconcileError),
          lineFormed: (scope) => this.leases?.lineFormed(scope),
        })
      : null;
  }

  /**
   * The decision, as soon as it is known: a plain Decision when the lease answers at once (a
   * lease hit awaits nothing), a promise when the store or the failure policy has to be asked.
   */
  decideNow(input: AcquireInput): Decision | Promise<Decision> {
    if (input.wait && this.waiters) return this.leasedOrWaited(input, input.wait, this.waiters);
    if (!this.leases || !input.resource.leasable) return this.fromStore(input);
    let leased: Decision | null | Promise<Decision | null>;
    try {
      leased = this.leases.acquire(input);
    } catch (err) {
      return this.byPolicy(input, this.permitIdFor(input), err);
    }
    if (!(leased instanceof Promise)) return leased ? this.recorded(input, this.permitIdFor(input), leased) : this.passedOn(input);
    return leased.then(
      (decision) => (decision ? this.recorded(input, this.permitIdFor(input), decision) : this.passedOn(input)),
      (err: unknown) => this.byPolicy(input, this.permitIdFor(input), err),
    );
  }

  /**
   * A request that may wait: a lease grant if the lease has its units due (no line exists here
   * then: a line stops the lease), else its place in the scope's line until it is served.
   */
  private leasedOrWaited(input: AcquireInput, terms: WaitTerms, waiters: Waiters): Decision | Promise<Decision> {
    if (!this.leases || !input.resource.leasable || waiters.waitingIn(input.scope)) return this.waited(input, terms, waiters);
    let leased: Decision | null | Promise<Decision | null>;
    try {
      leased = this.leases.acquire(input);
    } catch {
      return this.waited(input, terms, waiters);
    }
    const grantOrWait = (decision: Decision | null) => (decision?.granted ? this.recorded(input, this.permitIdFor(input), decision) : this.waited(input, terms, waiters));
    if (!(leased instanceof Promise)) return grantOrWait(leased);
    return leased.then(grantOrWait, () => this.waited(input, terms, waiters));
  }

  /** Waits in the scope's line: granted when served, denied when its time is up or it can never fit. */
  private async waited(input: AcquireInput, terms: WaitTerms, waiters: Waiters): Promise<Decision> {
    const { resource, priority, cost } = input;
    const permitId = this.permitIdFor(input);
    let waited: Waited;
    try {
      waited = await waiters.wait({ input, terms, permitId, usable: usableFraction(resource, priority) });
    } catch (err) {
      const decision = await this.byPolicy(input, permitId, err);
      return decision;
    }
    const { verdict } = waited;
    let decision: Decision;
    if (verdict && (waited.end === 'granted' || waited.end === 'never')) {
      // A line's `waiting` counts its tickets, not requests this one was denied for: the limit speaks.
      decision = fromVerdict(resource, verdict, 'STORE', (limit) => verdict.reason ?? limitReason(verdict, limit, costFor(limit, cost), priority));
    } else {
      const limit = resource.limits[0]!;
      const why =
        waited.end === 'lost'
          ? 'its place in the line was lost (the store no longer held it); try again'
          : waited.end === 'closed'
            ? 'the sidecar is shutting down: it left the line; try again'
            : `waited ${Math.round(waited.waitedMs)}ms (max_wait) in the line of resource "${resource.name}" (${waited.waiting} waiting)`;
      decision = denied(limit, 'STORE', { remaining: 0, resetAfterMs: 0, retryAfterMs: 0, decidedAt: this.now() }, why);
    }
    decision.waitedMs = waited.waitedMs;
    return this.recorded(input, permitId, decision);
  }

  /** decideNow, always as a promise, for callers that wait anyway. */
  async acquire(input: AcquireInput): Promise<Decision> {
    return this.decideNow(input);
  }

  /**
   * The store's answer to a request the lease passed on. When the store denies it (the key was
   * cold, or its demand faded) while this sidecar's lease on the key holds units, those go back
   * and the store is asked once more: with them, it may grant it.
   */
  private async passedOn(input: AcquireInput): Promise<Decision> {
    const decision = await this.fromStore(input);
    if (decision.granted || decision.decidedBy !== 'STORE' || decision.retryAfterMs === Number.POSITIVE_INFINITY) return decision;
    const reclaiming = this.leases?.reclaim(input.scope);
    if (!reclaiming) return decision;
    await reclaiming;
    return this.fromStore(input);
  }

  private async fromStore(input: AcquireInput): Promise<Decision> {
    const { resource, scope, cost, priority } = input;
    const permitId = this.permitIdFor(input);
    let verdict: StoreVerdict;
    try {
      verdict = await this.store.acquire(resource, scope, cost, permitId, usableFraction(resource, priority), priority);
    } catch (err) {
      return this.byPolicy(input, permitId, err);
    }
    const decision = fromVerdict(resource, verdict, 'STORE', (limit) => verdict.reason ?? storeReason(verdict, limit, costFor(limit, cost), priority));
    return this.recorded(input, permitId, decision);
  }

  /** The store could not decide: the failure policy does, for store failures only. */
  private async byPolicy(input: AcquireInput, permitId: string, err: unknown): Promise<Decision> {
    if (!this.failurePolicy || !(err instanceof StoreUnavailable)) throw err;
    const decision = await this.failurePolicy.decide(input, permitId, err);
    if (err.late) this.reconcile(input, permitId, decision, err.late as Promise<StoreVerdict>);
    return this.recorded(input, permitId, decision);
  }

  /** The id a grant of this resource can be released or settled by; empty when it cannot be. */
  private permitIdFor({ resource }: AcquireInput): string {
    return resource.permitTtlMs > 0 ? this.permits.nextId() : '';
  }

  /** Gives a grant its permit, when it has one. Only grants whose budget was charged can be settled: never those failed open. */
  private recorded({ resource, scope, cost }: AcquireInput, permitId: string, decision: Decision): Decision {
    if (decision.granted && permitId !== '' && decision.decidedBy !== 'FAIL_OPEN') {
      decision.permitId = permitId;
      const local = decision.decidedBy === 'LOCAL_FALLBACK';
      this.permits.add(permitId, { resource, scope, cost, grantedAt: decision.decidedAt, expiresAt: this.now() + resource.permitTtlMs, local });
    }
    return decision;
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
        if (!answered.granted) {
          await this.undo({ resource, scope, cost, priority: 0 }, id, verdict.now, `undo.${id}`);
        } else if (resource.limits.some(holdsSlots)) {
          await this.store.release(resource, scope, { permitId: id, cost, grantedAt: verdict.now }, 0);
        }
      }, () => undefined) // never answered: nothing ran, nothing to undo
      .catch(this.onReconcileError);
  }

  /**
   * Undoes a store grant that nobody received: refunds its cost whole (applied once, by
   * `refundId`) and frees its concurrency slots.
   */
  private async undo({ resource, scope, cost }: AcquireInput, permitId: string, grantedAt: number, refundId: string): Promise<void> {
    const units = resource.limits.map((limit) => (holdsSlots(limit) ? 0 : costFor(limit, cost)));
    if (units.some((unit) => unit > 0)) await this.store.refund(resource, scope, refundId, units, grantedAt);
    if (resource.limits.some(holdsSlots)) await this.store.release(resource, scope, { permitId, cost, grantedAt }, 0);
  }

  /** The scope as the store holds it: no lease serves it, no failure policy answers for it. */
  inspect(resource: Resource, scope: string): Promise<ScopeLook> {
    return this.store.inspect(resource, scope);
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
    this.waiters?.close();
    await this.leases?.close();
    await this.failurePolicy?.close();
    await this.store.close();
  }
}

/** Why the store denied: requests waiting ahead, the limit, or the part of it reserved above the request's priority. */
function storeReason(verdict: StoreVerdict, limit: Limit, cost: number, priority: number): string {
  if ((verdict.waiting ?? 0) > 0) return `${verdict.waiting} requests wait in line for this scope, at priority ${priority} or above: wait with max_wait, or come back later`;
  return limitReason(verdict, limit, cost, priority);
}

/** Why the limit denied, or the part of it reserved above the request's priority. */
function limitReason(verdict: StoreVerdict, limit: Limit, cost: number, priority: number): string {
  return verdict.reserved
    ? reserveReason(limit, verdict.remaining, verdict.retryAfterMs, cost, priority)
    : denialReason(limit, verdict.remaining, verdict.retryAfterMs, cost);
}
