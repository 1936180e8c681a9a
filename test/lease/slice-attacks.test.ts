// Attacks on leased schedule slices, on a fake clock over the memory store (the same semantics
// as Redis): mixed and large costs, limits of every kind on one resource, sidecars joining,
// leaving and dying, swinging demand, thousands of keys, settlements and revokes mid-slice, a
// slow store, a policy reload, extreme ttls and rates; then through real sidecars on a real
// Redis. After every run the grants are checked against every limit at every moment
// (docs/leases.md, "The invariant"), and denials from a lease against what the same sidecar
// does at their retry_after.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { costFor, type Resource } from '../../src/config/policy.js';
import { Decider } from '../../src/decide/decider.js';
import type { Decision } from '../../src/decide/decision.js';
import { scopeOf } from '../../src/decide/scope.js';
import { HeldUnits } from '../../src/lease/held-units.js';
import { IDLE_MS, Leases } from '../../src/lease/leases.js';
import { holdsSlots } from '../../src/limits/registry.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import type { Grant, LineEvents, LineVerdict, ScopeLook, Store, StoreVerdict, TakeVerdict, Ticket } from '../../src/store/store.js';
import { useSidecars } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const START = Date.UTC(2026, 0, 1, 12, 0, 0);

/** Lets every promise chain the last step started run to its end before the clock moves. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A fake clock with things scheduled on it: a slow store's answers. */
class FakeTime {
  now = START;
  private readonly queue: { at: number; seq: number; run: () => void }[] = [];
  private seq = 0;

  at(at: number, run: () => void): void {
    this.queue.push({ at, seq: this.seq++, run });
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Moves the clock by `ms`, running what falls due on the way, each at its own moment. */
  async advance(ms: number): Promise<void> {
    const until = this.now + ms;
    await settle();
    for (;;) {
      let next = -1;
      for (let i = 0; i < this.queue.length; i++) {
        const e = this.queue[i]!;
        if (e.at <= until && (next < 0 || e.at < this.queue[next]!.at || (e.at === this.queue[next]!.at && e.seq < this.queue[next]!.seq))) next = i;
      }
      if (next < 0) break;
      const [event] = this.queue.splice(next, 1);
      this.now = Math.max(this.now, event!.at);
      event!.run();
      await settle();
    }
    this.now = until;
    await settle();
  }
}

interface Delay {
  /** Until the store runs the call. */
  exec: number;
  /** From then until its answer arrives. */
  reply: number;
}

/**
 * The memory store, reached with a delay on the fake clock: a call runs `exec` ms after it is
 * made (store time is then) and its answer arrives `reply` ms later. It remembers when each key
 * was first used, what is on its way (units taken, units given back), and tells the ledger what
 * settlements gave back, when the store applied them.
 */
class SlowStore implements Store {
  readonly firstCall = new Map<string, number>();
  /** Units the store has charged to takes whose answers have not arrived. */
  inFlight = 0;
  /** Units a lease has let go of that the store has not got back yet. */
  returning = 0;

  constructor(
    readonly inner: MemoryStore,
    private readonly time: FakeTime,
    private readonly delay: () => Delay,
    private readonly credited: (resource: Resource, scope: string, units: readonly number[], grantedAt: number) => void,
  ) {}

  acquire(resource: Resource, scope: string, cost: number, permitId: string): Promise<StoreVerdict> {
    return this.call(scope, () => this.inner.acquire(resource, scope, cost, permitId));
  }

  take(resource: Resource, scope: string, cost: number, want: readonly number[], aheadMs: number): Promise<TakeVerdict> {
    let units = 0;
    return this.call(
      scope,
      () => this.inner.take(resource, scope, cost, want, aheadMs),
      (v) => {
        units = sum(v.taken);
        this.inFlight += units;
      },
      () => (this.inFlight -= units),
    );
  }

  release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    return this.call(
      scope,
      () => this.inner.release(resource, scope, grant, delta),
      () => {
        const back = resource.limits.map((limit) => (delta < 0 && !limit.countsRequests && !holdsSlots(limit) ? -delta : 0));
        if (delta < 0) this.credited(resource, scope, back, grant.grantedAt);
      },
    );
  }

  refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    // A lease's refund ids have dots; a revoke's (a permit id) never does.
    const leased = refundId.includes('.');
    if (leased) this.returning += sum(units);
    return this.call(
      scope,
      () => this.inner.refund(resource, scope, refundId, units, takenAt),
      (applied) => {
        if (leased) this.returning -= sum(units);
        else if (applied) this.credited(resource, scope, units, takenAt);
      },
    );
  }

  heartbeat(): Promise<number> {
    return Promise.resolve(1);
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }

  // Nothing here waits in line: the line passes straight to the memory store.
  join(resource: Resource, scope: string, ticket: Ticket, maxWaiters: number): Promise<LineVerdict> {
    return this.inner.join(resource, scope, ticket, maxWaiters);
  }

  retry(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return this.inner.retry(resource, scope, ticket);
  }

  leave(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return this.inner.leave(resource, scope, ticket);
  }

  inspect(resource: Resource, scope: string): Promise<ScopeLook> {
    return this.inner.inspect(resource, scope);
  }

  listen(sidecarId: string, events: LineEvents): void {
    this.inner.listen(sidecarId, events);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private call<T>(scope: string, run: () => Promise<T>, ran?: (v: T) => void, arrived?: () => void): Promise<T> {
    const { exec, reply } = this.delay();
    return new Promise<T>((resolve, reject) => {
      const go = () => {
        if (!this.firstCall.has(scope)) this.firstCall.set(scope, this.time.now);
        run().then((v) => {
          ran?.(v);
          const deliver = () => {
            arrived?.();
            resolve(v);
          };
          if (reply > 0) this.time.at(this.time.now + reply, deliver);
          else deliver();
        }, reject);
      };
      if (exec > 0) this.time.at(this.time.now + exec, go);
      else go();
    });
  }
}

interface LedgerEntry {
  /** Local time the units were served (or, for a credit, given back in the store). */
  at: number;
  /** Store time of the grant: the window its units count in. */
  win: number;
  /** Per limit; negative for a settlement that gave units back. */
  units: readonly number[];
  seq: number;
}

interface Excess {
  /** The most grants of a token bucket ever were above burst + rate x elapsed since the key's first call. */
  sinceFirst: number;
  /**
   * The same from any moment T on, with what the sidecars held (or had on the way) at T allowed
   * on top: a unit held then may be served later, anything else the store gives out after T.
   */
  fromAnyMoment: number;
  /** The most a window limit ever had above its capacity (a sliding window: its weighted count). */
  window: number;
  /** Units served outside the window they were taken in (must be 0). */
  outOfWindow: number;
}

/** Every grant and settlement of a world, checked against each limit when asked. */
class Ledger {
  private readonly scopes = new Map<string, { resource: Resource; entries: LedgerEntry[] }>();
  private readonly held: { at: number; units: number }[] = [];
  private seq = 0;

  grant(resource: Resource, scope: string, cost: number, at: number, win: number): void {
    this.add(resource, scope, at, win, resource.limits.map((limit) => costFor(limit, cost)));
  }

  credit(resource: Resource, scope: string, units: readonly number[], at: number, grantedAt: number): void {
    this.add(resource, scope, at, grantedAt, units.map((u) => -u));
  }

  /** What every live sidecar holds at `at`, and what is on its way between them and the store. */
  holding(at: number, units: number): void {
    this.held.push({ at, units });
  }

  excess(firstCall: ReadonlyMap<string, number>): Excess {
    const worst: Excess = { sinceFirst: -Infinity, fromAnyMoment: -Infinity, window: -Infinity, outOfWindow: 0 };
    for (const [scope, { resource, entries }] of this.scopes) {
      const sorted = [...entries].sort((a, b) => a.at - b.at || a.seq - b.seq);
      resource.limits.forEach((limit, i) => {
        if (limit.algorithm === 'token_bucket') {
          const first = firstCall.get(scope)!;
          const perMs = 1 / limit.intervalMs;
          // min over moments T of used(T) + held(T) - T x rate; the key's first call is one (nothing held).
          let anchor = -first * perMs;
          let h = 0;
          let used = 0;
          for (const e of sorted) {
            for (; h < this.held.length && this.held[h]!.at < e.at; h++) {
              if (this.held[h]!.at >= first) anchor = Math.min(anchor, used + this.held[h]!.units - this.held[h]!.at * perMs);
            }
            used += e.units[i]!;
            if (e.units[i]! <= 0) continue;
            worst.sinceFirst = Math.max(worst.sinceFirst, used - limit.capacity - (e.at - first) * perMs - EPS);
            worst.fromAnyMoment = Math.max(worst.fromAnyMoment, used - limit.capacity - e.at * perMs - anchor - EPS);
          }
        } else if (limit.algorithm === 'fixed_window' || limit.algorithm === 'sliding_window') {
          const P = limit.periodMs;
          const perWindow = new Map<number, number>();
          for (const e of sorted) {
            const w = Math.floor(e.win / P);
            perWindow.set(w, (perWindow.get(w) ?? 0) + e.units[i]!);
            if (e.units[i]! <= 0) continue;
            if (Math.floor(e.at / P) !== w) worst.outOfWindow++;
            const current = perWindow.get(w)!;
            const count = limit.algorithm === 'fixed_window' ? current : ((perWindow.get(w - 1) ?? 0) * (P - (e.at - w * P))) / P + current;
            worst.window = Math.max(worst.window, count - limit.capacity - EPS);
          }
        }
      });
    }
    return worst;
  }

  private add(resource: Resource, scope: string, at: number, win: number, units: number[]): void {
    let entry = this.scopes.get(scope);
    if (!entry) this.scopes.set(scope, (entry = { resource, entries: [] }));
    entry.entries.push({ at, win, units, seq: this.seq++ });
  }
}

/** Slack for floating-point counts: far below one unit. */
const EPS = 1e-6;
/** The resolution of an epoch time in ms as a double (2^-12 ms), with room to spare. */
const FLOAT_SLACK_MS = 0.0005;

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

interface Sidecar {
  leases: Leases;
  decider: Decider;
  /** Killed: it never serves nor gives back again. */
  dead: boolean;
  asked: number;
  granted: number;
  /** Units granted (the cost of each grant). */
  units: number;
  /** Denials decided by a lease. */
  leaseDenials: number;
}

interface WorldOptions {
  lease?: string;
  /** More fields of every resource, each line indented by four spaces. */
  extra?: string;
  delay?: () => Delay;
  maxLeasedKeys?: number;
}

/**
 * One memory store (behind SlowStore) and as many sidecars (a Decider with its Leases, as the
 * sidecar wires them) as a test makes, on one fake clock. `limits` is YAML for resource `r`.
 */
function world(limits: string, options: WorldOptions = {}) {
  const time = new FakeTime();
  const clock = () => time.now;
  const parse = (yaml: string) =>
    parsePolicy(
      `resources:\n  - name: r\n    keys: [k]\n    lease: ${options.lease ?? '{ enabled: true, max_fraction: 0.1, ttl: 1s }'}\n${options.extra ?? ''}    limits:\n${yaml}`,
      'p.yaml',
    ).resources.get('r')!;
  let resource = parse(limits);
  const ledger = new Ledger();
  const inner = new MemoryStore({ maxKeys: 100_000, now: clock, sweepEveryMs: 0 });
  const store = new SlowStore(inner, time, options.delay ?? (() => ({ exec: 0, reply: 0 })), (res, scope, units, grantedAt) =>
    ledger.credit(res, scope, units, time.now, grantedAt),
  );
  const sidecars: Sidecar[] = [];
  const failures: unknown[] = [];
  const scopes = new Map<string, string>();
  const scope = (key: string) => {
    let s = scopes.get(key);
    if (s === undefined) scopes.set(key, (s = scopeOf(resource, [key])));
    return s;
  };

  const w = {
    time,
    get resource() {
      return resource;
    },
    /** The policy file changed: requests from now on carry the resource with these limits. */
    reload(yaml: string): Resource {
      return (resource = parse(yaml));
    },
    store,
    ledger,
    sidecars,
    failures,
    scope,
    sidecar(): Sidecar {
      const max = options.maxLeasedKeys ?? 1000;
      const leases = new Leases(store, { maxLeasedKeys: max, maxTrackedKeys: 100 * max, now: clock, onRefundError: (err) => failures.push(err) });
      const s: Sidecar = { leases, decider: new Decider(store, { maxPermits: 1_000_000, now: clock, leases }), dead: false, asked: 0, granted: 0, units: 0, leaseDenials: 0 };
      sidecars.push(s);
      return s;
    },
    /** A request through a sidecar; its grant goes into the ledger when the answer comes. */
    ask(s: Sidecar, cost = 1, key = 'a', then?: (d: Decision) => void): void {
      s.asked++;
      const input = { resource, scope: scope(key), cost, priority: 0 };
      const answered = (d: Decision) => {
        if (s.dead) return;
        if (d.granted) {
          s.granted++;
          s.units += cost;
          // A lease serves at the moment it answers; the store at its own time.
          ledger.grant(resource, input.scope, cost, d.decidedBy === 'LEASE' ? time.now : d.decidedAt, d.decidedAt);
        } else if (d.decidedBy === 'LEASE') s.leaseDenials++;
        then?.(d);
      };
      const d = s.decider.decideNow(input);
      if (d instanceof Promise) d.then(answered, (err: unknown) => failures.push(err));
      else answered(d);
    },
    /** Moves the clock, noting what the sidecars hold at the end. */
    async advance(ms: number): Promise<void> {
      await time.advance(ms);
      let held = store.inFlight + store.returning;
      for (const s of sidecars) if (!s.dead) held += s.leases.figures.held;
      ledger.holding(time.now, held);
    },
    tick(): void {
      for (const s of sidecars) if (!s.dead) void s.leases.tick();
    },
    excess(): Excess {
      return ledger.excess(store.firstCall);
    },
    /** Lets everything on its way arrive. */
    async drain(): Promise<void> {
      for (let i = 0; i < 100 && time.pending > 0; i++) await w.advance(5);
    },
  };
  return w;
}

type World = ReturnType<typeof world>;

interface Load {
  /** Requests per ms to sidecar i at `elapsed` ms. */
  perMs: (i: number, elapsed: number) => number;
  cost?: (i: number) => number;
  key?: (i: number) => string;
  /** Called with each answer (a settlement, a revoke). */
  then?: (s: Sidecar, d: Decision, cost: number, key: string) => void;
  /** Called every ms, after the ms's requests (sidecars joining, leaving, dying). */
  each?: (elapsed: number) => void | Promise<void>;
}

/** Open-loop load for `ms`, in quarter milliseconds; the sidecars tick every 10 ms, as deployed. */
async function drive(w: World, ms: number, load: Load): Promise<void> {
  const owed = w.sidecars.map(() => 0);
  for (let step = 0; step < ms * 4; step++) {
    const elapsed = step / 4;
    for (let i = 0; i < w.sidecars.length; i++) {
      const s = w.sidecars[i]!;
      if (s.dead) continue;
      owed[i] = (owed[i] ?? 0) + load.perMs(i, elapsed) / 4;
      for (; owed[i]! >= 1; owed[i]!--) {
        const cost = load.cost?.(i) ?? 1;
        const key = load.key?.(i) ?? 'a';
        w.ask(s, cost, key, load.then && ((d) => load.then!(s, d, cost, key)));
      }
    }
    await w.advance(0.25);
    if (step % 4 === 0) await load.each?.(elapsed);
    if (step % 40 === 0) w.tick();
  }
}

/** A pseudo-random sequence, the same on every run. */
function random(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Asserts the invariant over everything the world granted, and that nothing failed. */
function expectWithinLimits(w: World): Excess {
  const excess = w.excess();
  expect(w.failures).toEqual([]);
  expect(excess.sinceFirst).toBeLessThanOrEqual(0);
  expect(excess.fromAnyMoment).toBeLessThanOrEqual(0);
  expect(excess.window).toBeLessThanOrEqual(0);
  expect(excess.outOfWindow).toBe(0);
  return excess;
}

const BUCKET = '      - { name: b, algorithm: token_bucket, rate: 2000/1s, burst: 200 }\n';

/** Units granted over what the limit allowed from the key's first call to now (burst + rate x elapsed). */
function utilisation(w: World, burst: number, perMs: number): number {
  const first = w.store.firstCall.get(w.scope('a'))!;
  return sum(w.sidecars.map((s) => s.units)) / (burst + perMs * (w.time.now - first));
}

/** A request answered on the fake clock: the clock moves until the answer comes. */
async function decide(w: World, s: Sidecar, cost = 1): Promise<Decision> {
  let answer: Decision | null = null;
  w.ask(s, cost, 'a', (d) => (answer = d));
  await w.advance(0);
  for (let i = 0; answer === null && i < 1000; i++) await w.advance(0.25);
  return answer!;
}

/** Waits `ms` on the fake clock, the sidecars ticking every 10 ms as deployed. */
async function wait(w: World, ms: number): Promise<void> {
  const until = w.time.now + ms;
  for (; until - w.time.now > 10; w.tick()) await w.advance(10);
  await w.advance(until - w.time.now);
}

/**
 * With no other demand, asks `s` for `cost()` until a lease denies it, waits out the retry_after
 * and asks again at that moment. Answers the retry_afters after which the same request was
 * denied again: earlier than the truth on that sidecar.
 */
async function earlyRetries(w: World, s: Sidecar, probes: number, cost: () => number): Promise<{ probed: number; early: number[] }> {
  const early: number[] = [];
  let probed = 0;
  for (let i = 0; i < probes * 20 && probed < probes; i++) {
    const c = cost();
    const d = await decide(w, s, c);
    if (d.granted || d.decidedBy !== 'LEASE' || d.retryAfterMs === Infinity) continue;
    await wait(w, d.retryAfterMs);
    probed++;
    if (!(await decide(w, s, c)).granted) early.push(d.retryAfterMs);
  }
  return { probed, early };
}

describe('the ledger', () => {
  it('sees grants past burst + rate x elapsed since the first call', () => {
    const w = world(BUCKET);
    w.store.firstCall.set(w.scope('a'), w.time.now);
    // 300 at once on a burst of 200.
    for (let i = 0; i < 300; i++) w.ledger.grant(w.resource, w.scope('a'), 1, w.time.now, w.time.now);
    expect(w.excess().sinceFirst).toBeCloseTo(100);
  });

  it('sees grants past the limit from a later moment, with what was held then allowed on top', () => {
    const w = world(BUCKET);
    const start = w.time.now;
    w.store.firstCall.set(w.scope('a'), start);
    for (let i = 0; i < 200; i++) w.ledger.grant(w.resource, w.scope('a'), 1, start, start);
    // Nothing for a second, 50 units held then; then 600 at once. Since the first call that is
    // within 200 + 2 x 1000, but from that moment on only 50 + 200 could have been served.
    w.ledger.holding(start + 1000, 50);
    for (let i = 0; i < 600; i++) w.ledger.grant(w.resource, w.scope('a'), 1, start + 1000.5, start + 1000.5);
    const excess = w.excess();
    expect(excess.sinceFirst).toBeLessThanOrEqual(0);
    expect(excess.fromAnyMoment).toBeCloseTo(600 - 50 - 200 - 1);
  });

  it('sees a window served past its capacity, and a unit served after its window closed', () => {
    const w = world('      - { name: fw, algorithm: fixed_window, rate: 10/1s }\n');
    const edge = Math.ceil(w.time.now / 1000) * 1000;
    for (let i = 0; i < 11; i++) w.ledger.grant(w.resource, w.scope('a'), 1, edge - 1, edge - 1);
    w.ledger.grant(w.resource, w.scope('a'), 1, edge + 1, edge - 1);
    const excess = w.excess();
    expect(excess.window).toBeCloseTo(2);
    expect(excess.outOfWindow).toBe(1);
  });
});

describe('costs above 1 on a token bucket (2000/s, burst 200), four sidecars', () => {
  for (const [name, perMs, cost] of [
    ['cost 1 at 2x the rate', 1, () => 1],
    ['mixed costs 1..9 at 2x', 0.2, (r: () => number) => 1 + Math.floor(r() * 9)],
    ['costs near the burst (190..200) at 10x', 0.05, (r: () => number) => 190 + Math.floor(r() * 11)],
    ['cost 1, and the whole burst one time in 20, at 2x', 0.1, (r: () => number) => (r() < 0.95 ? 1 : 200)],
  ] as const) {
    it(`${name}: within the limit at every moment`, async () => {
      const w = world(BUCKET);
      for (let i = 0; i < 4; i++) w.sidecar();
      const r = random(7);
      await drive(w, 1500, { perMs: () => perMs, cost: () => cost(r) });
      await w.drain();
      expectWithinLimits(w);
      // Not a run that granted nothing: most of what the limit allows is used.
      expect(utilisation(w, 200, 2)).toBeGreaterThan(0.4);
    });
  }
});

describe('several limits on one resource, four sidecars, costs 1..20', () => {
  for (const [name, limits, perMs] of [
    [
      'requests and cost',
      '      - { name: rps, algorithm: token_bucket, rate: 400/1s, burst: 40, counts: requests }\n' +
        '      - { name: tps, algorithm: token_bucket, rate: 4000/1s, burst: 400 }\n',
      0.25,
    ],
    [
      'two token buckets of different rates',
      '      - { name: fast, algorithm: token_bucket, rate: 2000/1s, burst: 100 }\n' +
        '      - { name: slow, algorithm: token_bucket, rate: 1000/1s, burst: 1500 }\n',
      0.15,
    ],
    [
      'a token bucket, a fixed window and a sliding window',
      BUCKET + '      - { name: fw, algorithm: fixed_window, rate: 1500/1s }\n' + '      - { name: sw, algorithm: sliding_window, rate: 1200/700ms }\n',
      0.15,
    ],
  ] as const) {
    it(`${name}: every limit holds at every moment, across window edges`, async () => {
      const w = world(limits);
      for (let i = 0; i < 4; i++) w.sidecar();
      const r = random(11);
      await drive(w, 2200, { perMs: () => perMs, cost: () => 1 + Math.floor(r() * 20) });
      await w.drain();
      expectWithinLimits(w);
    });
  }
});

describe('sidecars and demand that come and go, a token bucket at its limit', () => {
  it('sidecars join, shut down (giving back) and die holding slices', async () => {
    const w = world(BUCKET);
    w.sidecar();
    await drive(w, 2000, {
      perMs: () => 0.7,
      each: async (elapsed) => {
        if (elapsed === 250 || elapsed === 500 || elapsed === 1250) w.sidecar();
        if (elapsed === 750) {
          await w.sidecars[1]!.leases.close();
          w.sidecars[1]!.dead = true;
        }
        if (elapsed === 1000) w.sidecars[2]!.dead = true;
      },
    });
    await w.drain();
    expectWithinLimits(w);
  });

  it('demand swinging from 10x to nothing and back, out of phase between sidecars', async () => {
    const w = world(BUCKET);
    for (let i = 0; i < 4; i++) w.sidecar();
    // Each sidecar alone asks 5x the rate for 400 ms, then nothing for 600 ms.
    await drive(w, 2000, { perMs: (i, t) => ((t + i * 250) % 1000 < 400 ? 10 : 0) });
    await w.drain();
    expectWithinLimits(w);
  });

  it('one sidecar at 100x the rate and three at 0.1x: within the limit, and the three are not starved', async () => {
    const w = world(BUCKET);
    for (let i = 0; i < 4; i++) w.sidecar();
    await drive(w, 1000, { perMs: (i) => (i === 0 ? 200 : 0.2) });
    await w.drain();
    expectWithinLimits(w);
    // The hot one used to hold the schedule half a ttl ahead, and the three got nothing.
    for (const s of w.sidecars.slice(1)) expect(s.granted / s.asked).toBeGreaterThan(0.2);
  });

  it('thousands of keys, a hundred of them hot, past maxLeasedKeys: lease state bounded, every key within its limit', async () => {
    const w = world('      - { name: b, algorithm: token_bucket, rate: 200/1s, burst: 20 }\n', { maxLeasedKeys: 50 });
    for (let i = 0; i < 4; i++) w.sidecar();
    const r = random(3);
    // Half the requests to 100 hot keys, half over 3000 cold ones.
    const key = () => (r() < 0.5 ? `h${Math.floor(r() * 100)}` : `c${Math.floor(r() * 3000)}`);
    let most = 0;
    await drive(w, 800, {
      perMs: () => 20,
      key,
      each: () => {
        // Read from inside: no figure says how many keys have lease state.
        for (const s of w.sidecars) most = Math.max(most, (Reflect.get(s.leases, 'states') as Map<string, unknown>).size);
      },
    });
    await w.drain();
    expectWithinLimits(w);
    // Past 50, a key with no take in flight goes (its units back); one with a take waits for it.
    expect(most).toBeGreaterThan(45);
    expect(most).toBeLessThanOrEqual(60);
  });
});

describe('what one sidecar holds, and would strand if it died', () => {
  for (const [perMs, ttl] of [
    [4, '1s'],
    [20, '1s'],
    [200, '1s'],
    [20, '1m'],
  ] as const) {
    it(`stays within two slices at ${perMs / 2}x the rate, ttl ${ttl}`, async () => {
      const w = world(BUCKET, { lease: `{ enabled: true, max_fraction: 0.1, ttl: ${ttl} }` });
      const s = w.sidecar();
      let most = 0;
      await drive(w, 1000, { perMs: () => perMs, each: () => void (most = Math.max(most, s.leases.figures.held)) });
      expectWithinLimits(w);
      // A slice spans max_fraction (0.1) of a second of the schedule: 200 units. Held ahead as
      // demand grew, it used to reach half the ttl of the schedule (1000 units at ttl 1s).
      expect(most).toBeLessThanOrEqual(2 * 200);
      // About one take per slice, not one per grant.
      expect(s.leases.figures.takes / s.granted).toBeLessThan(0.05);
    });
  }
});

describe('settlements and revokes while slices are held', () => {
  it('Release with actual_cost below and above, and revokes of leased grants, keep every limit', async () => {
    const w = world(BUCKET + '      - { name: fw, algorithm: fixed_window, rate: 1800/1s }\n', { extra: '    settle_within: 10s\n' });
    for (let i = 0; i < 4; i++) w.sidecar();
    const r = random(5);
    const settled = { below: 0, above: 0, revoked: 0 };
    await drive(w, 1500, {
      perMs: () => 0.2,
      cost: () => 1 + Math.floor(r() * 9),
      then: (s, d, cost, key) => {
        if (!d.granted) return;
        const roll = r();
        // Settled within 50 ms: while the lease it came from is still held.
        w.time.at(w.time.now + r() * 50, () => {
          if (roll < 0.3) {
            settled.below++;
            void s.decider.release(d.permitId, Math.floor(cost / 3));
          } else if (roll < 0.5) {
            settled.above++;
            void s.decider.release(d.permitId, cost * 3);
          } else if (roll < 0.6) {
            // As the Envoy service does when another descriptor of the request is over its limit.
            settled.revoked++;
            void s.decider.revoke({ resource: w.resource, scope: w.scope(key), cost, priority: 0 }, d);
          }
        });
      },
    });
    await w.drain();
    expectWithinLimits(w);
    expect(Math.min(settled.below, settled.above, settled.revoked)).toBeGreaterThan(20);
  });

  it('revokes of leased grants without a permit go back to the store, and no further', async () => {
    const w = world(BUCKET);
    for (let i = 0; i < 4; i++) w.sidecar();
    const r = random(9);
    let revoked = 0;
    await drive(w, 1500, {
      perMs: () => 1,
      then: (s, d, cost, key) => {
        if (d.granted && d.decidedBy === 'LEASE' && r() < 0.3) {
          revoked++;
          void s.decider.revoke({ resource: w.resource, scope: w.scope(key), cost, priority: 0 }, d);
        }
      },
    });
    await w.drain();
    expectWithinLimits(w);
    expect(revoked).toBeGreaterThan(500);
  });
});

describe('a slow store: takes answered late, so due times are mapped from when answers arrive', () => {
  for (const [name, limits, most] of [
    ['a token bucket, calls run up to 2 ms late and answer up to 2 ms after', BUCKET, 2],
    ['a token bucket, up to 20 ms and 20 ms (longer than a slice is leased ahead of need)', BUCKET, 20],
    [
      'a token bucket and two windows, up to 5 ms and 5 ms',
      BUCKET + '      - { name: fw, algorithm: fixed_window, rate: 1500/1s }\n' + '      - { name: sw, algorithm: sliding_window, rate: 1000/500ms }\n',
      5,
    ],
  ] as const) {
    it(`${name}: within every limit at every moment`, async () => {
      const r = random(13);
      const w = world(limits, { delay: () => ({ exec: r() * most, reply: r() * most }) });
      for (let i = 0; i < 4; i++) w.sidecar();
      await drive(w, 2200, { perMs: () => 0.4, cost: () => 1 + Math.floor(r() * 4) });
      await w.drain();
      expectWithinLimits(w);
    });
  }
});

describe('clock edges', () => {
  for (const [name, limits, lease, perMs, cost, allowed] of [
    ['ttl 10 ms', BUCKET, '{ enabled: true, max_fraction: 0.1, ttl: 10ms }', 1, 1, 0],
    ['ttl 1 m', BUCKET, '{ enabled: true, max_fraction: 0.1, ttl: 1m }', 1, 1, 0],
    ['one unit a microsecond (1000000/1s), burst 1000, cost 1000', '      - { name: b, algorithm: token_bucket, rate: 1000000/1s, burst: 1000 }\n', undefined, 2, 1000, 0],
    ['one unit a day, burst 1', '      - { name: b, algorithm: token_bucket, rate: 1/1d, burst: 1 }\n', '{ enabled: true, max_fraction: 1, ttl: 1m }', 1, 1, 1],
    ['burst 1', '      - { name: b, algorithm: token_bucket, rate: 2000/1s, burst: 1 }\n', undefined, 1, 1, 0],
  ] as const) {
    it(`${name}: within the limit at every moment`, async () => {
      const w = world(limits, lease ? { lease } : {});
      for (let i = 0; i < 4; i++) w.sidecar();
      await drive(w, 600, { perMs: () => perMs, cost: () => cost });
      await w.drain();
      expectWithinLimits(w);
      if (allowed) expect(sum(w.sidecars.map((s) => s.units))).toBe(allowed);
    });
  }
});

describe('a policy reload that changes the rate and burst while slices are held', () => {
  for (const [name, after, intervalMs, burst] of [
    ['the rate cut to a quarter, the burst to 50', '      - { name: b, algorithm: token_bucket, rate: 500/1s, burst: 50 }\n', 2, 50],
    ['the rate raised 4x, the burst to 800', '      - { name: b, algorithm: token_bucket, rate: 8000/1s, burst: 800 }\n', 0.125, 800],
  ] as const) {
    it(`${name}: from the reload on, no more than the new limit and what was held at it`, async () => {
      const w = world(BUCKET);
      for (let i = 0; i < 4; i++) w.sidecar();
      await drive(w, 500, { perMs: () => 1 });
      const reloadAt = w.time.now;
      // In the new schedule's units: a unit given back frees the interval it took under the old one.
      const held = (sum(w.sidecars.map((s) => s.leases.figures.held)) + w.store.inFlight) * Math.max(1, 0.5 / intervalMs);
      expect(held).toBeGreaterThan(0);
      w.reload(after);
      const grants: number[] = [];
      await drive(w, 1000, { perMs: () => 1 / intervalMs, then: (_s, d) => void (d.granted && grants.push(d.decidedBy === 'LEASE' ? w.time.now : d.decidedAt)) });
      await w.drain();
      grants.sort((a, b) => a - b);
      let worst = -Infinity;
      grants.forEach((at, i) => (worst = Math.max(worst, i + 1 - held - burst - (at - reloadAt) / intervalMs - EPS)));
      expect(w.failures).toEqual([]);
      expect(worst).toBeLessThanOrEqual(0);
      expect(grants.length).toBeGreaterThan(0.8 * (burst + 1000 / intervalMs));
    });
  }
});

describe("a lease's retry_after is the truth on its sidecar: asked again then, the same request is granted", () => {
  for (const [name, limits, cost, lease] of [
    ['cost 1', BUCKET, () => 1, undefined],
    ['mixed costs 1..50', BUCKET, (r: () => number) => 1 + Math.floor(r() * 50), undefined],
    ['costs near the burst', BUCKET, (r: () => number) => 180 + Math.floor(r() * 21), undefined],
    [
      'requests and cost limits',
      '      - { name: rps, algorithm: token_bucket, rate: 400/1s, burst: 40, counts: requests }\n      - { name: tps, algorithm: token_bucket, rate: 4000/1s, burst: 400 }\n',
      (r: () => number) => 1 + Math.floor(r() * 30),
      undefined,
    ],
    [
      'two token buckets',
      '      - { name: fast, algorithm: token_bucket, rate: 2000/1s, burst: 100 }\n      - { name: slow, algorithm: token_bucket, rate: 1000/1s, burst: 1500 }\n',
      (r: () => number) => 1 + Math.floor(r() * 20),
      undefined,
    ],
    ['a bucket and a fixed window', BUCKET + '      - { name: fw, algorithm: fixed_window, rate: 1500/1s }\n', (r: () => number) => 1 + Math.floor(r() * 10), undefined],
    ['ttl 10 ms', BUCKET, (r: () => number) => 1 + Math.floor(r() * 5), '{ enabled: true, max_fraction: 0.1, ttl: 10ms }'],
    ['ttl 1 m', BUCKET, (r: () => number) => 1 + Math.floor(r() * 5), '{ enabled: true, max_fraction: 0.1, ttl: 1m }'],
  ] as const) {
    it(name, async () => {
      const w = world(limits, lease ? { lease } : {});
      for (let i = 0; i < 3; i++) w.sidecar();
      const r = random(17);
      // Every sidecar at the limit, holding slices; then only the first is asked.
      await drive(w, 500, { perMs: () => 0.6, cost: () => cost(r) });
      const { probed, early } = await earlyRetries(w, w.sidecars[0]!, 25, () => cost(r));
      await w.drain();
      expectWithinLimits(w);
      expect(early).toEqual([]);
      expect(probed).toBe(25);
    });
  }

  /**
   * Two sidecars a and b, hot on a bucket of 100/1s (burst 10) and holding nothing; then a crowd
   * of `crowd` requests at once on b, whose take leases the schedule up to half a ttl ahead.
   */
  async function crowdedOut(crowd: number) {
    const w = world('      - { name: b, algorithm: token_bucket, rate: 100/1s, burst: 10 }\n');
    const [a, b] = [w.sidecar(), w.sidecar()];
    await drive(w, 600, { perMs: () => 0.2 });
    // Idle long enough to give back what they hold, not long enough to be cold.
    await wait(w, 350);
    for (let i = 0; i < crowd; i++) w.ask(b);
    await w.advance(0);
    return { w, a: a!, b: b! };
  }

  it('a costlier request than the take the store refused is told when its own cost fits', async () => {
    const { w, a, b } = await crowdedOut(100);
    // b dies holding the schedule half a ttl ahead: a's take is refused, and nothing but a moves
    // the schedule from here on.
    b.dead = true;
    const cheap = await decide(w, a, 1);
    const costly = await decide(w, a, 5);
    const never = await decide(w, a, 11);
    expect([cheap.granted, costly.granted, never.granted]).toEqual([false, false, false]);
    // 4 more units, 10 ms each; a cost past the burst never fits.
    expect(costly.retryAfterMs).toBeCloseTo(cheap.retryAfterMs + 40, 0);
    expect(never.retryAfterMs).toBe(Infinity);
    await wait(w, costly.retryAfterMs);
    expect((await decide(w, a, 5)).granted).toBe(true);
  });

  it('the units a denial told its client to come back for are still held when it does, however long after', async () => {
    // Slices of up to half a second (max_fraction 0.5), taken up to a second ahead (ttl 2s): b's
    // waiters take one, and a's take comes after it, due about 400 ms on.
    const w = world('      - { name: b, algorithm: token_bucket, rate: 100/1s, burst: 10 }\n', { lease: '{ enabled: true, max_fraction: 0.5, ttl: 2s }' });
    const [a, b] = [w.sidecar(), w.sidecar()];
    await drive(w, 600, { perMs: () => 0.2 });
    // Idle long enough to give back what they hold, not long enough to be cold.
    await wait(w, 350);
    for (let i = 0; i < 60; i++) w.ask(b!);
    await w.advance(0);
    const denial = await decide(w, a!, 1);
    expect(denial.decidedBy).toBe('LEASE');
    expect(denial.retryAfterMs).toBeGreaterThan(IDLE_MS);
    // Another goes on asking at twice the rate while a's client waits: units a gave back, it takes.
    await drive(w, denial.retryAfterMs, { perMs: (i) => (i === 1 ? 0.2 : 0) });
    expect((await decide(w, a!, 1)).granted).toBe(true);
    await w.drain();
    expectWithinLimits(w);
  });
});

describe('HeldUnits', () => {
  /** Every unit's due time, as the takes gave them, in order: what the schedule allows. */
  class Schedule {
    readonly due: number[] = [];
    served = 0;
    add(first: number, count: number, step: number) {
      for (let k = 0; k < count; k++) this.due.push(first + k * step);
      this.due.sort((a, b) => a - b);
    }
    dueBy(t: number): number {
      let low = 0;
      for (let high = this.due.length; low < high; ) {
        const mid = (low + high) >> 1;
        if (this.due[mid]! <= t) low = mid + 1;
        else high = mid;
      }
      return low;
    }
  }

  /**
   * The first moment from `now` on, among every unit's due time and either side of it, at which
   * served so far plus what the hold has due is more than the schedule had due; null if none.
   * Local times are epoch milliseconds, whose doubles step by a quarter of a microsecond: a unit
   * may be counted due that much sooner (a round trip to the store is far longer).
   */
  function soonerThanDue(held: HeldUnits, schedule: Schedule, now: number, step: number): number | null {
    for (const d of [now, ...schedule.due]) {
      for (const t of [d - step / 1000, d, d + step / 1000]) {
        if (t >= now && schedule.served + held.dueBy(t) > schedule.dueBy(t + FLOAT_SLACK_MS)) return t;
      }
    }
    return null;
  }

  it('merging runs past MAX_RUNS, and taking across overlapping runs, never serves a unit sooner than it falls due', () => {
    const r = random(21);
    for (let trial = 0; trial < 200; trial++) {
      const step = [0.001, 0.5, 3, 86_400_000][trial % 4]!;
      const held = new HeldUnits(step);
      const schedule = new Schedule();
      let now = START;
      for (let op = 0; op < 30; op++) {
        if (r() < 0.5) {
          // A run anywhere around now: continuing, overlapping, before or after the others.
          const first = now + (r() - 0.3) * 40 * step;
          const count = 1 + Math.floor(r() * 20);
          held.add(first, count);
          schedule.add(first, count, step);
        } else {
          now += r() * 10 * step;
          const n = Math.min(held.dueBy(now), 1 + Math.floor(r() * 10));
          held.take(n, now);
          schedule.served += n;
        }
        expect(soonerThanDue(held, schedule, now, step)).toBeNull();
        expect(held.total).toBe(schedule.due.length - schedule.served);
      }
    }
  });

  it('dueAt answers a moment at which n units are due, within a microsecond of the first, at epoch times and every step', () => {
    const r = random(23);
    for (const step of [0.001, 0.002, 0.5, 3, 86_400_000]) {
      for (let trial = 0; trial < 50; trial++) {
        const held = new HeldUnits(step);
        for (let k = 0; k < 1 + Math.floor(r() * 6); k++) held.add(START + r() * 100 * step, 1 + Math.floor(r() * 30));
        const n = 1 + Math.floor(r() * held.total);
        const at = held.dueAt(n);
        // It used to answer a moment just before the last unit of a run, when dueBy does not count it yet.
        expect(held.dueBy(at), `step ${step}`).toBeGreaterThanOrEqual(n);
        expect(held.dueBy(at - 0.0011), `step ${step}`).toBeLessThan(n);
      }
    }
  });
});

describe('through real sidecars on a real Redis', () => {
  const world = useRedis();
  const POLICY = `
store:
  timeout: 10s
resources:
  - name: mixed
    keys: [tenant]
    lease: { enabled: true, max_fraction: 0.1, ttl: 1s }
    limits:
      - { name: tokens, algorithm: token_bucket, rate: 2000/1s, burst: 200 }
      - { name: calls, algorithm: token_bucket, rate: 400/1s, burst: 40, counts: requests }
      - { name: daily, algorithm: fixed_window, rate: 2800/1d }
  - name: hourly
    keys: [tenant]
    lease: { enabled: true, max_fraction: 0.1, ttl: 1s }
    limits:
      - { name: b, algorithm: token_bucket, rate: 10000/1s, burst: 1000 }
      - { name: h, algorithm: fixed_window, rate: 200/1h }
`;
  const running = useSidecars(
    () => [POLICY, POLICY, POLICY],
    () => ({ SLUICE_REDIS_URL: world.redis.url }),
  );

  /** Redis's clock, which decides. */
  const redisNow = async () => {
    const [s, us] = await world.redis.client.time();
    return Number(s) * 1000 + Number(us) / 1000;
  };

  it('mixed costs over a cost bucket, a request bucket and a window on one resource, three sidecars: every limit holds', async () => {
    const r = random(29);
    const grants: { at: number; cost: number }[] = [];
    let leased = 0;
    const start = await redisNow();
    const until = Date.now() + 1500;
    await Promise.all(
      running.flatMap(({ client }) =>
        Array.from({ length: 8 }, async () => {
          while (Date.now() < until) {
            const cost = 1 + Math.floor(r() * 9);
            const res = await client.acquire({ resource: 'mixed', descriptors: { tenant: 't' }, cost });
            // Received no sooner than served: counting it then only ever lets more through.
            if (res.granted) grants.push({ at: Date.now(), cost });
            if (res.decided_by === 'LEASE') leased++;
          }
        }),
      ),
    );
    const elapsed = (await redisNow()) - start;
    const units = sum(grants.map((g) => g.cost));
    expect(units).toBeLessThanOrEqual(200 + 2 * elapsed);
    expect(grants.length).toBeLessThanOrEqual(40 + 0.4 * elapsed);
    expect(units).toBeLessThanOrEqual(2800);
    // And at every grant, as far as the receiving side can tell.
    grants.sort((a, b) => a.at - b.at);
    let worst = -Infinity;
    let sumCost = 0;
    grants.forEach((g, i) => {
      sumCost += g.cost;
      worst = Math.max(worst, sumCost - 200 - 2 * (g.at - start), i + 1 - 40 - 0.4 * (g.at - start));
    });
    expect(worst).toBeLessThanOrEqual(0);
    expect(leased).toBeGreaterThan(grants.length / 2);
  });

  it('a standing denial never tells a request that can never fit to come back', async () => {
    const { client } = running[0]!;
    const ask = (cost: number) => client.acquire({ resource: 'hourly', descriptors: { tenant: 'h' }, cost });
    // The hour's 200 used up through one sidecar's lease: its next take is refused.
    for (let i = 0; i < 5; i++) await Promise.all(Array.from({ length: 50 }, () => ask(1)));
    const cheap = await ask(1);
    const never = await ask(201);
    expect(cheap.granted).toBe(false);
    expect(cheap.retry_after).not.toBeNull();
    // It used to be told to come back when the hour ends, as the cost-1 request was.
    expect(never.granted).toBe(false);
    expect(never.retry_after, never.reason).toBeNull();
    expect(never.reason).toContain('can never be granted');
  });
});
