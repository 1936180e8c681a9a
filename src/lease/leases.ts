// Local token leases: for a hot key, take a block of budget from the store in one call and serve
// requests from it in this process. Budget is always taken before it is served, so leasing can
// only under-admit (units stranded here while another sidecar is denied), never over-admit.
// Unused units go back when the lease expires, when demand stops, and on shutdown.
import { costFor, type Resource } from '../config/policy.js';
import { denialReason, denied, granted, type AcquireInput, type Decision } from '../decide/decision.js';
import type { Store, TakeVerdict } from '../store/store.js';
import { StoreUnavailable } from '../guard/store-unavailable.js';
import { blockSize, LEASE_HORIZON_MS, MIN_LEASED_REQUESTS, observe, rateAt, type DecayingRate } from './demand.js';

/** A lease unused this long goes back before its ttl: demand has moved on. */
export const IDLE_MS = 3 * LEASE_HORIZON_MS;

/** What a take came to, for the requests that waited on it: units to serve from, a denial, or the store's failure. */
type TakeOutcome = 'units' | 'denied' | { failed: unknown };

interface LeaseState {
  resource: Resource;
  scope: string;
  /** Units held here, per limit; served from, never beyond. */
  units: number[];
  /** What each limit had left in the store at the last take. */
  storeLeft: number[];
  /** Store time of the take the units came from: a refund goes back to that window. */
  takenAt: number;
  /** Local time after which the units may not be served (ttl, or the end of their window). */
  expiresAt: number;
  /** Local time at which the deciding limit is full again, as of the last take. */
  resetAt: number;
  /** The take in flight; it resolves with what it came to. */
  refill: Promise<TakeOutcome> | null;
  /**
   * A denial from the store stands until then (local time) for requests costing `deniedNeed` or
   * more: its retry_after, or the lease ttl if sooner, so that budget the store has back early
   * (a flushed or restarted Redis, a refund) is seen within a ttl.
   */
  deniedUntil: number;
  /** Local time the standing denial said to retry at. */
  retryAt: number;
  deniedNeed: number;
  denial: TakeVerdict | null;
  /** Requests waiting on a take, and what they cost: the next take asks for at least that much. */
  waitingRequests: number;
  waitingCost: number;
  requests: DecayingRate;
  costs: DecayingRate;
  lastUsed: number;
}

export interface LeaseFigures {
  /** Units held in leases right now: the most that could be stranded. */
  held: number;
  /** Units given back to the store. */
  returned: number;
  /** Takes made for leases. */
  takes: number;
  /** Requests answered from a lease (grants and standing denials). */
  served: number;
}

export interface LeasesOptions {
  /** Hot keys with lease state at once; past it the least recently used goes (its units go back). */
  maxLeasedKeys: number;
  /** Cold keys whose request rate is tracked; past it the oldest is forgotten. */
  maxTrackedKeys: number;
  now?: () => number;
  /** Called with what could not be given back (the store failed); the figures count it as stranded. */
  onRefundError?: (err: unknown) => void;
}

export class Leases {
  private readonly states = new Map<string, LeaseState>();
  /**
   * Request rates of keys with no lease state: most keys stay cold, and a rate is all they need
   * until they are hot enough to lease. Kept apart so that many cold keys cost little memory.
   */
  private readonly cold = new Map<string, DecayingRate>();
  /** The states holding units: the only ones a tick has to look at. */
  private readonly holding = new Set<LeaseState>();
  private lastSweep = 0;
  private readonly now: () => number;
  private refundSequence = 0;
  readonly figures: LeaseFigures = { held: 0, returned: 0, takes: 0, served: 0 };

  constructor(
    private readonly store: Store,
    private readonly options: LeasesOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /**
   * A decision from a lease, or null when this request should go to the store directly (the key
   * is cold, or the lease could not cover it).
   */
  async acquire(input: AcquireInput): Promise<Decision | null> {
    const now = this.now();
    let state = this.states.get(input.scope);
    if (state && state.resource !== input.resource) {
      // The policy was reloaded with new numbers for this resource: the key is as hot as it
      // was, and what its old lease holds goes back now (warmUp), taken under the old numbers.
      observe(state.requests, now, 1);
      state = this.warmUp(input, state.requests, now);
    } else if (!state) {
      const rate = this.coldRate(input.scope, now);
      observe(rate, now, 1);
      if (rate.perSecond * LEASE_HORIZON_MS < MIN_LEASED_REQUESTS * 1000) return null;
      this.cold.delete(input.scope);
      state = this.warmUp(input, rate, now);
    } else {
      observe(state.requests, now, 1);
      observe(state.costs, now, input.cost);
    }
    state.lastUsed = now;

    // Until it is served or denied, a request that finds the lease short asks the store through
    // takes: a take in flight may have been sent before the request was seen, or its units may go
    // to requests ahead of it; the next take is sent for every request still waiting.
    let outcome: TakeOutcome | null = null;
    for (let at = now; ; at = this.now()) {
      const served = this.serve(state, input.cost, at);
      if (served) return served;
      if (state.deniedUntil > at && input.cost >= state.deniedNeed) {
        if (!holdsAny(state) || !coveredWithHeld(state, input.cost, state.storeLeft)) return this.standingDenial(state, at);
        // Short only by what this lease holds: no denial. The units go back (which ends the
        // standing denial), and the store is asked again.
        await this.giveBack(state);
        outcome = null;
        continue;
      }
      // A take denied for another cost, or for one that never fits: the store answers this request itself.
      if (outcome === 'denied') return null;
      // The store failed on the take: asking it again now would only wait out another deadline.
      if (outcome !== null && outcome !== 'units') throw outcome.failed;
      if (!state.refill && rateAt(state.requests, at) * LEASE_HORIZON_MS < MIN_LEASED_REQUESTS * 1000) return null;
      state.waitingRequests++;
      state.waitingCost += input.cost;
      if (!state.refill) this.refill(state, input.cost);
      // Coalesce: every request that finds the lease short waits for the one take in flight.
      outcome = await state.refill;
      state.waitingRequests--;
      state.waitingCost -= input.cost;
    }
  }

  /**
   * Gives back what this key's lease holds, for a request the store denied on its own (it went
   * there while the key was cold or its demand faded, and the lease held units): null when it
   * holds none, else settles when they are back, so that the store, asked again, may grant it.
   */
  reclaim(scope: string): Promise<void> | null {
    const state = this.states.get(scope);
    return state && holdsAny(state) ? this.giveBack(state) : null;
  }

  /** Budget of this key went back to the store (a settlement refunded it): a standing denial is stale. */
  budgetBack(scope: string): void {
    const state = this.states.get(scope);
    if (state) state.deniedUntil = 0;
  }

  /** Gives back what expired or idle leases hold, and now and then forgets idle keys. Call often. */
  async tick(): Promise<void> {
    const now = this.now();
    const returning: Promise<void>[] = [];
    for (const state of this.holding) {
      if (!state.refill && (now >= state.expiresAt || now - state.lastUsed >= IDLE_MS)) returning.push(this.giveBack(state));
    }
    if (now - this.lastSweep >= SWEEP_EVERY_MS) {
      this.lastSweep = now;
      for (const [scope, state] of this.states) {
        if (!state.refill && !this.holding.has(state) && now - state.lastUsed >= SWEEP_EVERY_MS && now >= state.deniedUntil) this.states.delete(scope);
      }
      for (const [scope, rate] of this.cold) if (now - rate.at >= SWEEP_EVERY_MS) this.cold.delete(scope);
    }
    await Promise.all(returning);
  }

  /** Gives back every lease (shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.states.values()].map((s) => s.refill));
    await Promise.all([...this.holding].map((s) => this.giveBack(s)));
    this.states.clear();
  }

  private serve(state: LeaseState, cost: number, now: number): Decision | null {
    if (now >= state.expiresAt) return null;
    const limits = state.resource.limits;
    for (let i = 0; i < limits.length; i++) if (state.units[i]! < costFor(limits[i]!, cost)) return null;
    let tightest = 0;
    for (let i = 0; i < limits.length; i++) {
      state.units[i]! -= costFor(limits[i]!, cost);
      if (state.units[i]! + state.storeLeft[i]! < state.units[tightest]! + state.storeLeft[tightest]!) tightest = i;
    }
    this.figures.held -= sumOfCosts(state.resource, cost);
    this.figures.served++;
    if (this.runningLow(state, now)) this.refill(state, cost);
    return granted(limits[tightest]!, 'LEASE', {
      remaining: state.units[tightest]! + state.storeLeft[tightest]!,
      resetAfterMs: Math.max(0, state.resetAt - now),
      decidedAt: state.takenAt,
    });
  }

  private standingDenial(state: LeaseState, now: number): Decision {
    const denial = state.denial!;
    const limit = state.resource.limits[denial.decider]!;
    this.figures.served++;
    const retryAfterMs = Math.max(0, state.retryAt - now);
    return denied(
      limit,
      'LEASE',
      { remaining: denial.remaining, retryAfterMs, resetAfterMs: Math.max(0, state.resetAt - now), decidedAt: denial.now },
      denialReason(limit, denial.remaining, retryAfterMs, state.deniedNeed),
    );
  }

  /** Refill ahead: before the lease runs out, while demand would use a new block. */
  private runningLow(state: LeaseState, now: number): boolean {
    if (state.refill || state.deniedUntil > now) return false;
    const limits = state.resource.limits;
    for (let i = 0; i < limits.length; i++) {
      const perSecond = limits[i]!.countsRequests ? rateAt(state.requests, now) : rateAt(state.costs, now);
      // Less left than half a horizon of demand: the take will be back before it is gone.
      if (state.units[i]! * 2000 < perSecond * LEASE_HORIZON_MS) return true;
    }
    return false;
  }

  private refill(state: LeaseState, cost: number): void {
    const now = this.now();
    const want = state.resource.limits.map((limit, i) =>
      Math.max(
        blockSize({
          demandPerSecond: limit.countsRequests ? rateAt(state.requests, now) : rateAt(state.costs, now),
          capacity: limit.capacity,
          maxFraction: state.resource.lease.maxFraction,
          storeLeft: state.storeLeft[i]!,
          need: costFor(limit, cost),
        }),
        // Requests already waiting are served from this take as far as the store has room.
        (limit.countsRequests ? state.waitingRequests : state.waitingCost) - state.units[i]!,
      ),
    );
    this.figures.takes++;
    state.refill = this.store
      .take(state.resource, state.scope, cost, want)
      .then(
        (verdict) => this.received(state, verdict, now, cost),
        // A failed take leaves the lease as it was; the requests waiting on it see the error.
        (err: unknown) => this.failedTake(state, err),
      )
      .finally(() => {
        state.refill = null;
      });
  }

  private received(state: LeaseState, verdict: TakeVerdict, sentAt: number, cost: number): TakeOutcome {
    const now = this.now();
    const roundTrip = now - sentAt;
    state.storeLeft = verdict.left;
    state.resetAt = now + verdict.resetAfterMs;
    if (!verdict.granted) {
      state.denial = verdict;
      state.deniedNeed = cost;
      state.retryAt = now + verdict.retryAfterMs - roundTrip;
      state.deniedUntil = verdict.retryAfterMs === Number.POSITIVE_INFINITY ? 0 : Math.min(state.retryAt, now + state.resource.lease.ttlMs);
      return 'denied';
    }
    state.deniedUntil = 0;
    // Units left from a closed window must not mix with the new ones: give them back first.
    if (now >= state.expiresAt && this.holding.has(state)) void this.giveBack(state);
    for (let i = 0; i < state.units.length; i++) state.units[i]! += verdict.taken[i]!;
    for (const taken of verdict.taken) this.figures.held += taken;
    this.holding.add(state);
    state.takenAt = verdict.now;
    // The window may close before the ttl does; its end is counted from when the take was sent.
    state.expiresAt = Math.min(now + state.resource.lease.ttlMs, sentAt + verdict.windowEndsInMs);
    return 'units';
  }

  /**
   * A take that timed out may still be granted by the store: those units were taken for nobody,
   * so they go back as soon as the answer comes. The requests waiting on the take see the error
   * without its late answer, so that none of them reconciles the take again.
   */
  private failedTake(state: LeaseState, err: unknown): TakeOutcome {
    if (!(err instanceof StoreUnavailable) || !err.late) return { failed: err };
    (err.late as Promise<TakeVerdict>).then(
      (verdict) => {
        if (verdict.granted) return this.refund(state.resource, state.scope, verdict.taken, verdict.now);
      },
      () => undefined,
    );
    return { failed: new StoreUnavailable(err.reason, err.message, { cause: err.cause }) };
  }

  private async giveBack(state: LeaseState): Promise<void> {
    const units = state.units.slice();
    const takenAt = state.takenAt;
    const heldBack = units.reduce((a, b) => a + b, 0);
    state.units.fill(0);
    state.expiresAt = 0;
    this.holding.delete(state);
    this.figures.held -= heldBack;
    if (heldBack === 0) return;
    // The store has these units back: a denial that stood without them no longer does.
    state.deniedUntil = 0;
    await this.refund(state.resource, state.scope, units, takenAt);
  }

  private async refund(resource: Resource, scope: string, units: readonly number[], takenAt: number): Promise<void> {
    const refundId = `r${(this.refundSequence++).toString(36)}.${process.pid}.${sentinel}`;
    // The same refund id on every try: a retry after an unclear failure never refunds twice.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.store.refund(resource, scope, refundId, units, takenAt);
        this.figures.returned += units.reduce((a, b) => a + b, 0);
        return;
      } catch (err) {
        if (attempt === 2) this.options.onRefundError?.(err);
      }
    }
  }

  private coldRate(scope: string, now: number): DecayingRate {
    let rate = this.cold.get(scope);
    if (!rate) {
      rate = { perSecond: 0, at: now };
      this.cold.set(scope, rate);
      if (this.cold.size > this.options.maxTrackedKeys) this.cold.delete(this.cold.keys().next().value!);
    }
    return rate;
  }

  /** Lease state for a key that has become hot, its request rate carried over. */
  private warmUp(input: AcquireInput, requests: DecayingRate, now: number): LeaseState {
    const old = this.states.get(input.scope);
    if (old && this.holding.has(old)) void this.giveBack(old);
    const n = input.resource.limits.length;
    const state: LeaseState = {
      resource: input.resource,
      scope: input.scope,
      units: new Array<number>(n).fill(0),
      storeLeft: new Array<number>(n).fill(Number.POSITIVE_INFINITY),
      takenAt: 0,
      expiresAt: 0,
      resetAt: 0,
      refill: null,
      deniedUntil: 0,
      retryAt: 0,
      deniedNeed: 0,
      denial: null,
      waitingRequests: 0,
      waitingCost: 0,
      requests,
      // Costs were not tracked while cold: take the recent requests, this one included, to cost
      // what this one does.
      costs: { perSecond: requests.perSecond * input.cost, at: now },
      lastUsed: now,
    };
    this.states.set(input.scope, state);
    if (this.states.size > this.options.maxLeasedKeys) this.evictOldest();
    return state;
  }

  private evictOldest(): void {
    for (const [scope, state] of this.states) {
      if (state.refill) continue;
      this.states.delete(scope);
      if (this.holding.has(state)) void this.giveBack(state);
      return;
    }
  }
}

/** Distinguishes refunds of this process from those of an earlier one with the same pid. */
const sentinel = Math.floor(Math.random() * 2 ** 32).toString(36);

/** How often keys with nothing leased and no recent demand are forgotten. */
const SWEEP_EVERY_MS = 10_000;

function holdsAny(state: LeaseState): boolean {
  return state.units.some((units) => units > 0);
}

/** What the lease holds plus what the store has left (`left`, per limit) would grant a request of `cost`. */
function coveredWithHeld(state: LeaseState, cost: number, left: readonly number[]): boolean {
  const limits = state.resource.limits;
  for (let i = 0; i < limits.length; i++) if (state.units[i]! + left[i]! < costFor(limits[i]!, cost)) return false;
  return true;
}

function sumOfCosts(resource: Resource, cost: number): number {
  let sum = 0;
  for (const limit of resource.limits) sum += costFor(limit, cost);
  return sum;
}
