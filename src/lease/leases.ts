// Local token leases: for a hot key, take a block of budget from the store in one call and serve
// requests from it in this process. Budget is always taken before it is served, and a token
// bucket's units (a slice of its schedule, possibly ahead of their time) are served no sooner
// than they fall due, so leasing can only under-admit (units stranded here while another sidecar
// is denied), never over-admit. Unused units go back when the lease expires, when demand stops,
// and on shutdown. The argument is in docs/leases.md.
//
// Reserve: a lease takes its units as the lowest priority would (the usable part of each limit
// only), so any request may be served from them and none ever dips into a reserve it may not use.
// A request of a priority that may use more than that is served from held units when they are
// due, and otherwise passed on to the store with its own priority: neither a standing denial
// (a low-priority take's) nor units not yet due answer it.
import { costFor, lowestUsable, usableFraction, type Limit, type Resource } from '../config/policy.js';
import { denialReason, denied, granted, type AcquireInput, type Decision } from '../decide/decision.js';
import { algorithmOf } from '../limits/registry.js';
import type { Store, TakeVerdict } from '../store/store.js';
import { StoreUnavailable } from '../guard/store-unavailable.js';
import { blockSize, demandAt, LEASE_HORIZON_MS, MIN_LEASED_REQUESTS, observe, sliceUnits, type Demand } from './demand.js';
import { HeldUnits } from './held-units.js';

/** A lease unused this long goes back before its ttl: demand has moved on. */
export const IDLE_MS = 3 * LEASE_HORIZON_MS;

/** What a take came to, for the requests that waited on it: units to serve from, a denial, or the store's failure. */
type TakeOutcome = 'units' | 'denied' | { failed: unknown };

/** What a request needs when the lease cannot answer it at once. */
const TAKE = 1;
const GIVE_BACK = 2;
type Next = typeof TAKE | typeof GIVE_BACK;

interface LeaseState {
  resource: Resource;
  scope: string;
  /** Units held here, per limit; served from when due, never beyond. */
  held: HeldUnits[];
  /** Per limit with a schedule, the most units one take asks for demand (sliceUnits); 0 for the others. */
  slices: number[];
  /** What each limit had left in the store at the last take (due then, for a schedule). */
  storeLeft: number[];
  /** Store time of the take the units came from: a refund goes back to that window. */
  takenAt: number;
  /** Local time after which the units may not be served (ttl, or the end of their window). */
  expiresAt: number;
  /** Local time at which the deciding limit is full again, as of the last take. */
  resetAt: number;
  /** How far ahead of their time a take may lease a schedule's units: half the ttl, so they are served within it. */
  aheadMs: number;
  /** The fraction of every limit a take may use: the lowest priority's (1 without a reserve). */
  usable: number;
  /** The take in flight; it resolves with what it came to. */
  refill: Promise<TakeOutcome> | null;
  /**
   * A denial from the store stands until then (local time) for requests costing `deniedNeed` or
   * more (those that need more units of some limit are told their own retry_after by the store):
   * its retry_after, or the lease ttl if sooner, so that budget the store has back early (a
   * flushed or restarted Redis, a refund) is seen within a ttl.
   */
  deniedUntil: number;
  /** Local time the standing denial said to retry at. */
  retryAt: number;
  deniedNeed: number;
  denial: TakeVerdict | null;
  /**
   * Requests wait in the key's line (a take was refused for them, or a line formed): until then
   * (local time) every request goes to the store, which serves the line first.
   */
  linedUntil: number;
  /** Requests waiting on a take, and what they cost: the next take asks for at least that much. */
  waitingRequests: number;
  waitingCost: number;
  demand: Demand;
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
  /** Hot keys with lease state at once; past it the one that became hot first goes (its units go back). */
  maxLeasedKeys: number;
  /** Cold keys whose request rate is tracked; past it the oldest is forgotten. */
  maxTrackedKeys: number;
  /** Local time in ms: monotonic and finer than a millisecond (default performance.now). */
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
  private readonly cold = new Map<string, Demand>();
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
    // Due times are mapped onto this clock from when a take's answer arrived, which must be no
    // sooner than when the script ran: a whole-millisecond wall clock (Date.now) reads up to a
    // millisecond early, and steps with NTP. performance.now is monotonic and finer.
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * A decision from a lease, or null when this request should go to the store directly (the key
   * is cold, or the lease could not cover it): at once when the lease can answer, else once the
   * take it waits for has come back.
   */
  acquire(input: AcquireInput): Decision | null | Promise<Decision | null> {
    const now = this.now();
    const state = this.stateFor(input, now);
    if (!state || state.linedUntil > now) return null;
    // Units due now serve it; anything else is for the store to say, at its priority.
    if (state.usable < 1 && usableFraction(input.resource, input.priority) > state.usable) return this.fromHeld(state, input.cost, now, false);
    const next = this.answer(state, input.cost, now, null);
    return typeof next === 'number' ? this.afterTakes(state, input.cost, next) : next;
  }

  /**
   * Until it is served or denied, a request that finds the lease short asks the store through
   * takes: a take in flight may have been sent before the request was seen, or its units may go
   * to requests ahead of it; the next take is sent for every request still waiting.
   */
  private async afterTakes(state: LeaseState, cost: number, first: Next): Promise<Decision | null> {
    for (let next: Decision | null | Next = first; ; ) {
      let outcome: TakeOutcome | null = null;
      if (next === GIVE_BACK) {
        // Short only by what this lease holds: no denial. The units go back (which ends the
        // standing denial), and the store is asked again.
        await this.giveBack(state);
      } else {
        state.waitingRequests++;
        state.waitingCost += cost;
        if (!state.refill) this.refill(state, cost);
        // Coalesce: every request that finds the lease short waits for the one take in flight.
        outcome = await state.refill!;
        state.waitingRequests--;
        state.waitingCost -= cost;
      }
      next = this.answer(state, cost, this.now(), outcome);
      if (typeof next !== 'number') return next;
    }
  }

  /** The lease's answer at `now`, null to pass the request on to the store, or what it needs first. */
  private answer(state: LeaseState, cost: number, now: number, outcome: TakeOutcome | null): Decision | null | Next {
    const held = this.fromHeld(state, cost, now);
    if (held) return held;
    if (state.deniedUntil > now && cost >= state.deniedNeed) {
      if (holdsAny(state) && coveredWithHeld(state, cost, now)) return GIVE_BACK;
      // The store's retry_after is for the units it refused: a request needing more of some
      // limit fits later, by as much as only the store knows, so it is asked.
      if (sumOfCosts(state.resource, cost) === sumOfCosts(state.resource, state.deniedNeed)) {
        // Just denied to a take this request waited for: the store's answer. Later ones find it standing.
        return this.denialOf(state, now, outcome === 'denied' ? 'STORE' : 'LEASE');
      }
    }
    // A take denied for another cost, or for one that never fits: the store answers this request itself.
    if (outcome === 'denied') return null;
    // The store failed on the take: asking it again now would only wait out another deadline.
    if (outcome !== null && outcome !== 'units') throw outcome.failed;
    if (!state.refill && !isHot(demandAt(state.demand, now, true))) return null;
    return TAKE;
  }

  /** The key's lease state, its demand counted; null while the key is cold. */
  private stateFor(input: AcquireInput, now: number): LeaseState | null {
    let state = this.states.get(input.scope);
    if (state && state.resource !== input.resource) {
      // The policy was reloaded with new numbers for this resource: the key is as hot as it
      // was, and what its old lease holds goes back now (warmUp), taken under the old numbers.
      observe(state.demand, now, input.cost);
      state = this.warmUp(input, state.demand, now);
    } else if (!state) {
      const demand = this.coldDemand(input.scope, now);
      observe(demand, now, input.cost);
      if (!isHot(demand.requests)) return null;
      this.cold.delete(input.scope);
      state = this.warmUp(input, demand, now);
    } else {
      observe(state.demand, now, input.cost);
    }
    // Later already when a denial told a client to come back then (notYetDue).
    if (now > state.lastUsed) state.lastUsed = now;
    return state;
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

  /** Requests began to wait in the key's line: what the lease holds goes back, and it serves nothing ahead of them. */
  lineFormed(scope: string): void {
    const state = this.states.get(scope);
    if (!state) return;
    this.lined(state, this.now());
    if (holdsAny(state)) void this.giveBack(state);
  }

  private lined(state: LeaseState, now: number): void {
    state.linedUntil = now + state.resource.lease.ttlMs;
    state.deniedUntil = 0;
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
      for (const [scope, demand] of this.cold) if (now - demand.at >= SWEEP_EVERY_MS) this.cold.delete(scope);
    }
    await Promise.all(returning);
  }

  /** Gives back every lease (shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.states.values()].map((s) => s.refill));
    await Promise.all([...this.holding].map((s) => this.giveBack(s)));
    this.states.clear();
  }

  /**
   * A grant from what the lease holds when every limit has the units due; a denial when it holds
   * them but some are not due yet (its retry_after: when they are), or null for a request that
   * may not be told to wait for them (`mayWait` false); null when it holds too few.
   */
  private fromHeld(state: LeaseState, cost: number, now: number, mayWait = true): Decision | null {
    if (now >= state.expiresAt) return null;
    const limits = state.resource.limits;
    let dueAt = now;
    let waitingOn = 0;
    for (let i = 0; i < limits.length; i++) {
      const need = costFor(limits[i]!, cost);
      const held = state.held[i]!;
      if (held.total < need) return null;
      if (held.stepMs > 0 && held.dueBy(now) < need) {
        const at = held.dueAt(need);
        if (at > dueAt) {
          dueAt = at;
          waitingOn = i;
        }
      }
    }
    if (dueAt > now) return mayWait ? this.notYetDue(state, limits[waitingOn]!, cost, dueAt, now) : null;
    let tightest = 0;
    let tightestLeft = Number.POSITIVE_INFINITY;
    for (let i = 0; i < limits.length; i++) {
      const held = state.held[i]!;
      held.take(costFor(limits[i]!, cost), now);
      // What another request could get now: a schedule's units that are not due yet are not left.
      const left = (held.stepMs > 0 ? held.dueBy(now) : held.total) + state.storeLeft[i]!;
      if (left < tightestLeft) {
        tightest = i;
        tightestLeft = left;
      }
    }
    this.figures.held -= sumOfCosts(state.resource, cost);
    this.figures.served++;
    if (this.runningLow(state, now)) this.refill(state, cost);
    return granted(limits[tightest]!, 'LEASE', {
      remaining: tightestLeft,
      resetAfterMs: Math.max(0, state.resetAt - now),
      decidedAt: state.takenAt,
    });
  }

  /** The lease holds the units, and the schedule has them due at `dueAt`: not sooner. */
  private notYetDue(state: LeaseState, limit: Limit, cost: number, dueAt: number, now: number): Decision {
    this.figures.served++;
    // Its client comes back then: idle or not, the units it was told of are held until it has.
    state.lastUsed = Math.max(state.lastUsed, dueAt);
    if (this.runningLow(state, now)) this.refill(state, cost);
    const need = costFor(limit, cost);
    const retryAfterMs = dueAt - now;
    return denied(
      limit,
      'LEASE',
      { remaining: 0, retryAfterMs, resetAfterMs: Math.max(0, state.resetAt - now), decidedAt: state.takenAt },
      denialReason(limit, 0, retryAfterMs, need),
    );
  }

  /**
   * The store's denial of the last take, to a request of the cost it was denied for: `STORE` to
   * the requests that waited for that take, `LEASE` (a standing denial, no store call) to those
   * that find it standing.
   */
  private denialOf(state: LeaseState, now: number, decidedBy: 'LEASE' | 'STORE'): Decision {
    const denial = state.denial!;
    const limit = state.resource.limits[denial.decider]!;
    if (decidedBy === 'LEASE') this.figures.served++;
    const retryAfterMs = Math.max(0, state.retryAt - now);
    return denied(
      limit,
      decidedBy,
      { remaining: denial.remaining, retryAfterMs, resetAfterMs: Math.max(0, state.resetAt - now), decidedAt: denial.now },
      denialReason(limit, denial.remaining, retryAfterMs, state.deniedNeed),
    );
  }

  /** Refill ahead: before the lease runs out, while demand would use a new block. */
  private runningLow(state: LeaseState, now: number): boolean {
    if (state.refill || state.deniedUntil > now) return false;
    const limits = state.resource.limits;
    for (let i = 0; i < limits.length; i++) {
      const limit = limits[i]!;
      const held = state.held[i]!;
      const perSecond = demandAt(state.demand, now, limit.countsRequests);
      // Less held than half a horizon of demand: the take will be back before it is gone. A
      // schedule's units wait until they fall due, so demand past a slice's worth takes no more:
      // half a slice held, the next is taken, and what a sidecar holds (and would strand if it
      // died) stays within one and a half slices however hot the key.
      const wanted = (perSecond * LEASE_HORIZON_MS) / 1000;
      const slice = state.slices[i]!;
      if (held.total * 2 < (slice > 0 ? Math.min(wanted, slice) : wanted)) return true;
    }
    return false;
  }

  private refill(state: LeaseState, cost: number): void {
    const now = this.now();
    const { maxFraction } = state.resource.lease;
    const want = state.resource.limits.map((limit, i) => {
      const slice = state.slices[i]!;
      const block = blockSize({
        demandPerSecond: demandAt(state.demand, now, limit.countsRequests),
        capacity: limit.capacity,
        maxFraction,
        storeLeft: state.storeLeft[i]!,
        need: costFor(limit, cost),
        slice,
      });
      // Requests already waiting are served from this take as far as the store has room; of a
      // schedule, no more than a slice: units due later would only tell them to come back.
      const waiting = (limit.countsRequests ? state.waitingRequests : state.waitingCost) - state.held[i]!.total;
      return Math.max(block, slice > 0 ? Math.min(waiting, slice) : waiting);
    });
    this.figures.takes++;
    state.refill = this.store
      .take(state.resource, state.scope, cost, want, state.aheadMs, state.usable)
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
    state.storeLeft = verdict.left;
    state.resetAt = now + verdict.resetAfterMs;
    if ((verdict.waiting ?? 0) > 0) {
      this.lined(state, now);
      return 'denied';
    }
    if (!verdict.granted) {
      state.denial = verdict;
      state.deniedNeed = cost;
      // Store times are read on this clock from when the answer came: never sooner than they are.
      state.retryAt = now + verdict.retryAfterMs;
      // A schedule's units can be taken before they fall due: the next take may go that much
      // sooner, but not into this window of a window limit, which clipped how far ahead it took.
      const windowEndsAt = verdict.windowEndsInMs === Number.POSITIVE_INFINITY ? 0 : now + verdict.windowEndsInMs;
      const takeAgainAt = state.held[verdict.decider]!.stepMs > 0 ? Math.max(state.retryAt - state.aheadMs, windowEndsAt) : state.retryAt;
      state.deniedUntil = verdict.retryAfterMs === Number.POSITIVE_INFINITY ? 0 : Math.min(takeAgainAt, now + state.resource.lease.ttlMs);
      return 'denied';
    }
    state.deniedUntil = 0;
    // Units left from a closed window must not mix with the new ones: give them back first.
    if (now >= state.expiresAt && this.holding.has(state)) void this.giveBack(state);
    for (let i = 0; i < state.held.length; i++) {
      state.held[i]!.add(now + verdict.dueInMs[i]!, verdict.taken[i]!);
      this.figures.held += verdict.taken[i]!;
    }
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
    const units = state.held.map((held) => held.clear());
    const takenAt = state.takenAt;
    const heldBack = units.reduce((a, b) => a + b, 0);
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

  private coldDemand(scope: string, now: number): Demand {
    let demand = this.cold.get(scope);
    if (!demand) {
      demand = { requests: 0, units: 0, at: now };
      this.cold.set(scope, demand);
      if (this.cold.size > this.options.maxTrackedKeys) this.cold.delete(this.cold.keys().next().value!);
    }
    return demand;
  }

  /** Lease state for a key that has become hot, its request rate carried over. */
  private warmUp(input: AcquireInput, demand: Demand, now: number): LeaseState {
    const old = this.states.get(input.scope);
    if (old && this.holding.has(old)) void this.giveBack(old);
    const { limits, lease } = input.resource;
    const steps = limits.map((limit) => algorithmOf(limit).scheduleStepMs?.(limit) ?? 0);
    const state: LeaseState = {
      resource: input.resource,
      scope: input.scope,
      held: steps.map((stepMs) => new HeldUnits(stepMs)),
      slices: steps.map((stepMs, i) => (stepMs > 0 ? sliceUnits(limits[i]!.capacity, lease.maxFraction, stepMs) : 0)),
      storeLeft: limits.map(() => Number.POSITIVE_INFINITY),
      takenAt: 0,
      expiresAt: 0,
      resetAt: 0,
      aheadMs: lease.ttlMs / 2,
      usable: lowestUsable(input.resource),
      refill: null,
      deniedUntil: 0,
      retryAt: 0,
      deniedNeed: 0,
      denial: null,
      linedUntil: 0,
      waitingRequests: 0,
      waitingCost: 0,
      demand,
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

/** Enough requests per second that a lease serves more than it would strand. */
function isHot(requestsPerSecond: number): boolean {
  return requestsPerSecond * LEASE_HORIZON_MS >= MIN_LEASED_REQUESTS * 1000;
}

function holdsAny(state: LeaseState): boolean {
  return state.held.some((held) => held.total > 0);
}

/** What the lease has due at `now` plus what the store had left at the last take would grant a request of `cost`. */
function coveredWithHeld(state: LeaseState, cost: number, now: number): boolean {
  const limits = state.resource.limits;
  for (let i = 0; i < limits.length; i++) if (state.held[i]!.dueBy(now) + state.storeLeft[i]! < costFor(limits[i]!, cost)) return false;
  return true;
}

function sumOfCosts(resource: Resource, cost: number): number {
  let sum = 0;
  for (const limit of resource.limits) sum += costFor(limit, cost);
  return sum;
}
