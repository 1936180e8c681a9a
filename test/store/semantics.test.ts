// One semantic suite, run against every store: the embedded memory store and the Redis store on a
// real redis-server of its own. The Redis store takes time from Redis TIME, so the suite never
// depends on how much real time passes: rates and windows are long (5/1h, 1d) so nothing refills
// during a test, and every test uses its own resource (so its own keys).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import type { Resource } from '../../src/config/policy.js';
import { scopeOf } from '../../src/decide/scope.js';
import { MAX_COST } from '../../src/grpc/validate.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import type { Grant, LineEvents, Store as FullStore, StoreVerdict, Ticket } from '../../src/store/store.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { checkCostAtBound, checkSettleExtremes, RATE_ALGORITHMS } from '../support/store-checks.js';

/** The part of the store contract this suite covers (acquire, lease takes and refunds, release with settlement, the waiting line, inspect, close). */
type Store = Pick<FullStore, 'acquire' | 'take' | 'refund' | 'release' | 'join' | 'retry' | 'leave' | 'listen' | 'inspect' | 'close'>;

const HOUR = 3_600_000;
const DAY = 86_400_000;

interface StoreFactory {
  kind: 'memory' | 'redis';
  create(): Promise<{ store: Store; stop(): Promise<void> }>;
}

let redisServer: RedisProcess | undefined;

const FACTORIES: StoreFactory[] = [
  {
    kind: 'memory',
    async create() {
      const store = new MemoryStore({ maxKeys: 10_000, sweepEveryMs: 0 });
      return { store, stop: () => store.close() };
    },
  },
  {
    kind: 'redis',
    async create() {
      const server = await startRedis();
      redisServer = server;
      let store: RedisStore;
      try {
        store = new RedisStore({ url: server.url, prefix: 'sluice' });
      } catch (err) {
        await server.stop();
        throw err;
      }
      return {
        store,
        async stop() {
          await store.close();
          await server.stop();
        },
      };
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Helpers shared by every store.

let resourceSeq = 0;
let permitSeq = 0;

/** A resource of its own for one test, compiled from YAML as a policy file would be. `more`: other fields, one a line. */
function resource(limits: string[], keys: string[] = ['tenant'], reserve = '[]', more: string[] = []): Resource {
  const name = `res${++resourceSeq}`;
  const yaml = [
    'resources:',
    `  - name: ${name}`,
    `    keys: [${keys.join(', ')}]`,
    `    reserve: ${reserve}`,
    ...more.map((field) => `    ${field}`),
    '    limits:',
    ...limits.map((limit) => `      - ${limit}`),
    '',
  ].join('\n');
  const res = parsePolicy(yaml, `${name}.yaml`).resources.get(name);
  if (!res) throw new Error(`resource ${name} not compiled`);
  return res;
}

interface Taken extends StoreVerdict {
  limitName: string | undefined;
  grant: Grant;
}

async function acquire(store: Store, res: Resource, scope: string, cost = 1, usable = 1): Promise<Taken> {
  const permitId = `p${++permitSeq}`;
  const v = await store.acquire(res, scope, cost, permitId, usable);
  return { ...v, limitName: res.limits[v.decider]?.name, grant: { permitId, cost, grantedAt: v.now } };
}

async function pollUntilGranted(store: Store, res: Resource, scope: string, cost: number, deadlineMs: number): Promise<Taken> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const v = await acquire(store, res, scope, cost);
    if (v.granted) return v;
    if (Date.now() > deadline) throw new Error(`not granted within ${deadlineMs} ms; last verdict ${JSON.stringify(v)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// The three rate algorithms, each with capacity 5 and a period long enough that nothing refills.
const RATE_LIMITS = {
  token_bucket: '{ name: rate, algorithm: token_bucket, rate: 5/1h }',
  fixed_window: '{ name: rate, algorithm: fixed_window, rate: 5/1d }',
  sliding_window: '{ name: rate, algorithm: sliding_window, rate: 5/1d }',
} as const;
const RATE_CASES = Object.entries(RATE_LIMITS).map(([algorithm, limit]) => ({ algorithm, limit }));

// The waiting line: tickets of one listening sidecar, and what the store tells it.
const SIDECAR = 'semantics';
let ticketSeq = 0;

/** A ticket of the listening sidecar: cost 1, priority 0, all of every limit, lane 1, a minute to wait. */
function ticket(cost = 1, more: Partial<Ticket> = {}): Ticket {
  const n = ++ticketSeq;
  return { id: `${SIDECAR}.${n}`, cost, priority: 0, usable: 1, lane: 1, permitId: `w${n}`, waitMs: 60_000, ...more };
}

type Heard =
  | { kind: 'answered'; id: string; verdict: StoreVerdict }
  | { kind: 'turn'; id: string; inMs: number }
  | { kind: 'wake'; id: string }
  | { kind: 'formed'; id: string };

/** What the store tells the listening sidecar; a test awaits the event it expects. */
class Listener implements LineEvents {
  private readonly unclaimed: Heard[] = [];
  private readonly awaited: { kind: Heard['kind']; id: string; resolve: (event: Heard) => void }[] = [];

  answered(id: string, verdict: StoreVerdict): void {
    this.hear({ kind: 'answered', id, verdict });
  }
  turn(id: string, inMs: number): void {
    this.hear({ kind: 'turn', id, inMs });
  }
  wake(id: string): void {
    this.hear({ kind: 'wake', id });
  }
  formed(scope: string): void {
    this.hear({ kind: 'formed', id: scope });
  }
  resync(): void {}

  /** The next event of `kind` about ticket (or scope) `id`, heard already or to come. */
  next<K extends Heard['kind']>(kind: K, id: string, timeoutMs = 10_000): Promise<Extract<Heard, { kind: K }>> {
    const at = this.unclaimed.findIndex((event) => event.kind === kind && event.id === id);
    if (at >= 0) return Promise.resolve(this.unclaimed.splice(at, 1)[0] as Extract<Heard, { kind: K }>);
    return new Promise((resolve, reject) => {
      const entry = { kind, id, resolve: (event: Heard) => resolve(event as Extract<Heard, { kind: K }>) };
      this.awaited.push(entry);
      setTimeout(() => {
        const left = this.awaited.indexOf(entry);
        if (left < 0) return;
        this.awaited.splice(left, 1);
        reject(new Error(`no ${kind} heard for ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  private hear(event: Heard): void {
    const at = this.awaited.findIndex((entry) => entry.kind === event.kind && entry.id === event.id);
    if (at >= 0) this.awaited.splice(at, 1)[0]!.resolve(event);
    else this.unclaimed.push(event);
  }
}

/** Resolves once a connection listens on `channel` (Redis says nothing to a subscriber about its own subscription). */
async function subscribed(client: RedisProcess['client'], channel: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [, count] = (await client.pubsub('NUMSUB', channel)) as [string, number];
    if (Number(count) > 0) return;
    if (Date.now() > deadline) throw new Error(`nobody subscribed to ${channel}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// ---------------------------------------------------------------------------------------------

describe.each(FACTORIES)('$kind store semantics', (factory) => {
  let store: Store;
  let stop: () => Promise<void>;

  beforeAll(async () => {
    ({ store, stop } = await factory.create());
  });
  afterAll(async () => {
    await stop?.();
  });

  describe('rate limits', () => {
    it('token bucket: a burst of N, then a denial with retry_after > 0 naming the limit', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 100/1d }', '{ name: rpm, algorithm: token_bucket, rate: 5/1h }']);
      const scope = scopeOf(res, ['t1']);
      for (let i = 1; i <= 5; i++) {
        const v = await acquire(store, res, scope);
        expect(v.granted).toBe(true);
        expect(v.limitName).toBe('rpm');
        expect(v.remaining).toBe(5 - i);
      }
      const denied = await acquire(store, res, scope);
      expect(denied.granted).toBe(false);
      expect(denied.limitName).toBe('rpm');
      expect(denied.remaining).toBe(0);
      // One unit every 12 minutes.
      expect(denied.retryAfterMs).toBeGreaterThan(0.9 * (HOUR / 5));
      expect(denied.retryAfterMs).toBeLessThanOrEqual(HOUR / 5);
    });

    it.each([
      { algorithm: 'fixed_window', limit: '{ name: daily, algorithm: fixed_window, rate: 3/1d }' },
      { algorithm: 'sliding_window', limit: '{ name: daily, algorithm: sliding_window, rate: 3/1d }' },
    ])('$algorithm: grants exactly capacity units, then denies', async ({ limit }) => {
      const res = resource([limit]);
      const scope = scopeOf(res, ['t1']);
      for (let i = 1; i <= 3; i++) {
        const v = await acquire(store, res, scope);
        expect(v.granted).toBe(true);
        expect(v.remaining).toBe(3 - i);
      }
      const denied = await acquire(store, res, scope);
      expect(denied.granted).toBe(false);
      expect(denied.limitName).toBe('daily');
      expect(denied.remaining).toBe(0);
      expect(denied.retryAfterMs).toBeGreaterThan(0);
      expect(denied.retryAfterMs).toBeLessThanOrEqual(2 * DAY);
      // The denial consumed nothing: still denied, still 0 left, and a different tenant is untouched.
      expect((await acquire(store, res, scope)).remaining).toBe(0);
      expect((await acquire(store, res, scopeOf(res, ['t2']))).remaining).toBe(2);
    });

    it.each(RATE_CASES)('$algorithm: weights by cost (cost 3 takes 3)', async ({ limit }) => {
      const res = resource([limit]);
      const scope = scopeOf(res, ['t']);
      const first = await acquire(store, res, scope, 3);
      expect(first.granted).toBe(true);
      expect(first.remaining).toBe(2);
      const denied = await acquire(store, res, scope, 3);
      expect(denied.granted).toBe(false);
      expect(denied.remaining).toBe(2);
      expect(Number.isFinite(denied.retryAfterMs)).toBe(true);
      const rest = await acquire(store, res, scope, 2);
      expect(rest.granted).toBe(true);
      expect(rest.remaining).toBe(0);
    });

    it.each([
      ...RATE_CASES,
      { algorithm: 'concurrency', limit: '{ name: rate, algorithm: concurrency, max: 5, ttl: 1h }' },
    ])('$algorithm: a cost above capacity is denied with retryAfterMs Infinity and takes nothing', async ({ limit }) => {
      const res = resource([limit]);
      const scope = scopeOf(res, ['t']);
      const v = await acquire(store, res, scope, 6);
      expect(v.granted).toBe(false);
      expect(v.retryAfterMs).toBe(Infinity);
      expect(v.limitName).toBe('rate');
      expect(v.remaining).toBe(5);
      const all = await acquire(store, res, scope, 5);
      expect(all.granted).toBe(true);
      expect(all.remaining).toBe(0);
    });
  });

  describe('all-or-nothing over several limits', () => {
    it('a request denied by a concurrency limit charges no rate limit', async () => {
      const res = resource([
        '{ name: daily, algorithm: fixed_window, rate: 10/1d }',
        '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h, counts: requests }',
      ]);
      const scope = scopeOf(res, ['t']);
      const g1 = await acquire(store, res, scope, 3);
      expect(g1.granted).toBe(true);
      const denied = await acquire(store, res, scope, 5);
      expect(denied.granted).toBe(false);
      expect(denied.limitName).toBe('inflight');
      await store.release(res, scope, g1.grant, 0);
      // daily has 7 left, not 2: cost 8 is denied by daily, which reports 7 ...
      const over = await acquire(store, res, scope, 8);
      expect(over.granted).toBe(false);
      expect(over.limitName).toBe('daily');
      expect(over.remaining).toBe(7);
      // ... and cost 7 is granted.
      const rest = await acquire(store, res, scope, 7);
      expect(rest.granted).toBe(true);
      expect(rest.remaining).toBe(0);
    });

    it('a request denied by a rate limit holds no concurrency slot', async () => {
      const res = resource([
        '{ name: inflight, algorithm: concurrency, max: 3, ttl: 1h }',
        '{ name: daily, algorithm: fixed_window, rate: 4/1d }',
      ]);
      const scope = scopeOf(res, ['t']);
      const g1 = await acquire(store, res, scope, 3);
      expect(g1.granted).toBe(true);
      await store.release(res, scope, g1.grant, 0);
      const denied = await acquire(store, res, scope, 2);
      expect(denied.granted).toBe(false);
      expect(denied.limitName).toBe('daily');
      expect(denied.remaining).toBe(1);
      // Cost 4 can never fit inflight (max 3), so inflight decides and reports what it holds free.
      const probe = await acquire(store, res, scope, 4);
      expect(probe.retryAfterMs).toBe(Infinity);
      expect(probe.limitName).toBe('inflight');
      expect(probe.remaining).toBe(3);
    });

    it('across every algorithm at once: a denial leaves every other limit unchanged', async () => {
      const res = resource([
        '{ name: tb, algorithm: token_bucket, rate: 10/1h }',
        '{ name: sw, algorithm: sliding_window, rate: 10/1d }',
        '{ name: fw, algorithm: fixed_window, rate: 10/1d }',
        '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h, counts: requests }',
      ]);
      const scope = scopeOf(res, ['t']);
      const g1 = await acquire(store, res, scope, 4);
      expect(g1.granted).toBe(true);
      expect(g1.remaining).toBe(0);
      expect(g1.limitName).toBe('inflight');
      const denied = await acquire(store, res, scope, 3);
      expect(denied.granted).toBe(false);
      expect(denied.limitName).toBe('inflight');
      await store.release(res, scope, g1.grant, 0);
      // Every rate limit still has 6: cost 6 takes them all to 0 (the first of the ties decides).
      const rest = await acquire(store, res, scope, 6);
      expect(rest.granted).toBe(true);
      expect(rest.remaining).toBe(0);
      expect(rest.limitName).toBe('tb');
      await store.release(res, scope, rest.grant, 0);
      const none = await acquire(store, res, scope, 1);
      expect(none.granted).toBe(false);
      expect(['tb', 'sw', 'fw']).toContain(none.limitName);
    });

    it('on a grant, the limit with the least remaining decides', async () => {
      const res = resource([
        '{ name: big, algorithm: fixed_window, rate: 100/1d }',
        '{ name: small, algorithm: sliding_window, rate: 8/1d }',
        '{ name: mid, algorithm: token_bucket, rate: 20/1h }',
      ]);
      const scope = scopeOf(res, ['t']);
      const v = await acquire(store, res, scope, 2);
      expect(v.granted).toBe(true);
      expect(v.limitName).toBe('small');
      expect(v.remaining).toBe(6);
    });
  });

  describe('counts: requests', () => {
    it('a requests limit takes 1 whatever the cost, and is not settled', async () => {
      const res = resource([
        '{ name: tokens, algorithm: fixed_window, rate: 100/1d }',
        '{ name: requests, algorithm: token_bucket, rate: 3/1h, counts: requests }',
      ]);
      const scope = scopeOf(res, ['t']);
      // Cost 10 is above the requests limit's capacity of 3, yet it takes only 1 from it.
      const a = await acquire(store, res, scope, 10);
      expect(a.granted).toBe(true);
      expect(a.limitName).toBe('requests');
      expect(a.remaining).toBe(2);
      const b = await acquire(store, res, scope, 50);
      expect(b.granted).toBe(true);
      expect(b.remaining).toBe(1);
      // A refund gives tokens back but not the request.
      await store.release(res, scope, b.grant, -50);
      const c = await acquire(store, res, scope, 1);
      expect(c.granted).toBe(true);
      expect(c.limitName).toBe('requests');
      expect(c.remaining).toBe(0);
      const d = await acquire(store, res, scope, 1);
      expect(d.granted).toBe(false);
      expect(d.limitName).toBe('requests');
      // tokens: 100 - 10 - 50 + 50 - 1 = 89 left. Cost 101 can never fit tokens, so it decides.
      const probe = await acquire(store, res, scope, 101);
      expect(probe.limitName).toBe('tokens');
      expect(probe.retryAfterMs).toBe(Infinity);
      expect(probe.remaining).toBe(89);
    });

    it('a requests-counted concurrency limit holds 1 per grant and its release frees it', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 2, ttl: 1h, counts: requests }']);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 7);
      expect(a.granted).toBe(true);
      expect(a.remaining).toBe(1);
      const b = await acquire(store, res, scope, 7);
      expect(b.granted).toBe(true);
      expect(b.remaining).toBe(0);
      expect((await acquire(store, res, scope, 7)).granted).toBe(false);
      await store.release(res, scope, a.grant, 0);
      const c = await acquire(store, res, scope, 7);
      expect(c.granted).toBe(true);
      expect(c.remaining).toBe(0);
    });
  });

  describe('concurrency', () => {
    it('grants max permits, then denies; a release frees a slot', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 3, ttl: 1h }']);
      const scope = scopeOf(res, ['t']);
      const grants: Taken[] = [];
      for (let i = 1; i <= 3; i++) {
        const v = await acquire(store, res, scope);
        expect(v.granted).toBe(true);
        expect(v.remaining).toBe(3 - i);
        grants.push(v);
      }
      const denied = await acquire(store, res, scope);
      expect(denied.granted).toBe(false);
      expect(denied.limitName).toBe('inflight');
      expect(denied.retryAfterMs).toBeGreaterThan(0);
      expect(denied.retryAfterMs).toBeLessThanOrEqual(HOUR);
      await store.release(res, scope, grants[1]!.grant, 0);
      const again = await acquire(store, res, scope);
      expect(again.granted).toBe(true);
      expect(again.remaining).toBe(0);
      expect((await acquire(store, res, scope)).granted).toBe(false);
    });

    it('releasing the same grant twice frees one slot, not two', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 2, ttl: 1h }']);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope);
      const b = await acquire(store, res, scope);
      expect(a.granted && b.granted).toBe(true);
      await store.release(res, scope, a.grant, 0);
      await store.release(res, scope, a.grant, 0);
      expect((await acquire(store, res, scope)).granted).toBe(true);
      const denied = await acquire(store, res, scope);
      expect(denied.granted).toBe(false);
      expect(denied.remaining).toBe(0);
    });

    it('a weighted permit frees its whole cost on release', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 5, ttl: 1h }']);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 3);
      expect(a.remaining).toBe(2);
      expect((await acquire(store, res, scope, 3)).granted).toBe(false);
      await store.release(res, scope, a.grant, 0);
      const b = await acquire(store, res, scope, 5);
      expect(b.granted).toBe(true);
      expect(b.remaining).toBe(0);
    });

    it('a permit with a very large cost (bytes in flight) is freed by its release', async () => {
      // Costs are uint64 on the wire and max may be up to 2^53 - 1; 15-digit costs must round-trip.
      const res = resource(['{ name: bytes, algorithm: concurrency, max: 300000000000000, ttl: 1h }']);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 200_000_000_000_000);
      expect(a.granted).toBe(true);
      expect(a.remaining).toBe(100_000_000_000_000);
      expect((await acquire(store, res, scope, 200_000_000_000_000)).granted).toBe(false);
      await store.release(res, scope, a.grant, 0);
      const b = await acquire(store, res, scope, 200_000_000_000_000);
      expect(b.granted).toBe(true);
      expect(b.remaining).toBe(100_000_000_000_000);
    });

    it('reclaims a permit never released once its ttl has passed, and only that one', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 1, ttl: 300ms }']);
      const scope = scopeOf(res, ['t']);
      const started = Date.now();
      const first = await acquire(store, res, scope);
      expect(first.granted).toBe(true);
      const denied = await acquire(store, res, scope);
      expect(denied.granted).toBe(false);
      expect(denied.retryAfterMs).toBeGreaterThan(0);
      expect(denied.retryAfterMs).toBeLessThanOrEqual(300);
      // No event says the permit expired: poll, bounded by a deadline.
      const second = await pollUntilGranted(store, res, scope, 1, 5_000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(200);
      expect(second.remaining).toBe(0);
      // The reclaimed permit's late release frees nothing: the new holder keeps its slot.
      await store.release(res, scope, first.grant, 0);
      expect((await acquire(store, res, scope)).granted).toBe(false);
      await store.release(res, scope, second.grant, 0);
      expect((await acquire(store, res, scope)).granted).toBe(true);
    });

    it('a denial waits for the soonest permits whose units make room, over permits of mixed costs', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 5, ttl: 1h }']);
      const scope = scopeOf(res, ['t']);
      const held = [await acquire(store, res, scope, 1), await acquire(store, res, scope, 3), await acquire(store, res, scope, 1)];
      expect(held.map((g) => g.granted)).toEqual([true, true, true]);
      // Lacking 1 unit: the first permit; 3: the first two (1 + 3 units); 5: all three (1 ms
      // slack: Redis reports its clock floored and retry_after rounded up).
      for (const [cost, last] of [[1, 0], [3, 1], [5, 2]] as const) {
        const denied = await acquire(store, res, scope, cost);
        expect(denied.granted).toBe(false);
        const expected = held[last]!.now + 3_600_000 - denied.now;
        expect(Math.abs(denied.retryAfterMs - expected)).toBeLessThanOrEqual(1);
      }
    });

    it('reclaims each expired permit on its own while later permits stay held', async () => {
      // g1 at 0 ms, g2 at ~300 ms, ttl 600 ms: between ~600 and ~900 ms only g1 has expired.
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 2, ttl: 600ms }']);
      const scope = scopeOf(res, ['t']);
      const g1 = await acquire(store, res, scope);
      expect(g1.granted).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const g2 = await acquire(store, res, scope);
      expect(g2.granted).toBe(true);
      expect(g2.remaining).toBe(0);
      const denied = await acquire(store, res, scope);
      expect(denied.granted).toBe(false);
      // g1 expires first: the wait is until then, not until g2 expires (1 ms slack: Redis
      // reports its clock floored and retry_after rounded up).
      expect(denied.retryAfterMs).toBeLessThanOrEqual(g1.now + 600 - denied.now + 1);
      const g3 = await pollUntilGranted(store, res, scope, 1, 5_000);
      // g2 still holds its slot.
      expect(g3.remaining).toBe(0);
      expect(g3.now - g2.now).toBeLessThan(600);
    });
  });

  describe('settlement through release(grant, delta)', () => {
    it.each(RATE_CASES)('$algorithm: a negative delta refunds, a positive one charges', async ({ limit }) => {
      const res = resource([limit]);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 3);
      expect(a.remaining).toBe(2);
      await store.release(res, scope, a.grant, -2);
      const b = await acquire(store, res, scope, 1);
      expect(b.granted).toBe(true);
      expect(b.remaining).toBe(3);
      await store.release(res, scope, b.grant, 1);
      const c = await acquire(store, res, scope, 1);
      expect(c.granted).toBe(true);
      expect(c.remaining).toBe(1);
    });

    it.each(RATE_CASES)('$algorithm: a refund never gives back more than a full budget', async ({ limit }) => {
      const res = resource([limit]);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 2);
      await store.release(res, scope, a.grant, -100);
      const full = await acquire(store, res, scope, 5);
      expect(full.granted).toBe(true);
      expect(full.remaining).toBe(0);
      const denied = await acquire(store, res, scope, 1);
      expect(denied.granted).toBe(false);
    });

    it('a grant settled after a reload added a limit leaves that limit\'s count as it was', async () => {
      const name = `reload${++resourceSeq}`;
      const version = (limits: string[]) =>
        parsePolicy(['resources:', `  - name: ${name}`, '    keys: [tenant]', '    limits:', ...limits.map((l) => `      - ${l}`), ''].join('\n'), 'p.yaml').resources.get(name)!;
      const v1 = version(['{ name: rate, algorithm: token_bucket, rate: 100/1h }']);
      const v2 = version(['{ name: rate, algorithm: token_bucket, rate: 100/1h }', '{ name: hourly, algorithm: fixed_window, rate: 1/1h }']);
      const scope = scopeOf(v1, ['t']);
      const before = await acquire(store, v1, scope);
      expect((await acquire(store, v2, scope)).granted).toBe(true);
      expect((await acquire(store, v2, scope)).limitName).toBe('hourly');
      await store.release(v1, scope, before.grant, 1); // settled under the version it was granted in
      const after = await acquire(store, v2, scope);
      expect(after.granted).toBe(false);
      expect(after.limitName).toBe('hourly');
    });

    it('one release frees the concurrency slot and settles the rate limits', async () => {
      const res = resource([
        '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h, counts: requests }',
        '{ name: tokens, algorithm: sliding_window, rate: 1000/1d }',
      ]);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 1);
      expect(a.granted).toBe(true);
      await store.release(res, scope, a.grant, 99); // the real cost was 100
      const over = await acquire(store, res, scope, 901);
      expect(over.granted).toBe(false);
      expect(over.limitName).toBe('tokens');
      expect(over.remaining).toBe(900);
      const rest = await acquire(store, res, scope, 900);
      expect(rest.granted).toBe(true);
      expect(rest.remaining).toBe(0);
      await store.release(res, scope, rest.grant, 0);
      const none = await acquire(store, res, scope, 1);
      expect(none.granted).toBe(false);
      expect(none.limitName).toBe('tokens');
    });
  });

  describe('lease takes: a slice of a token bucket\'s schedule', () => {
    const UNIT = HOUR / 5; // 5/1h: one unit every 12 minutes, a burst of 5
    const MINUTE = 60_000;

    it('takes units up to ahead of their time, says when the first falls due, and a later request waits for all of them', async () => {
      const res = resource([RATE_LIMITS.token_bucket]);
      const scope = scopeOf(res, ['t']);
      // The full burst of 5 is due now; 2 more fall due within 30 minutes (at 12 and 24).
      const slice = await store.take(res, scope, 1, [8], 30 * MINUTE);
      expect(slice.granted).toBe(true);
      expect(slice.taken).toEqual([7]);
      expect(slice.left).toEqual([0]);
      expect(slice.dueInMs[0]!).toBeLessThanOrEqual(0); // the first of them is due at once
      expect(slice.dueInMs[0]!).toBeCloseTo(UNIT - 5 * UNIT, -4);
      // The 8th unit falls due at 36 minutes: an acquire is told exactly that.
      const after = await acquire(store, res, scope);
      expect(after.granted).toBe(false);
      expect(after.retryAfterMs).toBeGreaterThan(3 * UNIT - MINUTE);
      expect(after.retryAfterMs).toBeLessThanOrEqual(3 * UNIT);
      // A take may not reach past its ahead: at 30 minutes the 8th is not there...
      const short = await store.take(res, scope, 1, [4], 30 * MINUTE);
      expect(short.granted).toBe(false);
      expect(short.retryAfterMs).toBeGreaterThan(3 * UNIT - MINUTE);
      // ...at 40 it is, and only it, due in 36 minutes.
      const next = await store.take(res, scope, 1, [4], 40 * MINUTE);
      expect(next.taken).toEqual([1]);
      expect(next.dueInMs[0]!).toBeCloseTo(3 * UNIT, -4);
    });

    it('a charge never pulls a schedule leased ahead back; a refund moves it back by what it returns', async () => {
      const res = resource([RATE_LIMITS.token_bucket]);
      const scope = scopeOf(res, ['t']);
      const slice = await store.take(res, scope, 1, [8], 30 * MINUTE);
      expect(slice.taken).toEqual([7]);
      const grant = { permitId: `p${++permitSeq}`, cost: 1, grantedAt: slice.now };
      await store.release(res, scope, grant, 1); // settled for one more: the bucket was empty already
      const charged = await acquire(store, res, scope);
      expect(charged.retryAfterMs).toBeGreaterThan(3 * UNIT - MINUTE); // not 1 unit (12 minutes)
      expect(await store.refund(res, scope, `r${++permitSeq}`, [3], slice.now)).toBe(true);
      const refunded = await acquire(store, res, scope);
      expect(refunded.granted).toBe(true); // 3 back: the 5th..7th units' places are free again
      expect(refunded.remaining).toBe(0);
    });

    it('a window limit is leased as before: every unit due at once', async () => {
      const res = resource([RATE_LIMITS.fixed_window]);
      const scope = scopeOf(res, ['t']);
      const v = await store.take(res, scope, 1, [3], 30 * MINUTE);
      expect(v).toMatchObject({ granted: true, taken: [3], left: [2], dueInMs: [0] });
    });
  });

  describe('reserve: a request may use only the part of each limit not reserved above its priority', () => {
    // 20% of every limit for priority 5 and up: a priority 0 request may use 0.8 of it.
    const RESERVE = '[{ fraction: 0.2, min_priority: 5 }]';
    const ALL_CASES = [
      { algorithm: 'token_bucket', limit: '{ name: rate, algorithm: token_bucket, rate: 10/1h }' },
      { algorithm: 'fixed_window', limit: '{ name: rate, algorithm: fixed_window, rate: 10/1d }' },
      { algorithm: 'sliding_window', limit: '{ name: rate, algorithm: sliding_window, rate: 10/1d }' },
      { algorithm: 'concurrency', limit: '{ name: rate, algorithm: concurrency, max: 10, ttl: 1h }' },
    ];

    it.each(ALL_CASES)('$algorithm: a low priority gets 8 of 10 and is then denied by the reserve; a high one gets the last 2', async ({ limit }) => {
      const res = resource([limit], ['tenant'], RESERVE);
      const scope = scopeOf(res, ['t']);
      for (let i = 1; i <= 8; i++) {
        const v = await acquire(store, res, scope, 1, 0.8);
        expect(v.granted).toBe(true);
        expect(v.remaining).toBe(8 - i);
      }
      const low = await acquire(store, res, scope, 1, 0.8);
      expect(low).toMatchObject({ granted: false, remaining: 0, reserved: true });
      expect(low.retryAfterMs).toBeGreaterThan(0);
      expect(Number.isFinite(low.retryAfterMs)).toBe(true);
      // The denial took nothing: the high priority gets both reserved units, then the limit is out for it too.
      for (let i = 1; i <= 2; i++) expect(await acquire(store, res, scope, 1, 1)).toMatchObject({ granted: true, remaining: 2 - i });
      expect(await acquire(store, res, scope, 1, 1)).toMatchObject({ granted: false, reserved: false });
    });

    it.each(ALL_CASES)('$algorithm: a cost past the usable part can never be granted to that priority, and the reserve is named', async ({ limit }) => {
      const res = resource([limit], ['tenant'], RESERVE);
      const scope = scopeOf(res, ['t']);
      expect(await acquire(store, res, scope, 9, 0.8)).toMatchObject({ granted: false, retryAfterMs: Infinity, reserved: true, remaining: 8 });
      expect(await acquire(store, res, scope, 11, 0.8)).toMatchObject({ granted: false, retryAfterMs: Infinity, reserved: false });
      expect(await acquire(store, res, scope, 9, 1)).toMatchObject({ granted: true, remaining: 1 });
    });

    it('a usable part that rounds down keeps at least the fraction back (0.75 of 10 uses 7)', async () => {
      const res = resource(['{ name: rate, algorithm: fixed_window, rate: 10/1d }'], ['tenant'], '[{ fraction: 0.25, min_priority: 5 }]');
      const scope = scopeOf(res, ['t']);
      expect(await acquire(store, res, scope, 7, 0.75)).toMatchObject({ granted: true, remaining: 0 });
      expect(await acquire(store, res, scope, 1, 0.75)).toMatchObject({ granted: false, reserved: true });
    });

    it('over several limits: the reserve of each holds, and a low-priority denial charges none of them', async () => {
      const res = resource(
        [
          '{ name: burst, algorithm: token_bucket, rate: 20/1h }',
          '{ name: daily, algorithm: fixed_window, rate: 10/1d }',
          '{ name: sliding, algorithm: sliding_window, rate: 15/1d }',
          '{ name: inflight, algorithm: concurrency, max: 30, ttl: 1h }',
        ],
        ['tenant'],
        RESERVE,
      );
      const scope = scopeOf(res, ['t']);
      // daily is the tightest: 8 of its 10 for the low priority.
      expect(await acquire(store, res, scope, 8, 0.8)).toMatchObject({ granted: true, limitName: 'daily', remaining: 0 });
      const low = await acquire(store, res, scope, 1, 0.8);
      expect(low).toMatchObject({ granted: false, limitName: 'daily', reserved: true });
      // Nothing was charged by the denial: the high priority finds daily's 2, sliding's 7 and burst's 12.
      expect(await acquire(store, res, scope, 2, 1)).toMatchObject({ granted: true, limitName: 'daily', remaining: 0 });
      // sliding (15, 12 usable) now holds 10: 2 left for the low priority, but daily has none for anyone.
      expect(await acquire(store, res, scope, 1, 1)).toMatchObject({ granted: false, limitName: 'daily', reserved: false });
    });

    it('a lease take for the lowest priority takes the usable part only', async () => {
      const res = resource(['{ name: rate, algorithm: fixed_window, rate: 10/1d }'], ['tenant'], RESERVE);
      const scope = scopeOf(res, ['t']);
      expect(await store.take(res, scope, 1, [10], 0, 0.8)).toMatchObject({ granted: true, taken: [8], left: [0] });
      expect(await store.take(res, scope, 1, [10], 0, 0.8)).toMatchObject({ granted: false, reserved: true });
      expect(await acquire(store, res, scope, 2, 1)).toMatchObject({ granted: true, remaining: 0 });
    });
  });

  describe('hostile numbers: the same outcomes on every store', () => {
    it.each(RATE_ALGORITHMS)('$algorithm: settling at the cost bound drains the limit, never more; a refund of the bound fills it', ({ limit, horizonMs }) =>
      checkSettleExtremes(store as FullStore, limit, horizonMs),
    );

    it('a cost at the bound is denied by rate limits and held exactly by a concurrency limit as large', () => checkCostAtBound(store as FullStore));

    it('one settlement frees the slot and drains every rate limit it charges, in one step', async () => {
      const res = resource([
        '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h, counts: requests }',
        '{ name: tb, algorithm: token_bucket, rate: 5/1h }',
        '{ name: fw, algorithm: fixed_window, rate: 5/1d }',
        '{ name: sw, algorithm: sliding_window, rate: 5/1d }',
      ]);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 1);
      expect(a.granted).toBe(true);
      await store.release(res, scope, a.grant, MAX_COST - 1);
      await store.release(res, scope, a.grant, MAX_COST - 1);
      const next = await acquire(store, res, scope, 1);
      expect(next.granted).toBe(false);
      expect(['tb', 'fw', 'sw']).toContain(next.limitName);
      expect(next.remaining).toBe(0);
      expect(next.retryAfterMs).toBeLessThanOrEqual(2 * DAY);
    });
  });

  describe('scopes and keys', () => {
    it('values that would collide without escaping get distinct budgets', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 2/1d }'], ['a', 'b']);
      const left = scopeOf(res, ['a|b', 'c']);
      const right = scopeOf(res, ['a', 'b|c']);
      expect(left).not.toBe(right);
      expect((await acquire(store, res, left, 2)).granted).toBe(true);
      expect((await acquire(store, res, left, 1)).granted).toBe(false);
      const other = await acquire(store, res, right, 1);
      expect(other.granted).toBe(true);
      expect(other.remaining).toBe(1);
      // An escape sequence typed literally is not the character it escapes.
      const literal = await acquire(store, res, scopeOf(res, ['a%7Cb', 'c']), 1);
      expect(literal.granted).toBe(true);
      expect(literal.remaining).toBe(1);
    });

    it('values with braces are budgets of their own', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 2/1d }']);
      const scopes = ['x', '{x}', '}x{', '{', '}'].map((v) => scopeOf(res, [v]));
      expect(new Set(scopes).size).toBe(scopes.length);
      for (const scope of scopes) {
        expect(scope).not.toMatch(/[{}]/);
        const v = await acquire(store, res, scope, 2);
        expect(v.granted).toBe(true);
        expect(v.remaining).toBe(0);
      }
    });

    it('a limit named like another limit\'s internal key is a limit of its own', async () => {
      // Limit names may contain ':', and a concurrency limit keeps more than one key per scope.
      const res = resource([
        '{ name: c, algorithm: concurrency, max: 20, ttl: 1h }',
        '{ name: "c:held", algorithm: fixed_window, rate: 10/1d }',
      ]);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 1);
      expect(a.granted).toBe(true);
      expect(a.limitName).toBe('c:held');
      expect(a.remaining).toBe(9);
      const b = await acquire(store, res, scope, 2);
      expect(b.granted).toBe(true);
      expect(b.remaining).toBe(7);
      await store.release(res, scope, a.grant, 0);
      const c = await acquire(store, res, scope, 7);
      expect(c.granted).toBe(true);
      expect(c.limitName).toBe('c:held');
      expect(c.remaining).toBe(0);
      const d = await acquire(store, res, scope, 1);
      expect(d.granted).toBe(false);
      expect(d.limitName).toBe('c:held');
    });
  });

  describe('the waiting line', () => {
    const listener = new Listener();
    const UNIT = HOUR / 5; // 5/1h: one unit every 12 minutes
    const MINUTE = 60_000;
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const LANES = 'lanes: { interactive: 0.5, batch: 0.5 }';

    beforeAll(async () => {
      store.listen(SIDECAR, listener);
      if (factory.kind === 'redis') await subscribed(redisServer!.client, `sluice:line:${SIDECAR}`);
    });

    it('join: granted when nobody waits and it fits; else waiting, the first in line told when it fits; full past max_waiters; never', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }'], ['tenant'], '[]', ['wait: { max_waiters: 2 }']);
      const scope = scopeOf(res, ['t']);
      expect(await store.join(res, scope, ticket(2), 2)).toMatchObject({ state: 'granted', granted: true, remaining: 1, ticket: '', waiting: 0 });
      const first = await store.join(res, scope, ticket(2), 2);
      expect(first).toMatchObject({ state: 'waiting', granted: false, waiting: 1 });
      expect(first.ticket).not.toBe('');
      expect(first.turnInMs).toBeGreaterThan(0);
      expect(first.turnInMs).toBeLessThanOrEqual(DAY);
      // Every sidecar hears that a line formed: its leases serve none of this scope ahead of it.
      await listener.next('formed', scope);
      // The unit left would fit this one: it waits all the same, behind the first.
      const second = await store.join(res, scope, ticket(1), 2);
      expect(second).toMatchObject({ state: 'waiting', waiting: 2, turnInMs: Infinity });
      expect(await store.join(res, scope, ticket(1), 2)).toMatchObject({ state: 'full', granted: false, ticket: '', waiting: 2 });
      expect(await store.join(res, scope, ticket(4), 2)).toMatchObject({ state: 'never', granted: false, retryAfterMs: Infinity, ticket: '', waiting: 2 });
      // Asked again, each keeps its place.
      expect(await store.retry(res, scope, second.ticket)).toMatchObject({ state: 'waiting', ticket: second.ticket, waiting: 2, turnInMs: Infinity });
      const again = await store.retry(res, scope, first.ticket);
      expect(again).toMatchObject({ state: 'waiting', ticket: first.ticket, waiting: 2 });
      expect(again.turnInMs).toBeLessThanOrEqual(first.turnInMs);
      // None of them was charged: the unit left goes to a request above every waiter.
      expect(await store.acquire(res, scope, 1, '', 1, 1)).toMatchObject({ granted: true, remaining: 0 });
    });

    it('leave takes a ticket out of the line (gone); asked about again, or left again, it is gone', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 1/1d }']);
      const scope = scopeOf(res, ['t']);
      expect((await acquire(store, res, scope)).granted).toBe(true);
      const w = await store.join(res, scope, ticket(), 10);
      expect(w).toMatchObject({ state: 'waiting', waiting: 1 });
      expect(await store.leave(res, scope, w.ticket)).toMatchObject({ state: 'gone', granted: false, ticket: '', waiting: 0 });
      expect(await store.retry(res, scope, w.ticket)).toMatchObject({ state: 'gone', granted: false, waiting: 0 });
      expect((await store.leave(res, scope, w.ticket)).state).toBe('gone');
      expect((await store.retry(res, scope, 'no ticket at all')).state).toBe('gone');
    });

    it('the first in line is told when its units fall due; the one after it, when it becomes first', async () => {
      const res = resource([RATE_LIMITS.token_bucket]);
      const scope = scopeOf(res, ['t']);
      expect((await acquire(store, res, scope, 5)).granted).toBe(true);
      const a = await store.join(res, scope, ticket(1), 10);
      expect(a.state).toBe('waiting');
      expect(a.turnInMs).toBeGreaterThan(UNIT - MINUTE);
      expect(a.turnInMs).toBeLessThanOrEqual(UNIT);
      const second = ticket(2);
      expect(await store.join(res, scope, second, 10)).toMatchObject({ state: 'waiting', turnInMs: Infinity });
      await store.leave(res, scope, a.ticket);
      const turn = await listener.next('turn', second.id);
      expect(turn.inMs).toBeGreaterThan(2 * UNIT - MINUTE);
      expect(turn.inMs).toBeLessThanOrEqual(2 * UNIT);
    });

    it('while requests wait, acquire is denied unless its priority is above every waiter, and a lease take always is', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 5/1d }']);
      const scope = scopeOf(res, ['t']);
      expect((await acquire(store, res, scope, 3)).granted).toBe(true);
      const w = await store.join(res, scope, ticket(3, { priority: 2 }), 10);
      expect(w.state).toBe('waiting');
      // 2 units are left: enough for each of these, but for the line. With no token bucket to pace by, come back in a second (the day's window ends later).
      expect(await store.acquire(res, scope, 1, '', 1, 0)).toMatchObject({ granted: false, waiting: 1, retryAfterMs: 1000 });
      expect(await store.acquire(res, scope, 1, '', 1, 2)).toMatchObject({ granted: false, waiting: 1 });
      expect(await store.take(res, scope, 1, [2], 0)).toMatchObject({ granted: false, waiting: 1, taken: [0] });
      expect(await store.acquire(res, scope, 1, '', 1, 3)).toMatchObject({ granted: true, remaining: 1 });
      // With nobody in line, priority 0 is served again.
      expect((await store.leave(res, scope, w.ticket)).state).toBe('gone');
      expect(await store.acquire(res, scope, 1, '', 1, 0)).toMatchObject({ granted: true, remaining: 0 });
    });

    it('a line moves on any call to its scope: a request that does not wait first serves the ticket that fits, whose sidecar never asked again', async () => {
      const res = resource(['{ name: rps, algorithm: token_bucket, rate: 10/1s, burst: 1 }']);
      const scope = scopeOf(res, ['t']);
      expect((await acquire(store, res, scope)).granted).toBe(true);
      const a = ticket();
      expect((await store.join(res, scope, a, 10)).state).toBe('waiting');
      // a's sidecar is gone: nothing asks for it again. Once its unit falls due, any call serves it.
      await sleep(120);
      const after = await store.acquire(res, scope, 1, '', 1, 0);
      // Denied by the bucket (a took the unit), not for anyone waiting.
      expect(after.granted).toBe(false);
      expect(after.waiting ?? 0).toBe(0);
      expect((await listener.next('answered', a.id)).verdict).toMatchObject({ granted: true });
      expect((await store.retry(res, scope, 'x')).waiting).toBe(0);
    });

    it('a ticket served by another call is told so (answered); its leave, or its retry, then answers granted, once', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h }']);
      const scope = scopeOf(res, ['t']);
      const holder = await acquire(store, res, scope);
      expect(holder.granted).toBe(true);
      const [a, b, c] = [ticket(), ticket(), ticket()];
      const inLine = { a: await store.join(res, scope, a, 10), b: await store.join(res, scope, b, 10) };
      expect([inLine.a.state, inLine.b.state]).toEqual(['waiting', 'waiting']);
      await store.release(res, scope, holder.grant, 0);
      await listener.next('wake', a.id);
      // b's retry serves the line: a is first, and fits; b waits on.
      expect(await store.retry(res, scope, inLine.b.ticket)).toMatchObject({ state: 'waiting', waiting: 1 });
      const told = await listener.next('answered', a.id);
      expect(told.verdict).toMatchObject({ granted: true, remaining: 0 });
      // a's sidecar gave up on it before it heard: its leave says it was served, so that the grant goes back.
      expect(await store.leave(res, scope, inLine.a.ticket)).toMatchObject({ state: 'granted', granted: true, remaining: 0 });
      expect((await store.leave(res, scope, inLine.a.ticket)).state).toBe('gone');
      // a's slot back: c's join serves b, first in line, then waits behind it.
      await store.release(res, scope, { permitId: a.permitId, cost: 1, grantedAt: told.verdict.now }, 0);
      await listener.next('wake', b.id);
      const joined = await store.join(res, scope, c, 10);
      expect(joined).toMatchObject({ state: 'waiting', waiting: 1 });
      expect((await listener.next('answered', b.id)).verdict.granted).toBe(true);
      // Had b's sidecar missed the message, its retry collects the grant.
      expect(await store.retry(res, scope, inLine.b.ticket)).toMatchObject({ state: 'granted', granted: true });
      expect((await store.retry(res, scope, inLine.b.ticket)).state).toBe('gone');
      expect(await store.retry(res, scope, joined.ticket)).toMatchObject({ state: 'waiting', waiting: 1 });
    });

    it('release, a settlement for less and a refund wake the first in line of every lane', async () => {
      const res = resource([RATE_LIMITS.token_bucket], ['tenant'], '[]', [LANES]);
      const scope = scopeOf(res, ['t']);
      const drained = await acquire(store, res, scope, 5);
      expect(drained.granted).toBe(true);
      const [first, other, behind] = [ticket(1, { lane: 1 }), ticket(1, { lane: 2 }), ticket(1, { lane: 1 })];
      const inLine = new Map<Ticket, string>();
      for (const t of [first, other, behind]) {
        const v = await store.join(res, scope, t, 10);
        expect(v.state).toBe('waiting');
        inLine.set(t, v.ticket);
      }
      await store.release(res, scope, drained.grant, -1); // it cost 1 less
      await Promise.all([listener.next('wake', first.id), listener.next('wake', other.id)]);
      expect((await store.retry(res, scope, inLine.get(first)!)).state).toBe('granted');
      expect(await store.refund(res, scope, `r${++permitSeq}`, [1], drained.now)).toBe(true);
      await Promise.all([listener.next('wake', behind.id), listener.next('wake', other.id)]);
      // Lane 1 was served last: lane 2 goes first.
      expect((await store.retry(res, scope, inLine.get(other)!)).state).toBe('granted');
      expect((await store.retry(res, scope, inLine.get(behind)!)).state).toBe('waiting');
    });

    it('serves the highest priority first, then the lane served least for its share, then the earliest arrival', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h }'], ['tenant'], '[]', [LANES]);
      const scope = scopeOf(res, ['t']);
      let holder = (await acquire(store, res, scope)).grant;
      const low1 = ticket(1, { lane: 1 });
      const high1 = ticket(1, { lane: 1, priority: 5 });
      const low2 = ticket(1, { lane: 1 });
      const high2 = ticket(1, { lane: 2, priority: 5 });
      const low3 = ticket(1, { lane: 2 });
      const inLine = new Map<Ticket, string>();
      for (const t of [low1, high1, low2, high2, low3]) {
        const v = await store.join(res, scope, t, 10);
        expect(v.state).toBe('waiting');
        inLine.set(t, v.ticket);
      }
      // The two priority 5 first, the earlier first; then low1 (both lanes served once: the
      // earliest); then low3 before low2, which came first, since lane 1 was served more.
      for (const next of [high1, high2, low1, low3, low2]) {
        await store.release(res, scope, holder, 0);
        expect({ served: await store.retry(res, scope, inLine.get(next)!) }).toMatchObject({ served: { state: 'granted' } });
        holder = { permitId: next.permitId, cost: 1, grantedAt: 0 };
      }
    });

    it('a ticket whose wait is over is dropped: no longer in line, ahead of acquire, or counted', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 5/1d }']);
      const scope = scopeOf(res, ['t']);
      expect((await acquire(store, res, scope, 3)).granted).toBe(true);
      const dropped = await store.join(res, scope, ticket(3, { waitMs: 100 }), 10);
      expect(dropped).toMatchObject({ state: 'waiting', waiting: 1 });
      expect(await store.acquire(res, scope, 1, '', 1, 0)).toMatchObject({ granted: false, waiting: 1 });
      // Nothing is told when a ticket is dropped: its time has to pass.
      await sleep(300);
      expect(await store.acquire(res, scope, 1, '', 1, 0)).toMatchObject({ granted: true, remaining: 1 });
      expect(await store.join(res, scope, ticket(2), 10)).toMatchObject({ state: 'waiting', waiting: 1 });
      expect(await store.retry(res, scope, dropped.ticket)).toMatchObject({ state: 'gone', waiting: 1 });
    });

    it('a line emptied by dropped tickets starts afresh: no lane keeps credit from before', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h }'], ['tenant'], '[]', [LANES]);
      const scope = scopeOf(res, ['t']);
      const serve = async (holder: Grant, next: Ticket, inLine: string) => {
        await store.release(res, scope, holder, 0);
        expect({ served: await store.retry(res, scope, inLine) }).toMatchObject({ served: { state: 'granted' } });
        return { permitId: next.permitId, cost: 1, grantedAt: 0 };
      };
      const join = async (t: Ticket) => {
        const v = await store.join(res, scope, t, 10);
        expect(v.state).toBe('waiting');
        return v.ticket;
      };
      let holder = (await acquire(store, res, scope)).grant;
      // Lane 2 is served twice, lane 1 joins in between and is served never; then lane 1's ticket,
      // and lane 2's last, are dropped.
      const [b1, b2] = [ticket(1, { lane: 2 }), ticket(1, { lane: 2 })];
      const inLine = [await join(b1), await join(b2)];
      holder = await serve(holder, b1, inLine[0]!);
      await join(ticket(1, { lane: 1, waitMs: 200 }));
      await join(ticket(1, { lane: 2, waitMs: 200 }));
      holder = await serve(holder, b2, inLine[1]!);
      await sleep(400);
      // A new busy period: both lanes equal again, so each is served in turn.
      const [a2, a3, b4] = [ticket(1, { lane: 1 }), ticket(1, { lane: 1 }), ticket(1, { lane: 2 })];
      const again = [await join(a2), await join(a3), await join(b4)];
      holder = await serve(holder, a2, again[0]!);
      holder = await serve(holder, b4, again[2]!);
      await serve(holder, a3, again[1]!);
    });

    // Only Redis has keys; the memory store's line is dropped with its last ticket.
    if (factory.kind === 'redis') it('every Redis key of the line has a TTL, whichever call wrote it', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h }'], ['tenant'], '[]', [LANES]);
      const scope = scopeOf(res, ['t']);
      const holder = await acquire(store, res, scope);
      const inLine: string[] = [];
      for (const t of [ticket(1, { lane: 1 }), ticket(1, { lane: 2 }), ticket(1, { lane: 1 })]) inLine.push((await store.join(res, scope, t, 10)).ticket);
      await store.release(res, scope, holder.grant, 0);
      // The second ticket's retry serves the first: it writes the record of that grant and the lanes' times.
      expect((await store.retry(res, scope, inLine[1]!)).state).toBe('waiting');
      const client = redisServer!.client;
      const keys = (store as RedisStore).lineKeysOf(res, scope);
      expect(keys.map((key) => key.slice(key.lastIndexOf('}') + 1))).toEqual(['|wait|due', '|wait|served', '|wait|lanes', '|wait|line|1', '|wait|line|2']);
      const ttls = Object.fromEntries(await Promise.all(keys.map(async (key) => [key, await client.pttl(key)] as const)));
      for (const key of keys) expect({ key, ttl: ttls[key]! > 0 }).toEqual({ key, ttl: true });
    });
  });

  // -------------------------------------------------------------------------------------------
  // What only the Redis store has: keys, hash slots, TTLs, the release script's reply.

  describe('inspect: a scope as it is, charging nothing', () => {
    it.each(RATE_CASES)('$algorithm: a scope never seen is full; after grants, what acquire would see; looking charges nothing', async ({ limit }) => {
      const res = resource([limit]);
      const scope = scopeOf(res, ['t']);
      expect(await store.inspect(res, scope)).toEqual({ limits: [{ remaining: 5, resetAfterMs: 0 }], waiting: 0 });
      const granted = await acquire(store, res, scope, 2);
      expect(granted.remaining).toBe(3);
      for (let i = 0; i < 3; i++) {
        const look = await store.inspect(res, scope);
        expect(look.limits[0]!.remaining).toBe(3);
        expect(look.limits[0]!.resetAfterMs).toBeGreaterThan(0);
        expect(look.limits[0]!.resetAfterMs).toBeLessThanOrEqual(2 * DAY);
      }
      // The three looks took nothing: the 3 units left are all there.
      expect(await acquire(store, res, scope, 3)).toMatchObject({ granted: true, remaining: 0 });
      expect((await store.inspect(res, scope)).limits[0]!.remaining).toBe(0);
    });

    it('every limit of the resource, in policy order; a limit that counts requests is looked at, not counted', async () => {
      const res = resource([
        '{ name: tokens, algorithm: token_bucket, rate: 100/1h }',
        '{ name: calls, algorithm: fixed_window, rate: 3/1d, counts: requests }',
        '{ name: inflight, algorithm: concurrency, max: 2, ttl: 1h, counts: requests }',
      ]);
      const scope = scopeOf(res, ['t']);
      const held = await acquire(store, res, scope, 40);
      expect(held.granted).toBe(true);
      const look = await store.inspect(res, scope);
      expect(look.limits.map((l) => l.remaining)).toEqual([60, 2, 1]);
      expect(look.limits[2]!.resetAfterMs).toBeGreaterThan(HOUR - 60_000);
      expect(look.limits[2]!.resetAfterMs).toBeLessThanOrEqual(HOUR);
      await store.release(res, scope, held.grant, 0);
      const after = await store.inspect(res, scope);
      expect(after.limits.map((l) => l.remaining)).toEqual([60, 2, 2]);
      expect(after.limits[2]!.resetAfterMs).toBe(0);
      // Two more requests fit the request count: looking counted none.
      expect((await acquire(store, res, scope)).granted).toBe(true);
      expect((await acquire(store, res, scope)).granted).toBe(true);
      expect(await acquire(store, res, scope)).toMatchObject({ granted: false, limitName: 'calls' });
    });

    it('counts the tickets in line and serves none of them', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 2/1d }']);
      const scope = scopeOf(res, ['t']);
      expect((await acquire(store, res, scope)).granted).toBe(true);
      const big = await store.join(res, scope, ticket(2), 10);
      const small = await store.join(res, scope, ticket(1), 10);
      expect([big.state, small.state]).toEqual(['waiting', 'waiting']);
      expect(await store.inspect(res, scope)).toEqual({ limits: [{ remaining: 1, resetAfterMs: expect.any(Number) }], waiting: 2 });
      // Still waiting, the unit left still there: inspect served nobody.
      expect(await store.retry(res, scope, small.ticket)).toMatchObject({ state: 'waiting', waiting: 2 });
      await store.leave(res, scope, big.ticket);
      await store.leave(res, scope, small.ticket);
      expect((await store.inspect(res, scope)).waiting).toBe(0);
    });
  });

  if (factory.kind === 'redis') describe('redis keys', () => {
    const redisStore = () => store as RedisStore;

    it('inspecting scopes never seen writes no key', async () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 2/1d }', '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h }'], ['tenant'], '[]', [
        'lanes: { a: 0.5, b: 0.5 }',
      ]);
      for (let i = 0; i < 50; i++) await store.inspect(res, scopeOf(res, [`never-${i}`]));
      // By name, not by DBSIZE: keys earlier tests wrote may expire meanwhile.
      expect(await redisServer!.client.keys('*never-*')).toEqual([]);
    });

    it('keys of scopes that would collide without escaping are distinct', () => {
      const res = resource(['{ name: daily, algorithm: fixed_window, rate: 2/1d }', '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h }'], ['a', 'b']);
      const left = redisStore().keysOf(res, scopeOf(res, ['a|b', 'c']));
      const right = redisStore().keysOf(res, scopeOf(res, ['a', 'b|c']));
      expect(left).toHaveLength(3);
      for (const key of left) expect(right).not.toContain(key);
    });

    it('every key of a resource\'s scope is distinct', () => {
      const res = resource([
        '{ name: c, algorithm: concurrency, max: 2, ttl: 1h }',
        '{ name: "c:held", algorithm: fixed_window, rate: 10/1d }',
        '{ name: d, algorithm: token_bucket, rate: 5/1h }',
      ]);
      const keys = redisStore().keysOf(res, scopeOf(res, ['t']));
      expect(keys).toHaveLength(4);
      expect(new Set(keys).size).toBe(keys.length);
    });

    it.each(['plain', '{x}', '}{', '{', '}', 'a{b}c', '{}', '%7B'])('value %j: the hash tag is the whole scope, all keys in one slot', (value) => {
      const res = resource([
        '{ name: daily, algorithm: fixed_window, rate: 2/1d }',
        '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h }',
        '{ name: rpm, algorithm: token_bucket, rate: 5/1h }',
      ]);
      const scope = scopeOf(res, [value]);
      const keys = redisStore().keysOf(res, scope);
      expect(keys).toHaveLength(4);
      for (const key of keys) expect(hashTag(key)).toBe(scope);
      const slots = new Set(keys.map(keySlot));
      expect(slots.size).toBe(1);
      expect([...slots][0]).toBe(keySlot(`{${scope}}`));
    });

    it('releasing the same grant twice leaves one permit and the right held total in Redis', async () => {
      const res = resource(['{ name: inflight, algorithm: concurrency, max: 3, ttl: 1h }']);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 2);
      const b = await acquire(store, res, scope, 1);
      expect(a.granted && b.granted).toBe(true);
      const [permits, held] = redisStore().keysOf(res, scope) as [string, string];
      const client = redisServer!.client;
      expect(await client.zcard(permits)).toBe(2);
      expect(Number(await client.get(held))).toBe(3);
      await store.release(res, scope, a.grant, 0);
      expect(await client.zcard(permits)).toBe(1);
      expect(Number(await client.get(held))).toBe(1);
      await store.release(res, scope, a.grant, 0);
      expect(await client.zcard(permits)).toBe(1);
      expect(Number(await client.get(held))).toBe(1);
      const c = await acquire(store, res, scope, 2);
      expect(c.granted).toBe(true);
      expect(c.remaining).toBe(0);
      expect((await acquire(store, res, scope, 1)).granted).toBe(false);
    });

    it('a settlement that fails writes nothing, not even its once-marker: a retry applies it', async () => {
      const res = resource(['{ name: fw, algorithm: fixed_window, rate: 5/1d }', '{ name: tb, algorithm: token_bucket, rate: 5/1h }']);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 1);
      expect(a.granted).toBe(true);
      const [fwKey, tbKey] = redisStore().keysOf(res, scope) as [string, string];
      const client = redisServer!.client;
      // The bucket's key holds something no script wrote: reading it fails, after fw was read.
      await client.del(tbKey);
      await client.hset(tbKey, 'x', '1');
      await expect(store.release(res, scope, a.grant, 2)).rejects.toThrow(/WRONGTYPE/);
      expect(await client.hget(fwKey, 'c')).toBe('1');
      await client.del(tbKey);
      await store.release(res, scope, a.grant, 2);
      expect(await client.hget(fwKey, 'c')).toBe('3');
      // fw: 1 + 2 + 1 of 5; tb, fresh after the delete: 2 + 1 of 5.
      const next = await acquire(store, res, scope, 1);
      expect(next.limitName).toBe('fw');
      expect(next.remaining).toBe(1);
    });

    it('every key written has a TTL', async () => {
      const res = resource([
        '{ name: tb, algorithm: token_bucket, rate: 5/1h }',
        '{ name: fw, algorithm: fixed_window, rate: 10/1d }',
        '{ name: sw, algorithm: sliding_window, rate: 10/1d }',
        '{ name: inflight, algorithm: concurrency, max: 3, ttl: 1h }',
      ]);
      const scope = scopeOf(res, ['t']);
      const a = await acquire(store, res, scope, 2);
      const b = await acquire(store, res, scope, 1);
      expect(a.granted && b.granted).toBe(true);
      await store.release(res, scope, a.grant, -1);
      await store.release(res, scope, b.grant, 2);
      await acquire(store, res, scope, 1);
      await acquire(store, res, scope, 9); // denied
      // A scope whose only writes are settlements.
      const scope2 = scopeOf(res, ['settled-only']);
      await store.release(res, scope2, { permitId: 'never-granted', cost: 1, grantedAt: a.now }, 3);
      await store.release(res, scope2, { permitId: 'never-granted', cost: 1, grantedAt: a.now }, -1);

      const client = redisServer!.client;
      const mine = [...redisStore().keysOf(res, scope), ...redisStore().keysOf(res, scope2).filter((k) => !k.includes(':inflight'))];
      const all = await client.keys('*');
      for (const key of mine) expect(all).toContain(key);
      expect(all.length).toBeGreaterThan(mine.length); // earlier tests' keys too
      const noTtl: string[] = [];
      for (const key of all) {
        const ttl = await client.pttl(key);
        // -2: expired between KEYS and PTTL (short-ttl tests); -1: no TTL at all.
        if (ttl === -1) noTtl.push(key);
      }
      expect(noTtl).toEqual([]);
      for (const key of mine) expect(await client.pttl(key)).toBeGreaterThan(0);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Redis Cluster hashing, computed here: CLUSTER KEYSLOT needs cluster mode enabled.

/** CRC16-CCITT (XModem), as Redis Cluster uses. */
function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The part of the key Redis Cluster hashes: between the first `{` and the next `}`, if non-empty. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  if (close < 0 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

function keySlot(key: string): number {
  return crc16(Buffer.from(hashTag(key), 'utf8')) % 16384;
}

describe('cluster slot helper', () => {
  it('matches Redis Cluster reference values', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0x31c3);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('{user1000}.following')).toBe(keySlot('{user1000}.followers'));
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    expect(hashTag('foo{}{bar}')).toBe('foo{}{bar}');
    expect(hashTag('foo{{bar}}zap')).toBe('{bar');
  });
});
