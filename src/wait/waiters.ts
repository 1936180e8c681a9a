// The requests of this sidecar that wait in their scopes' lines (max_wait). The line itself is
// in the store (wait.lua, or the memory store's twin), one for every sidecar; here each waiter
// is held until the store serves it, its max_wait passes, or its caller goes away, and the
// store is asked again only when the waiter's turn can have come: at the time the store said its
// units fall due, when told that budget came back, or (a message may be lost, a sidecar ahead may
// have died) when nothing was heard of its scope for a while.
import type { AcquireInput, WaitTerms } from '../decide/decision.js';
import type { LineEvents, LineVerdict, Store, StoreVerdict, Ticket } from '../store/store.js';
import { StoreUnavailable } from '../guard/store-unavailable.js';

/** A scope nothing was heard of for this long is asked about again (its first waiter here). */
export const STALL_CHECK_MS = 1_000;
/** How often scopes are looked at for that: a stall is noticed within STALL_CHECK_MS and a quarter. */
const STALL_LOOK_EVERY_MS = STALL_CHECK_MS / 4;

/** How a wait ended. */
export type WaitEnd = 'granted' | 'never' | 'timeout' | 'cancelled' | 'closed' | 'lost' | 'failed';

/** A request that waits: its input, and what its ticket says. */
export interface WaitRequest {
  input: AcquireInput;
  terms: WaitTerms;
  /** Names the concurrency slot it is given; empty when none. */
  permitId: string;
  /** The fraction of every limit it may use (its priority's). */
  usable: number;
}

/** What waiting came to. A store failure rejects instead (StoreUnavailable), for the failure policy. */
export interface Waited {
  end: 'granted' | 'never' | 'timeout' | 'cancelled' | 'closed' | 'lost';
  /** The store's verdict when granted or never; the last known otherwise (or null). */
  verdict: StoreVerdict | null;
  waitedMs: number;
  /** Tickets in the scope's line when last heard. */
  waiting: number;
}

/** Refused to wait: the scope's line, or this sidecar, holds as many waiters as it may (RESOURCE_EXHAUSTED). */
export class WaitRefused extends Error {
  constructor(
    readonly which: 'scope' | 'sidecar',
    message: string,
  ) {
    super(message);
    this.name = 'WaitRefused';
  }
}

/**
 * What the metrics hear about waiting. A request that starts to wait then either ends or is
 * refused by its scope's full line (the store says so once it has started); one refused by this
 * sidecar never starts.
 */
export interface WaitObserver {
  started(input: AcquireInput): void;
  ended(input: AcquireInput, end: WaitEnd, waitedMs: number): void;
  refused(input: AcquireInput, which: 'scope' | 'sidecar'): void;
}

export interface WaitersOptions {
  sidecarId: string;
  /** Requests waiting in this sidecar at once (server.max_waiters). */
  maxWaiters: number;
  /**
   * Gives back a grant nobody will receive (its waiter gave up before the store's answer came).
   * Called once per ticket; `ticketId` makes the refund idempotent.
   */
  giveBack: (input: AcquireInput, permitId: string, verdict: StoreVerdict, ticketId: string) => void;
  /** Requests began to wait in a scope's line somewhere: leases must not serve ahead of them. */
  lineFormed?: (scope: string) => void;
  observer?: WaitObserver;
  now?: () => number;
}

interface Waiter {
  id: string;
  request: WaitRequest;
  /** What the store holds: empty until its join is answered. */
  ticket: string;
  startedAt: number;
  timer: NodeJS.Timeout;
  /** A turn told by the store: ask again then. */
  turn: NodeJS.Timeout | undefined;
  asking: boolean;
  askAgain: boolean;
  /** Its max_wait passed: it is leaving the line, and the store's answer says whether it was served first. */
  due: boolean;
  waiting: number;
  /** Set once it is answered; a give-up (timeout, cancelled, failed) leaves a grant to give back. */
  ended: WaitEnd | null;
  settle: (waited: Waited) => void;
  fail: (err: unknown) => void;
  onAbort: (() => void) | null;
}

interface ScopeWaiters {
  /** In the order they began to wait here. */
  waiters: Set<Waiter>;
  lastHeard: number;
  stall: NodeJS.Timeout;
}

/** Tickets given up on are remembered this long past their max_wait: a grant the store makes of them is given back. */
const GIVEN_UP_MS = 10_000;

export class Waiters implements LineEvents {
  private readonly byId = new Map<string, Waiter>();
  private readonly scopes = new Map<string, ScopeWaiters>();
  /** Given up on, by ticket id: what a late grant must be given back with. In the order given up. */
  private readonly givenUp = new Map<string, { request: WaitRequest; until: number }>();
  private sequence = 0;
  private readonly now: () => number;

  constructor(
    private readonly store: Store,
    private readonly options: WaitersOptions,
  ) {
    this.now = options.now ?? Date.now;
    store.listen(options.sidecarId, this);
  }

  /** Requests waiting in this sidecar. */
  get size(): number {
    return this.byId.size;
  }

  /** True while a request of this sidecar waits in the scope's line. */
  waitingIn(scope: string): boolean {
    return this.scopes.has(scope);
  }

  /** Waits in the scope's line for a grant. Rejects with WaitRefused, or a store failure. */
  wait(request: WaitRequest): Promise<Waited> {
    const { input, terms } = request;
    if (this.byId.size >= this.options.maxWaiters) {
      this.options.observer?.refused(input, 'sidecar');
      return Promise.reject(new WaitRefused('sidecar', `sidecar waiting limit reached: ${this.options.maxWaiters} requests wait in this sidecar (server.max_waiters)`));
    }
    return new Promise<Waited>((resolve, reject) => {
      const id = `${this.options.sidecarId}.${++this.sequence}`;
      const waiter: Waiter = {
        id,
        request,
        ticket: '',
        startedAt: this.now(),
        timer: setTimeout(() => this.timedOut(waiter), terms.maxWaitMs),
        turn: undefined,
        asking: true,
        askAgain: false,
        due: false,
        waiting: 0,
        ended: null,
        settle: resolve,
        fail: reject,
        onAbort: null,
      };
      if (terms.signal) {
        if (terms.signal.aborted) queueMicrotask(() => this.giveUp(waiter, 'cancelled'));
        waiter.onAbort = () => this.giveUp(waiter, 'cancelled');
        terms.signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.byId.set(id, waiter);
      this.scopeOf(input.scope).waiters.add(waiter);
      this.options.observer?.started(input);
      const ticket: Ticket = { id, cost: input.cost, priority: input.priority, usable: request.usable, lane: terms.lane, permitId: request.permitId, waitMs: terms.maxWaitMs };
      this.store.join(input.resource, input.scope, ticket, input.resource.maxWaiters).then(
        (verdict) => this.heardBack(waiter, verdict),
        (err: unknown) => this.failed(waiter, err),
      );
    });
  }

  // LineEvents: what the store tells this sidecar.

  answered(ticketId: string, verdict: StoreVerdict): void {
    const waiter = this.byId.get(ticketId);
    if (waiter) {
      this.heard(waiter.request.input.scope);
      this.finish(waiter, verdict.granted ? 'granted' : 'never', verdict);
      return;
    }
    if (verdict.granted) this.giveBackOnce(ticketId, verdict);
  }

  turn(ticketId: string, inMs: number): void {
    const waiter = this.byId.get(ticketId);
    if (!waiter) return;
    this.heard(waiter.request.input.scope);
    this.askAt(waiter, inMs);
  }

  wake(ticketId: string): void {
    const waiter = this.byId.get(ticketId);
    if (waiter) this.ask(waiter);
  }

  formed(scope: string): void {
    this.options.lineFormed?.(scope);
  }

  resync(): void {
    for (const waiter of this.byId.values()) if (waiter.ticket !== '') this.ask(waiter);
  }

  /** The store failed for everyone (its circuit opened): every waiter is answered by its failure policy now. */
  storeDown(err: StoreUnavailable): void {
    for (const waiter of [...this.byId.values()]) this.failed(waiter, err);
  }

  /** Every waiter leaves the line (shutdown), charged nothing, and its caller is told so. */
  close(): void {
    for (const waiter of [...this.byId.values()]) this.giveUp(waiter, 'closed');
  }

  private heardBack(waiter: Waiter, verdict: LineVerdict): void {
    waiter.asking = false;
    if (waiter.ended !== null) {
      // Given up on while the store was asked: leave, or give back what it was served. (One
      // answered already, by a message that came first, has nothing to undo.)
      if (!this.givenUp.has(waiter.id)) return;
      if (verdict.state === 'granted') this.giveBackOnce(waiter.id, verdict);
      else if (verdict.state === 'waiting') this.leave(waiter.id, waiter.request, verdict.ticket);
      return;
    }
    waiter.waiting = verdict.waiting;
    this.heard(waiter.request.input.scope);
    switch (verdict.state) {
      case 'granted':
        this.finish(waiter, 'granted', verdict);
        return;
      case 'never':
        this.finish(waiter, 'never', verdict);
        return;
      case 'gone':
        this.finish(waiter, 'lost', null);
        // A store that lost one ticket (flushed, restarted empty) has likely lost the scope's
        // others: the next waiter here asks now, not at one stall check each.
        this.askFirst(this.scopes.get(waiter.request.input.scope));
        return;
      case 'full': {
        this.forget(waiter);
        const { input } = waiter.request;
        this.options.observer?.refused(input, 'scope');
        waiter.fail(new WaitRefused('scope', `the line of resource "${input.resource.name}" for this scope is full: ${input.resource.maxWaiters} requests wait across every sidecar (wait.max_waiters)`));
        return;
      }
      case 'waiting':
        waiter.ticket = verdict.ticket;
        if (waiter.due) {
          this.leaveAtDeadline(waiter);
        } else if (waiter.askAgain) {
          waiter.askAgain = false;
          this.ask(waiter);
        } else if (Number.isFinite(verdict.turnInMs)) {
          this.askAt(waiter, verdict.turnInMs);
        }
    }
  }

  /** Asks the store about the waiter now (once at a time; a second ask waits for the first). */
  private ask(waiter: Waiter): void {
    clearTimeout(waiter.turn);
    waiter.turn = undefined;
    if (waiter.due) return;
    if (waiter.asking || waiter.ticket === '') {
      waiter.askAgain = true;
      return;
    }
    waiter.asking = true;
    const { input } = waiter.request;
    this.store.retry(input.resource, input.scope, waiter.ticket).then(
      (verdict) => this.heardBack(waiter, verdict),
      (err: unknown) => this.failed(waiter, err),
    );
  }

  private askAt(waiter: Waiter, inMs: number): void {
    clearTimeout(waiter.turn);
    waiter.turn = inMs <= 0 ? undefined : setTimeout(() => this.ask(waiter), inMs);
    if (inMs <= 0) this.ask(waiter);
  }

  /** The store could not be asked: the waiter is answered by its failure policy (the caller's). */
  private failed(waiter: Waiter, err: unknown): void {
    waiter.asking = false;
    if (waiter.ended !== null) return;
    if (err instanceof StoreUnavailable && err.late) {
      err.late.then((late) => {
        const verdict = late as LineVerdict;
        if (verdict.state === 'waiting') this.leave(waiter.id, waiter.request, verdict.ticket);
        else if (verdict.state === 'granted') this.giveBackOnce(waiter.id, verdict);
      }, () => undefined);
    }
    // The late answer is undone above, once: the waiters are failed without it, or the failure
    // policy would undo it again for each of them (Decider.reconcile), refunding grants others received.
    const told = err instanceof StoreUnavailable && err.late ? new StoreUnavailable(err.reason, err.message, { cause: err.cause }) : err;
    // One call's script error is that waiter's; a store that fails fails every waiter of the scope.
    const scope = this.scopes.get(waiter.request.input.scope);
    const failing = err instanceof StoreUnavailable && err.reason !== 'script' && scope ? [...scope.waiters] : [waiter];
    for (const each of failing) {
      if (each.ended !== null) continue;
      this.end(each, 'failed');
      // A grant the store makes of it is given back. Its ticket leaves: a frozen Redis runs the
      // leave when it thaws; a ticket left in line would hold the line, and every request of the
      // scope that does not wait, until its max_wait.
      this.remember(each);
      this.leaveIfHeld(each);
      each.fail(told);
    }
  }

  /** Marks it answered and lets go of it. */
  private end(waiter: Waiter, end: WaitEnd): number {
    waiter.ended = end;
    this.forget(waiter);
    const waitedMs = this.now() - waiter.startedAt;
    this.options.observer?.ended(waiter.request.input, end, waitedMs);
    return waitedMs;
  }

  private finish(waiter: Waiter, end: 'granted' | 'never' | 'lost', verdict: StoreVerdict | null): void {
    if (waiter.ended !== null) return;
    const waitedMs = this.end(waiter, end);
    waiter.settle({ end, verdict, waitedMs, waiting: waiter.waiting });
  }

  /**
   * Its max_wait passed. The store has the last word: the ticket leaves the line, and if the line
   * served it first it is granted, later by that one call, rather than given back. (The store
   * drops a ticket max_wait after it joined, a little after this timer started, so at twice a
   * limit's demand the first in line is often served just as its time here is up.)
   */
  private timedOut(waiter: Waiter): void {
    if (waiter.ended !== null) return;
    waiter.due = true;
    clearTimeout(waiter.turn);
    // A call under way answers first (heardBack), then it leaves.
    if (!waiter.asking) this.leaveAtDeadline(waiter);
  }

  private leaveAtDeadline(waiter: Waiter): void {
    const { input } = waiter.request;
    const ticket = waiter.ticket;
    // It leaves here, once: nothing else makes it leave again.
    waiter.ticket = '';
    waiter.asking = true;
    this.store.leave(input.resource, input.scope, ticket).then(
      (verdict) => {
        waiter.asking = false;
        // Cancelled meanwhile: a grant it was served goes back.
        if (waiter.ended !== null) {
          if (verdict.state === 'granted') this.giveBackOnce(waiter.id, verdict);
        } else if (verdict.state === 'granted') {
          this.finish(waiter, 'granted', verdict);
        } else {
          this.giveUp(waiter, 'timeout');
        }
      },
      () => {
        // The store may still serve it before it drops it: remembered, a grant is given back.
        waiter.asking = false;
        this.giveUp(waiter, 'timeout');
      },
    );
  }

  /** Its max_wait passed or its caller went away: it leaves the line, charged nothing. */
  private giveUp(waiter: Waiter, end: 'timeout' | 'cancelled' | 'closed'): void {
    if (waiter.ended !== null) return;
    const waitedMs = this.end(waiter, end);
    this.remember(waiter);
    this.leaveIfHeld(waiter);
    waiter.settle({ end, verdict: null, waitedMs, waiting: waiter.waiting });
  }

  /** A waiter answered leaves the line, if it holds a ticket there; one being asked about leaves when the answer comes (heardBack). */
  private leaveIfHeld(waiter: Waiter): void {
    if (waiter.ticket !== '' && !waiter.asking) this.leave(waiter.id, waiter.request, waiter.ticket);
  }

  private leave(id: string, request: WaitRequest, ticket: string): void {
    const { input } = request;
    this.store.leave(input.resource, input.scope, ticket).then(
      // Served before it left: nobody will receive it.
      (verdict) => verdict.state === 'granted' && this.giveBackOnce(id, verdict),
      () => undefined, // the store drops the ticket when its time is up
    );
  }

  /** A grant of a ticket given up on goes back, once, however many answers report it. */
  private giveBackOnce(id: string, verdict: StoreVerdict): void {
    const gone = this.givenUp.get(id);
    if (!gone) return;
    this.givenUp.delete(id);
    this.options.giveBack(gone.request.input, gone.request.permitId, verdict, id);
  }

  private forget(waiter: Waiter): void {
    this.byId.delete(waiter.id);
    clearTimeout(waiter.timer);
    clearTimeout(waiter.turn);
    if (waiter.onAbort) waiter.request.terms.signal?.removeEventListener('abort', waiter.onAbort);
    const scope = this.scopes.get(waiter.request.input.scope);
    if (!scope) return;
    scope.waiters.delete(waiter);
    if (scope.waiters.size === 0) {
      clearInterval(scope.stall);
      this.scopes.delete(waiter.request.input.scope);
    }
  }

  /** Remembers a ticket given up on, so that a grant the store makes of it is given back. Bounded. */
  private remember(waiter: Waiter): void {
    const now = this.now();
    // As long as the store may still serve its ticket (until its max_wait is up), and a while after.
    const until = Math.max(now, waiter.startedAt + waiter.request.terms.maxWaitMs) + GIVEN_UP_MS;
    this.givenUp.set(waiter.id, { request: waiter.request, until });
    for (const [id, entry] of this.givenUp) {
      if (entry.until > now && this.givenUp.size <= this.options.maxWaiters) break;
      this.givenUp.delete(id);
    }
  }

  private scopeOf(scope: string): ScopeWaiters {
    let entry = this.scopes.get(scope);
    if (!entry) {
      const created: ScopeWaiters = { waiters: new Set(), lastHeard: this.now(), stall: setInterval(() => this.checkStall(created), STALL_LOOK_EVERY_MS) };
      created.stall.unref?.();
      entry = created;
      this.scopes.set(scope, entry);
    }
    return entry;
  }

  private heard(scope: string): void {
    const entry = this.scopes.get(scope);
    if (entry) entry.lastHeard = this.now();
  }

  /** Nothing heard of the scope for a while: its first waiter here asks (the line may be stuck on a dead sidecar's ticket). */
  private checkStall(entry: ScopeWaiters): void {
    if (this.now() - entry.lastHeard < STALL_CHECK_MS) return;
    entry.lastHeard = this.now();
    this.askFirst(entry);
  }

  /** The scope's earliest waiter here asks the store now. */
  private askFirst(entry: ScopeWaiters | undefined): void {
    const first = entry?.waiters.values().next().value;
    if (first) this.ask(first);
  }
}
