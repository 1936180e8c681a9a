// The waiting line under faults, floods and leases, on real sidecars (dist, deployed node flags)
// on one real redis-server: what the README's "Waiting" and docs/waiting.md promise when Redis is
// killed, frozen or flushed under waiting requests, when a thousand waiting calls are cancelled at
// once, at the caps, to requests that do not wait, with leases on the key, in the metrics, for a
// unary deadline shorter than max_wait, and for a waiter's call that Redis runs after the sidecar
// gave up on it. Sidecars A and B share one policy; C has a small server.max_waiters. Redis is
// frozen, flushed, frozen again and killed by the last tests, so they run in that order, last.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, ms, type AcquireRequest, type AcquireResponse, type SluiceClient } from '../support/client.js';
import { startRedis, waitFor, type RedisProcess } from '../support/redis-server.js';
import { DEPLOYED_NODE_FLAGS, metric, startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { untilNoLine, untilWaiting } from '../support/line.js';

/** server.max_waiters of sidecar C. */
const C_MAX_WAITERS = 30;
/** wait.max_waiters of resource `capped`. */
const SCOPE_MAX_WAITERS = 20;
/** store.timeout: a silent Redis is given up on this long after a call. */
const STORE_TIMEOUT_MS = 500;
/** The stall check (src/wait/waiters.ts STALL_CHECK_MS). */
const STALL_CHECK_MS = 1_000;

// A slow bucket per failure policy (2 a second), so that requests wait; no leases, so that every
// grant is the store's or the failure policy's.
const slow = (name: string, onFailure: string) => `
  - name: ${name}
    keys: [tenant]
    on_store_failure: ${onFailure}
    lease: { enabled: false }
    limits:
      - { name: rps, algorithm: token_bucket, rate: 2/1s, burst: 2 }`;

const policy = (serverMaxWaiters: number) => `
server:
  max_waiters: ${serverMaxWaiters}
# Wide: on this busy machine a slow answer is waited for, not ruled on by on_store_failure; the
# tests that freeze Redis count it in their bounds.
store:
  timeout: ${STORE_TIMEOUT_MS}ms
resources:${slow('open', 'open')}${slow('closed', 'closed')}${slow('local', 'local')}
  - name: storm
    keys: [tenant]
    wait: { max_waiters: 2000 }
    limits:
      - { name: inflight, algorithm: concurrency, max: 5, ttl: 1h }
  - name: capped
    keys: [tenant]
    wait: { max_waiters: ${SCOPE_MAX_WAITERS} }
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 1h }
  - name: metered
    keys: [tenant]
    wait: { max_waiters: 3 }
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 1h }
  - name: windowed
    keys: [tenant]
    on_store_failure: closed
    settle_within: 1h
    lease: { enabled: false }
    limits:
      - { name: hourly, algorithm: fixed_window, rate: 10/1h }
  - name: hot
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: true, max_fraction: 0.1, ttl: 1s }
    limits:
      - { name: rps, algorithm: token_bucket, rate: 100/1s, burst: 100 }
`;

/** How a call ended, and when its answer arrived (performance.now). */
interface Outcome {
  res: AcquireResponse | null;
  err: ServiceError | null;
  at: number;
}

interface Pending {
  cancel(): void;
  done: Promise<Outcome>;
}

/** A unary Acquire that can be cancelled, with an optional deadline in ms from now. */
function acquire(client: SluiceClient, req: AcquireRequest, deadlineMs?: number): Pending {
  let call: { cancel(): void } | undefined;
  const done = new Promise<Outcome>((resolve) => {
    const options = deadlineMs === undefined ? {} : { deadline: new Date(Date.now() + deadlineMs) };
    call = client.raw.Acquire(req, options, (err: ServiceError | null, res: AcquireResponse) =>
      resolve({ res: err ? null : res, err, at: performance.now() }),
    );
  });
  return { cancel: () => call!.cancel(), done };
}

const waitReq = (resource: string, tenant: string, maxWaitMs: number, extra: Partial<AcquireRequest> = {}): AcquireRequest => ({
  resource,
  descriptors: { tenant },
  max_wait: { seconds: Math.floor(maxWaitMs / 1000), nanos: (maxWaitMs % 1000) * 1_000_000 },
  ...extra,
});

/** Redis's clock, in ms. */
async function redisNow(redis: Redis): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Number(us) / 1000;
}

/** The sidecar's resident set, from /proc. */
function rssMb(sidecar: SidecarProcess): number {
  const statusText = readFileSync(`/proc/${sidecar.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(statusText)![1]) / 1024;
}

/** Channels of their own (not one shared connection): a connection carries at most 100 calls at once. */
const channel = (sidecar: SidecarProcess) => connect(sidecar.address, { 'grpc.use_local_subchannel_pool': 1 });

/** What each slow resource's on_store_failure answers with. */
const ON_FAILURE = { open: 'FAIL_OPEN', closed: 'FAIL_CLOSED', local: 'LOCAL_FALLBACK' } as const;
const SLOW = Object.keys(ON_FAILURE) as (keyof typeof ON_FAILURE)[];
/** A waiter hears of a store fault by then: the stall check (at most two of its periods after the last word) + store.timeout + margin. */
const FAULT_NOTICED_MS = 2 * STALL_CHECK_MS + STORE_TIMEOUT_MS + 1_500;
/** The waiters' max_wait through a fault: far beyond FAULT_NOTICED_MS, so an answer by max_wait would show. */
const FAULT_MAX_WAIT_MS = 30_000;

interface Answered {
  /** Each waiter's resource, and how it ended. */
  resources: string[];
  outcomes: Outcome[];
  faultAt: number;
}

/** Ten waiters through `client` for each slow resource; the fault strikes once most of them wait; every answer. */
async function waitersThrough(client: SluiceClient, redis: Redis, tenant: string, fault: () => unknown): Promise<Answered> {
  const resources = SLOW.flatMap((resource) => Array.from({ length: 10 }, () => resource));
  const calls = resources.map((resource) => acquire(client, waitReq(resource, tenant, FAULT_MAX_WAIT_MS)));
  for (const resource of SLOW) await untilWaiting(redis, resource, tenant, 6);
  await fault();
  const faultAt = performance.now();
  return { resources, outcomes: await Promise.all(calls.map((call) => call.done)), faultAt };
}

/** Each waiter was served before the fault, or answered by its resource's on_store_failure within `boundMs` of it; every resource felt it. */
function expectAnsweredByPolicy({ resources, outcomes, faultAt }: Answered, fault: string, boundMs: number): void {
  const byPolicy = outcomes.filter((o) => o.res && o.res.decided_by !== 'STORE');
  console.log(`${fault}: ${byPolicy.length} of ${outcomes.length} waiters answered by on_store_failure, at ${byPolicy.map((o) => Math.round(o.at - faultAt)).join(', ')} ms after (bound ${boundMs} ms)`);
  outcomes.forEach((o, i) => {
    const resource = resources[i] as keyof typeof ON_FAILURE;
    expect(o.err).toBeNull();
    if (o.res!.decided_by === 'STORE') {
      expect(o.res!.granted).toBe(true);
      expect(o.at - faultAt).toBeLessThan(250); // served just before the fault
      return;
    }
    expect(o.res!.decided_by).toBe(ON_FAILURE[resource]);
    if (resource === 'open') expect(o.res!.granted).toBe(true);
    if (resource === 'closed') expect(o.res!.granted).toBe(false);
    expect(o.at - faultAt).toBeLessThan(boundMs);
  });
  for (const resource of SLOW) expect(outcomes.some((o, i) => resources[i] === resource && o.res!.decided_by === ON_FAILURE[resource])).toBe(true);
}

describe('the waiting line under faults, floods and leases', () => {
  let redis: RedisProcess;
  let sidecars: SidecarProcess[] = [];
  let a: SluiceClient, b: SluiceClient, c: SluiceClient;
  const clients: SluiceClient[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    const env = { SLUICE_REDIS_URL: redis.url };
    sidecars = await Promise.all([policy(10_000), policy(10_000), policy(C_MAX_WAITERS)].map((p) => startSidecar(p, env, DEPLOYED_NODE_FLAGS)));
    [a, b, c] = sidecars.map(channel) as [SluiceClient, SluiceClient, SluiceClient];
    clients.push(a, b, c);
  }, 60_000);
  afterAll(async () => {
    for (const client of clients) client.close();
    await Promise.all(sidecars.map((sidecar) => sidecar.stop()));
    redis?.resume();
    await redis?.stop();
  });

  it('caps: wait.max_waiters across two sidecars and server.max_waiters in one, each named; other callers and scopes go on', async () => {
    const [A, , C] = sidecars as [SidecarProcess, SidecarProcess, SidecarProcess];
    // The scope's one slot is held: everyone after it waits.
    const holder = await a.acquire({ resource: 'capped', descriptors: { tenant: 'full' } });
    expect(holder.granted).toBe(true);
    const waiting: Pending[] = [];
    for (let i = 0; i < SCOPE_MAX_WAITERS / 2; i++) waiting.push(acquire(a, waitReq('capped', 'full', 60_000)));
    await untilWaiting(redis.client, 'capped', 'full', SCOPE_MAX_WAITERS / 2);
    for (let i = 0; i < SCOPE_MAX_WAITERS / 2; i++) waiting.push(acquire(b, waitReq('capped', 'full', 60_000)));
    await untilWaiting(redis.client, 'capped', 'full', SCOPE_MAX_WAITERS);

    // One more, through either sidecar: the scope's line is full, across both.
    for (const client of [a, b]) {
      const refused = await acquire(client, waitReq('capped', 'full', 60_000)).done;
      expect(refused.err?.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(refused.err?.details).toContain('wait.max_waiters');
    }
    expect(await metric(A, 'sluice_wait_refused_total', 'resource="capped"', 'cap="scope"')).toBe(1);
    // A caller that does not wait is answered as ever: denied by the limit, no error.
    const plain = await a.acquire({ resource: 'capped', descriptors: { tenant: 'full' } });
    expect(plain.granted).toBe(false);
    expect(plain.decided_by).toBe('STORE');
    // Another scope of the same resource still waits: its max_wait passes, denied with a reason that says so.
    expect((await a.acquire({ resource: 'capped', descriptors: { tenant: 'other' } })).granted).toBe(true);
    const otherScope = await acquire(b, waitReq('capped', 'other', 300)).done;
    expect(otherScope.err).toBeNull();
    expect(otherScope.res!.granted).toBe(false);
    expect(otherScope.res!.reason).toContain('max_wait');

    // Sidecar C takes C_MAX_WAITERS waiters, then refuses the next whatever its scope.
    const slots = await Promise.all(Array.from({ length: 5 }, () => c.acquire({ resource: 'storm', descriptors: { tenant: 'cap-sidecar' } })));
    expect(slots.every((s) => s.granted)).toBe(true);
    const onC: Pending[] = [];
    for (let i = 0; i < C_MAX_WAITERS; i++) onC.push(acquire(c, waitReq('storm', 'cap-sidecar', 60_000)));
    await untilWaiting(redis.client, 'storm', 'cap-sidecar', C_MAX_WAITERS);
    const pastSidecar = await acquire(c, waitReq('metered', 'elsewhere', 60_000)).done;
    expect(pastSidecar.err?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(pastSidecar.err?.details).toContain('server.max_waiters');
    expect(await metric(C, 'sluice_wait_refused_total', 'resource="metered"', 'cap="sidecar"')).toBe(1);
    // C still answers requests that do not wait; A still takes waiters in the same scope.
    expect((await c.acquire({ resource: 'metered', descriptors: { tenant: 'elsewhere' } })).granted).toBe(true);
    const onA = await acquire(a, waitReq('storm', 'cap-sidecar', 300)).done;
    expect(onA.err).toBeNull();
    expect(onA.res!.reason).toContain('max_wait');

    for (const w of [...waiting, ...onC]) w.cancel();
    const ended = await Promise.all([...waiting, ...onC].map((w) => w.done));
    expect(ended.every((o) => o.err?.code === status.CANCELLED)).toBe(true);
    await untilNoLine(redis.client, 'capped', 'full', 10_000);
    await untilNoLine(redis.client, 'storm', 'cap-sidecar', 10_000);
    for (const s of [holder, ...slots]) expect(await (s === holder ? a : c).release(s.permit_id)).toBe(true);
  }, 30_000);

  it('while others wait for more than is left: a request that does not wait is denied saying how many wait; one that can never fit, saying so', async () => {
    const scope = { resource: 'storm', descriptors: { tenant: 'ahead' } };
    const held = await Promise.all(Array.from({ length: 4 }, () => a.acquire(scope)));
    expect(held.every((h) => h.granted)).toBe(true);
    // One slot is free: the waiter needs two.
    const waiter = acquire(b, waitReq('storm', 'ahead', 30_000, { cost: 2 }));
    await untilWaiting(redis.client, 'storm', 'ahead', 1);
    const plain = await a.acquire(scope);
    console.log(`not waiting, one slot free, one waiting for two: granted ${plain.granted}, retry_after ${ms(plain.retry_after)} ms, reason "${plain.reason}"`);
    expect(plain.granted).toBe(false);
    expect(plain.reason).toMatch(/\b1 requests? waits? in line/);
    // A waiting request that can never fit is denied at once, as without max_wait, whoever waits.
    const never = await acquire(a, waitReq('storm', 'ahead', 30_000, { cost: 6 })).done;
    console.log(`waiting, cost 6 of a limit of 5, one waiting: granted ${never.res?.granted}, reason "${never.res?.reason}"`);
    expect(never.res!.granted).toBe(false);
    expect(never.res!.reason).toContain('can never be granted');
    waiter.cancel();
    await waiter.done;
    await untilNoLine(redis.client, 'storm', 'ahead', 5_000);
    for (const h of held) expect(await a.release(h.permit_id)).toBe(true);
  }, 30_000);

  it('a cancel storm: 1000 waiting calls cancelled at once leave no ticket, the budget whole, the sidecar bounded and answering', async () => {
    const A = sidecars[0]!;
    const WAITERS = 1000;
    const LIMIT = 5;
    const held = await Promise.all(Array.from({ length: LIMIT }, () => a.acquire({ resource: 'storm', descriptors: { tenant: 'storm' } })));
    expect(held.every((h) => h.granted)).toBe(true);
    const rssBefore = rssMb(A);
    // 20 channels of 50 calls each.
    const channels = Array.from({ length: 20 }, () => channel(A));
    clients.push(...channels);
    const calls = Array.from({ length: WAITERS }, (_, i) => acquire(channels[i % channels.length]!, waitReq('storm', 'storm', 60_000)));
    await untilWaiting(redis.client, 'storm', 'storm', WAITERS);
    const rssWaiting = rssMb(A);
    const cancelledBefore = await metric(A, 'sluice_wait_seconds_count', 'resource="storm"', 'end="cancelled"');
    const started = performance.now();
    for (const call of calls) call.cancel();
    const outcomes = await Promise.all(calls.map((call) => call.done));
    expect(outcomes.filter((o) => o.err?.code === status.CANCELLED).length).toBe(WAITERS);
    await untilNoLine(redis.client, 'storm', 'storm', 15_000);
    const emptiedMs = performance.now() - started;
    await waitFor('the sidecar to count every cancelled wait', 10_000, async () =>
      (await metric(A, 'sluice_wait_seconds_count', 'resource="storm"', 'end="cancelled"')) - cancelledBefore === WAITERS ? true : undefined,
    );
    expect(await metric(A, 'sluice_waiters', 'resource="storm"')).toBe(0);
    // Nothing of the line keeps a slot: once the holders release, exactly the limit is granted.
    for (const h of held) expect(await a.release(h.permit_id)).toBe(true);
    const next = await Promise.all(Array.from({ length: LIMIT + 1 }, () => a.acquire({ resource: 'storm', descriptors: { tenant: 'storm' } })));
    expect(next.filter((n) => n.granted).length).toBe(LIMIT);
    for (const n of next) if (n.granted) await a.release(n.permit_id);
    const rssAfter = rssMb(A);
    console.log(
      `cancel storm: ${WAITERS} waiters on one sidecar, line empty ${Math.round(emptiedMs)} ms after the cancels; ` +
        `RSS ${rssBefore.toFixed(0)} MB before, ${rssWaiting.toFixed(0)} MB waiting, ${rssAfter.toFixed(0)} MB after`,
    );
    // Under the deployed heap cap (128 MB old space) plus code and buffers.
    expect(rssWaiting).toBeLessThan(300);
    expect(rssAfter).toBeLessThan(300);
    expect(rssAfter - rssBefore).toBeLessThan(100);
    for (const ch of channels) ch.close();
  }, 60_000);

  it('leases keep the order: once the line forms, no sidecar grants from a lease while it waits, beyond the time the news takes', async () => {
    // Hear the news as the sidecars do.
    const listener = redis.client.duplicate();
    let formedAt = 0;
    await listener.subscribe('sluice:line:formed');
    listener.on('message', (_channel: string, scope: string) => {
      if (scope === 'hot|hot' && formedAt === 0) formedAt = performance.now();
    });
    const leased: { at: number; via: number }[] = [];
    let storeGrants = 0;
    let sent = 0;
    let answered = 0;
    const startTime = await redisNow(redis.client);
    // About 100 a second through each of A and B: hot on both (twice the limit together).
    const load = setInterval(() => {
      for (const [via, client] of [a, b].entries()) {
        sent++;
        client.raw.Acquire({ resource: 'hot', descriptors: { tenant: 'hot' } }, (err: ServiceError | null, res: AcquireResponse) => {
          answered++;
          if (err || !res.granted) return;
          if (res.decided_by === 'LEASE') leased.push({ at: performance.now(), via });
          else storeGrants++;
        });
      }
    }, 10);
    try {
      // Both serve it from leases steadily: a good part of the last second's grants.
      await waitFor('both sidecars to serve the key from leases', 20_000, async () => {
        const since = performance.now() - 1_000;
        return [0, 1].every((via) => leased.filter((l) => l.via === via && l.at > since).length >= 20) ? true : undefined;
      });
      // 12 waiters of 25 units each on C, which serves no lease: 3 s of the limit's whole rate.
      const joinedAt = performance.now();
      const waiters = Array.from({ length: 12 }, () => acquire(c, waitReq('hot', 'hot', 20_000, { cost: 25 })));
      const outcomes = await Promise.all(waiters.map((w) => w.done));
      const lastServed = Math.max(...outcomes.map((o) => o.at));
      expect(formedAt).toBeGreaterThan(0);
      const granted = outcomes.filter((o) => o.res?.granted);
      expect(granted.length).toBeGreaterThanOrEqual(11); // the first may have found room at once
      expect(outcomes.every((o) => o.res?.decided_by === 'STORE')).toBe(true);
      // Leased grants answered after the news reached this process, while the waiters waited.
      const leasedJustBefore = leased.filter((l) => l.at > formedAt - 1_000 && l.at <= formedAt).length;
      const late = leased.filter((l) => l.at > formedAt && l.at < lastServed);
      const windowMs = late.length > 0 ? Math.max(...late.map((l) => l.at)) - formedAt : 0;
      console.log(
        `leases and a line: formed heard ${Math.round(formedAt - joinedAt)} ms after the first join was sent; waiters served within ` +
          `${Math.round(lastServed - joinedAt)} ms; ${late.length} leased grants arrived after it, the last ${Math.round(windowMs)} ms after ` +
          `(${leasedJustBefore} leased grants in the second before it)`,
      );
      // Leases were serving the key up to the line, and the waiters waited long enough for them to have served many.
      expect(leasedJustBefore).toBeGreaterThanOrEqual(20);
      expect(lastServed - formedAt).toBeGreaterThan(1_500);
      expect(windowMs).toBeLessThan(1_000);
    } finally {
      clearInterval(load);
      await listener.quit();
    }
    await waitFor('every hot request to be answered', 15_000, async () => (answered === sent ? true : undefined));
    const elapsedS = ((await redisNow(redis.client)) - startTime) / 1000;
    // Never past the bucket: burst + rate x elapsed by Redis's clock.
    expect(leased.length + storeGrants + 12 * 25).toBeLessThanOrEqual(100 + 100 * elapsedS + 12 * 25);
  }, 60_000);

  it('metrics: sluice_waiters while waiting, sluice_wait_seconds by how each wait ended, sluice_wait_refused_total', async () => {
    const A = sidecars[0]!;
    const holder = await a.acquire({ resource: 'metered', descriptors: { tenant: 'm' } });
    expect(holder.granted).toBe(true);
    const counts = () =>
      Promise.all(['granted', 'timeout', 'cancelled'].map((end) => metric(A, 'sluice_wait_seconds_count', 'resource="metered"', `end="${end}"`)));
    const before = await counts();
    const first = acquire(a, waitReq('metered', 'm', 30_000, { priority: 2 }));
    await untilWaiting(redis.client, 'metered', 'm', 1);
    const timesOut = acquire(a, waitReq('metered', 'm', 3_000, { priority: 2 }));
    const cancelled = acquire(a, waitReq('metered', 'm', 30_000, { priority: 2 }));
    await untilWaiting(redis.client, 'metered', 'm', 3);
    expect(await metric(A, 'sluice_waiters', 'resource="metered"', 'priority="2"')).toBe(3);
    // The scope's line holds 3 at most: the fourth is refused, and counted.
    const refused = await acquire(a, waitReq('metered', 'm', 30_000, { priority: 2 })).done;
    expect(refused.err?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(await metric(A, 'sluice_wait_refused_total', 'resource="metered"', 'cap="scope"')).toBe(1);
    expect(await metric(A, 'sluice_waiters', 'resource="metered"', 'priority="2"')).toBe(3);

    cancelled.cancel();
    expect((await cancelled.done).err?.code).toBe(status.CANCELLED);
    const timedOut = await timesOut.done;
    expect(timedOut.res!.granted).toBe(false);
    expect(await a.release(holder.permit_id)).toBe(true);
    const served = await first.done;
    expect(served.res!.granted).toBe(true);
    expect(ms(served.res!.waited)).toBeGreaterThan(0);
    await waitFor('the three ends to be counted', 5_000, async () => {
      const after = await counts();
      return after.every((n, i) => n - before[i]! === 1) ? true : undefined;
    });
    expect(await metric(A, 'sluice_waiters', 'resource="metered"')).toBe(0);
    expect(await a.release(served.res!.permit_id)).toBe(true);
  }, 30_000);

  it('a unary deadline shorter than max_wait: answered before it, denied, waited, and the ticket leaves the line', async () => {
    const holder = await a.acquire({ resource: 'capped', descriptors: { tenant: 'deadline' } });
    expect(holder.granted).toBe(true);
    const DEADLINE_MS = 1_000;
    const calls = Array.from({ length: 10 }, () => acquire(a, waitReq('capped', 'deadline', 30_000), DEADLINE_MS));
    const outcomes = await Promise.all(calls.map((call) => call.done));
    const codes = outcomes.map((o) => (o.err ? status[o.err.code] : 'OK'));
    console.log(`deadline ${DEADLINE_MS} ms under max_wait 30 s: ${JSON.stringify(codes)}; waited ${outcomes.map((o) => Math.round(ms(o.res?.waited ?? null))).join(', ')} ms`);
    for (const o of outcomes) {
      expect(o.err).toBeNull();
      expect(o.res!.granted).toBe(false);
      expect(o.res!.reason).toContain('max_wait');
      expect(ms(o.res!.waited)).toBeGreaterThan(DEADLINE_MS / 2);
      expect(ms(o.res!.waited)).toBeLessThan(DEADLINE_MS);
    }
    await untilNoLine(redis.client, 'capped', 'deadline', 5_000);
    expect(await a.release(holder.permit_id)).toBe(true);
  }, 30_000);

  it('a waiter\'s call that Redis runs late, after every waiter of its scope was answered by on_store_failure, is given back once: the window still counts each grant received', async () => {
    const scope = { resource: 'windowed', descriptors: { tenant: 'late' } };
    const holder = await a.acquire({ ...scope, cost: 5 });
    expect(holder.granted).toBe(true);
    const received = await Promise.all(Array.from({ length: 5 }, () => a.acquire(scope)));
    expect(received.every((r) => r.granted)).toBe(true);
    // The window is full: six wait.
    const waiters = Array.from({ length: 6 }, () => acquire(a, waitReq('windowed', 'late', 30_000)));
    await untilWaiting(redis.client, 'windowed', 'late', 6);
    redis.pause();
    let outcomes: Outcome[];
    try {
      // Into the freeze, ahead of the waiters' next call: when Redis thaws it frees the holder's 5
      // first, so that the call the sidecar gave up on (its stall check's) serves five of them.
      void a.release(holder.permit_id, 0).catch(() => false);
      outcomes = await Promise.all(waiters.map((w) => w.done));
    } finally {
      redis.resume();
    }
    expect(outcomes.map((o) => o.res?.decided_by)).toEqual(Array(6).fill('FAIL_CLOSED'));
    await untilNoLine(redis.client, 'windowed', 'late', 5_000);
    // No event says the give-backs are done: the count is read once it has held still for half a second.
    const counted = () => redis.client.hget('sluice:{windowed|late}:hourly|fw', 'c');
    let count = await counted();
    for (let still = performance.now(); performance.now() - still < 500; ) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const now = await counted();
      if (now !== count) [count, still] = [now, performance.now()];
    }
    // What the line was served at the thaw went back (nobody received it): the 5 received stay counted.
    expect(count).toBe('5');
    const more = await Promise.all(Array.from({ length: 6 }, () => a.acquire(scope)));
    expect(more.filter((m) => m.granted).length).toBe(5);
  }, 30_000);

  it('Redis flushed under waiting requests: each is denied, its place lost, within a couple of seconds, or served; the limit holds after', async () => {
    // 10 waiters on a bucket of 2 a second: most still wait when the line is lost.
    const waiters = Array.from({ length: 10 }, () => acquire(a, waitReq('closed', 'flush', 30_000)));
    await untilWaiting(redis.client, 'closed', 'flush', 5);
    await redis.client.flushall();
    const flushedAt = performance.now();
    const sinceFlush = await redisNow(redis.client);
    const outcomes = await Promise.all(waiters.map((w) => w.done));
    const lost = outcomes.filter((o) => o.res && !o.res.granted && o.res.reason.includes('place in the line was lost'));
    const late = outcomes.map((o) => Math.round(o.at - flushedAt));
    console.log(`flushed: ${lost.length} of ${outcomes.length} waiters lost their place; answered at ${late.join(', ')} ms after the flush`);
    expect(outcomes.every((o) => o.err === null)).toBe(true);
    expect(lost.length).toBeGreaterThan(0);
    for (const o of outcomes) {
      expect(o.res!.granted || o.res!.reason.includes('place in the line was lost')).toBe(true);
      expect(o.at - flushedAt).toBeLessThan(3 * STALL_CHECK_MS);
    }
    // The limit holds on the new, empty store: granted since the flush, at most burst + rate x elapsed.
    const granted = outcomes.filter((o) => o.res!.granted && o.at > flushedAt).length;
    const more = await Promise.all(Array.from({ length: 10 }, () => a.acquire({ resource: 'closed', descriptors: { tenant: 'flush' } })));
    const elapsedS = ((await redisNow(redis.client)) - sinceFlush) / 1000;
    expect(granted + more.filter((m) => m.granted).length).toBeLessThanOrEqual(2 + 2 * elapsedS + 1);
  }, 30_000);

  it('Redis frozen (SIGSTOP) under waiting requests: each answered by its on_store_failure within the stall check + store.timeout; after, waiters are served and the limit held', async () => {
    const A = sidecars[0]!;
    const from = await redisNow(redis.client);
    let answered: Answered;
    try {
      answered = await waitersThrough(a, redis.client, 'pause', () => redis.pause());
    } finally {
      redis.resume();
    }
    expectAnsweredByPolicy(answered, 'frozen', FAULT_NOTICED_MS);

    // Redis answers again: new waiters are served by it.
    await waitFor('the store to be up', 10_000, async () => ((await metric(A, 'sluice_store_up')) === 1 ? true : undefined));
    const upAt = performance.now();
    // The answered waiters' tickets (the store could not be told they went) leave once it hears again,
    // rather than hold the line until their max_wait.
    for (const resource of SLOW) await untilNoLine(redis.client, resource, 'pause', 3_000);
    const emptyAt = performance.now();
    // So a request that does not wait is the store's to grant again (the bucket refilled meanwhile).
    const plain = await a.acquire({ resource: 'open', descriptors: { tenant: 'pause' } });
    expect(plain.decided_by).toBe('STORE');
    expect(plain.granted).toBe(true);
    const askedAt = performance.now();
    const again = await Promise.all(Array.from({ length: 3 }, () => acquire(a, waitReq('closed', 'pause', 15_000)).done));
    const servedMs = Math.max(...again.map((o) => o.at - askedAt));
    console.log(`after the freeze: the lines empty ${Math.round(emptyAt - upAt)} ms after the store is up; 3 new waiters served within ${Math.round(servedMs)} ms`);
    for (const o of again) {
      expect(o.err).toBeNull();
      expect(o.res!.decided_by).toBe('STORE');
      expect(o.res!.granted).toBe(true);
    }
    // At 2 a second with the bucket full again: the third within half a second, plus margin.
    expect(servedMs).toBeLessThan(2_000);
    // The store's grants, frozen or not, never passed burst + rate x elapsed by its clock.
    const elapsedS = ((await redisNow(redis.client)) - from) / 1000;
    for (const resource of SLOW) {
      const theirs = [...answered.outcomes.filter((_, i) => answered.resources[i] === resource), ...(resource === 'closed' ? again : [])];
      const storeGrants = theirs.filter((o) => o.res!.granted && o.res!.decided_by === 'STORE').length + (resource === 'open' ? 1 : 0);
      expect(storeGrants).toBeLessThanOrEqual(2 + 2 * elapsedS);
    }
  }, 60_000);

  it('Redis killed under waiting requests: each answered by its on_store_failure promptly, none hangs until its max_wait', async () => {
    const answered = await waitersThrough(a, redis.client, 'kill', () => redis.stop());
    expectAnsweredByPolicy(answered, 'killed', FAULT_NOTICED_MS);
  }, 30_000);
});
