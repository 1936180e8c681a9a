// The waiting lines of the embedded store: the twin of line.lua and wait.lua, for one process.
// Same order (priority, then the lane served least for its share, then arrival), same states,
// same events; the semantic suite runs against both stores.
import type { Resource } from '../../config/policy.js';
import type { LineEvents, LineVerdict, StoreVerdict, Ticket } from '../store.js';

/** A ticket in line. */
interface Waiting extends Omit<Ticket, 'waitMs'> {
  /** What the store answers as the ticket: "<arrival>|<n>|<id>". */
  key: string;
  /** Sequence of arrival in this process: first come, first served. */
  order: number;
  dropAt: number;
}

/** One scope's line: per lane, tickets in the order they are served; each lane's virtual time. */
interface ScopeLine {
  lanes: Waiting[][];
  virtual: number[];
  byKey: Map<string, Waiting>;
  /** The soonest dropAt in the line: nothing to prune before it. */
  nextDropAt: number;
}

/**
 * How the store decides for the line: commits a grant when `commit`. A denial with a `reason` is
 * the store's own (no room for the scope), not the limits'.
 */
export type DecideFn = (resource: Resource, scope: string, cost: number, permitId: string, usable: number, commit: boolean) => StoreVerdict;

/** Tickets served by one call at most, as wait.lua. */
const MAX_SERVED = 64;
/** A ticket served by another call keeps its verdict this long, for a retry or leave to collect (as wait.lua). */
const SERVED_KEEP_MS = 2_000;

export class MemoryLines {
  private readonly lines = new Map<string, ScopeLine>();
  /** Verdicts of tickets served by another call, by ticket key, oldest first. */
  private readonly served = new Map<string, { verdict: StoreVerdict; dropAt: number }>();
  private events: LineEvents | null = null;
  private order = 0;

  constructor(
    private readonly now: () => number,
    private readonly decide: DecideFn,
  ) {}

  listen(events: LineEvents): void {
    this.events = events;
  }

  /** Tickets in the scope's line, after dropping those whose time is up. */
  waiting(scope: string): number {
    const line = this.lines.get(scope);
    if (!line) return 0;
    this.prune(scope, line);
    return line.byKey.size;
  }

  /** The highest priority waiting in the scope's line; undefined when nobody waits. */
  firstPriority(scope: string): number | undefined {
    const line = this.lines.get(scope);
    if (!line || this.waiting(scope) === 0) return undefined;
    return this.first(line, null)!.priority;
  }

  join(resource: Resource, scope: string, ticket: Ticket, maxWaiters: number): LineVerdict {
    const existing = this.lines.get(scope);
    if (existing) this.prune(scope, existing);
    let line = this.lines.get(scope);
    const check = this.decide(resource, scope, ticket.cost, ticket.permitId, ticket.usable, false);
    // The store has no room for the scope: denied now, by the store's own reason, not kept waiting.
    if (check.reason !== undefined || (!check.granted && check.retryAfterMs === Number.POSITIVE_INFINITY)) return answer('never', check, this.waiting(scope));
    if (!line || line.byKey.size === 0) {
      if (check.granted) return answer('granted', this.decide(resource, scope, ticket.cost, ticket.permitId, ticket.usable, true)!, 0);
      line = { lanes: [], virtual: [], byKey: new Map(), nextDropAt: Number.POSITIVE_INFINITY };
      this.lines.set(scope, line);
      this.events && queueMicrotask(() => this.events?.formed(scope));
    }
    const firstBefore = this.first(line, resource);
    const waiting: Waiting = { key: `${this.now()}|${++this.order}|${ticket.id}`, ...ticket, order: this.order, dropAt: this.now() + ticket.waitMs };
    this.activate(line, resource, ticket.lane);
    insert((line.lanes[ticket.lane - 1] ??= []), waiting);
    line.byKey.set(waiting.key, waiting);
    line.nextDropAt = Math.min(line.nextDropAt, waiting.dropAt);
    return this.afterServing(resource, scope, line, firstBefore, waiting, maxWaiters);
  }

  retry(resource: Resource, scope: string, key: string): LineVerdict {
    const line = this.lines.get(scope);
    if (line) this.prune(scope, line);
    const served = this.collect(key);
    if (served) return answer('granted', served, this.waiting(scope));
    const waiting = line?.byKey.get(key);
    if (!line || !waiting) return answer('gone', this.fullVerdict(), this.waiting(scope));
    return this.afterServing(resource, scope, line, this.first(line, resource), waiting, Number.POSITIVE_INFINITY);
  }

  leave(resource: Resource, scope: string, key: string): LineVerdict {
    const line = this.lines.get(scope);
    if (line) this.prune(scope, line);
    const served = this.collect(key);
    if (served) return answer('granted', served, this.waiting(scope));
    const waiting = line?.byKey.get(key);
    if (line && waiting) {
      const firstBefore = this.first(line, resource);
      this.remove(line, waiting);
      this.afterServing(resource, scope, line, firstBefore, null, Number.POSITIVE_INFINITY);
    }
    return answer('gone', this.fullVerdict(), this.waiting(scope));
  }

  /** Serves whoever in the scope's line fits now (before a request that does not wait is decided, as acquire.lua). */
  serve(resource: Resource, scope: string): void {
    const line = this.lines.get(scope);
    if (!line) return;
    this.prune(scope, line);
    if (this.lines.has(scope)) this.afterServing(resource, scope, line, this.first(line, resource), null, Number.POSITIVE_INFINITY);
  }

  /** Budget came back to the scope: the sidecar of each lane's first ticket is told to ask again. */
  wake(scope: string): void {
    const line = this.lines.get(scope);
    if (!line || !this.events) return;
    for (const lane of line.lanes) {
      const first = lane?.[0];
      if (first) queueMicrotask(() => this.events?.wake(first.id));
    }
  }

  /** Serves the line, then answers the caller (whose ticket may have been served). */
  private afterServing(resource: Resource, scope: string, line: ScopeLine, firstBefore: Waiting | undefined, caller: Waiting | null, maxWaiters: number): LineVerdict {
    let outcome: LineVerdict | null = null;
    let first: Waiting | undefined;
    let turnInMs = 0;
    for (let served = 0; ; served++) {
      first = this.first(line, resource);
      if (!first || served === MAX_SERVED) break;
      const verdict = this.decide(resource, scope, first.cost, first.permitId, first.usable, true);
      if (verdict.reason !== undefined || (!verdict.granted && verdict.retryAfterMs !== Number.POSITIVE_INFINITY)) {
        turnInMs = verdict.retryAfterMs;
        break;
      }
      this.remove(line, first);
      if (verdict.granted && resource.lanes.length > 1) line.virtual[first.lane - 1] = (line.virtual[first.lane - 1] ?? 0) + first.cost / resource.laneShares[first.lane - 1]!;
      if (first === caller) outcome = answer(verdict.granted ? 'granted' : 'never', verdict, 0);
      else this.tell(first, verdict);
    }
    if (first && first !== firstBefore && first !== caller) {
      const { id } = first;
      const inMs = turnInMs;
      if (Number.isFinite(inMs)) queueMicrotask(() => this.events?.turn(id, inMs));
    }
    const count = line.byKey.size;
    if (count === 0) this.lines.delete(scope);
    if (outcome) return { ...outcome, waiting: count };
    if (!caller) return answer('gone', this.fullVerdict(), count);
    if (count > maxWaiters) {
      this.remove(line, caller);
      if (line.byKey.size === 0) this.lines.delete(scope);
      return answer('full', this.fullVerdict(), line.byKey.size);
    }
    return { ...answer('waiting', this.fullVerdict(), count), ticket: caller.key, turnInMs: first === caller ? turnInMs : Number.POSITIVE_INFINITY };
  }

  /** Tells the ticket's sidecar; a grant is also kept for the ticket's retry or leave to collect. */
  private tell(served: Waiting, verdict: StoreVerdict): void {
    const { id, key } = served;
    if (verdict.granted) {
      const now = this.now();
      for (const [old, kept] of this.served) {
        if (kept.dropAt > now) break;
        this.served.delete(old);
      }
      this.served.set(key, { verdict, dropAt: now + SERVED_KEEP_MS });
    }
    queueMicrotask(() => this.events?.answered(id, verdict));
  }

  /** The verdict a ticket was served with by another call, once, while it is kept. */
  private collect(key: string): StoreVerdict | undefined {
    const kept = this.served.get(key);
    if (!kept) return undefined;
    this.served.delete(key);
    return kept.dropAt > this.now() ? kept.verdict : undefined;
  }

  /** An idle lane that starts waiting joins the others at the least served of them (as wait.lua). */
  private activate(line: ScopeLine, resource: Resource, lane: number): void {
    if (resource.lanes.length <= 1 || (line.lanes[lane - 1]?.length ?? 0) > 0) return;
    let least = Number.POSITIVE_INFINITY;
    line.lanes.forEach((tickets, l) => {
      if (l !== lane - 1 && tickets.length > 0) least = Math.min(least, line.virtual[l] ?? 0);
    });
    if (Number.isFinite(least)) line.virtual[lane - 1] = Math.max(line.virtual[lane - 1] ?? 0, least);
  }

  /** First in line: highest priority, then the lane served least for its share, then arrival. */
  private first(line: ScopeLine, resource: Resource | null): Waiting | undefined {
    let best: Waiting | undefined;
    const shares = resource !== null && resource.lanes.length > 1;
    for (let l = 0; l < line.lanes.length; l++) {
      const head = line.lanes[l]?.[0];
      if (!head) continue;
      if (!best || head.priority > best.priority) {
        best = head;
        continue;
      }
      if (head.priority < best.priority) continue;
      const time = shares ? (line.virtual[l] ?? 0) : 0;
      const bestTime = shares ? (line.virtual[best.lane - 1] ?? 0) : 0;
      if (time < bestTime || (time === bestTime && head.order < best.order)) best = head;
    }
    return best;
  }

  private remove(line: ScopeLine, waiting: Waiting): void {
    const lane = line.lanes[waiting.lane - 1]!;
    lane.splice(lane.indexOf(waiting), 1);
    line.byKey.delete(waiting.key);
  }

  /** Drops tickets whose time is up: their sidecar has given up on them. */
  private prune(scope: string, line: ScopeLine): void {
    const now = this.now();
    if (now < line.nextDropAt) return;
    line.nextDropAt = Number.POSITIVE_INFINITY;
    for (const waiting of line.byKey.values()) {
      if (waiting.dropAt <= now) this.remove(line, waiting);
      else line.nextDropAt = Math.min(line.nextDropAt, waiting.dropAt);
    }
    if (line.byKey.size === 0) this.lines.delete(scope);
  }

  private fullVerdict(): StoreVerdict {
    return { granted: false, decider: 0, remaining: 0, retryAfterMs: Number.POSITIVE_INFINITY, resetAfterMs: 0, now: this.now() };
  }
}

function answer(state: LineVerdict['state'], verdict: StoreVerdict, waiting: number): LineVerdict {
  return { ...verdict, state, ticket: '', turnInMs: Number.POSITIVE_INFINITY, waiting };
}

/** Into a lane, after every ticket of the same or higher priority. */
function insert(lane: Waiting[], waiting: Waiting): void {
  let at = lane.length;
  while (at > 0 && lane[at - 1]!.priority < waiting.priority) at--;
  lane.splice(at, 0, waiting);
}
