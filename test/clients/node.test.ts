// The Node client (clients/node, as built: its ESM and its type declarations) against a real
// sidecar on a real redis-server.
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { Client, Denied, Permit, SluiceError, Unavailable, type ClientOptions, type DecidedBy } from '../../clients/node/dist/index.js';
import { lineKeysHeld, untilNoLine, untilWaiting } from '../support/line.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/redis-server.js';
import { DEPLOYED_NODE_FLAGS, metric, useSidecar } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

// Leases off where a test reads remaining: every decision is the store's, exact.
const POLICY = `
# Generous: these tests are about the client, not store failures on a busy machine.
store:
  timeout: 10s
resources:
  - name: calls
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: false }
    limits:
      - { name: rph, algorithm: token_bucket, rate: 2/1h, burst: 2 }
  - name: paced
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: false }
    limits:
      - { name: slow, algorithm: token_bucket, rate: 1/2s, burst: 1 }
  - name: tokens
    keys: [tenant]
    on_store_failure: closed
    settle_within: 1m
    lease: { enabled: false }
    limits:
      - { name: tpd, algorithm: token_bucket, rate: 1000/1d, burst: 1000 }
  - name: slot
    keys: [tenant]
    on_store_failure: closed
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 60s }
      - { name: daily, algorithm: token_bucket, rate: 3/1d, burst: 3 }
`;

const world = useRedis();
const running = useSidecar(() => POLICY, () => ({ SLUICE_REDIS_URL: world.redis.url }), DEPLOYED_NODE_FLAGS);

const opened: Client[] = [];
afterEach(() => {
  for (const client of opened.splice(0)) client.close();
});

/** A client of the test's sidecar (or of `target`), closed when the test ends. */
function clientOf(options: ClientOptions = {}, target = running.sidecar.address): Client {
  const client = new Client(target, options);
  opened.push(client);
  return client;
}

/** Whether acquire rejects with Denied (a held slot): the way to see that a slot is taken. */
async function deniedNow(client: Client, tenant: string): Promise<Denied> {
  const err = await client.acquire({ resource: 'slot', descriptors: { tenant } }).then(
    (permit) => permit.release().then(() => expect.fail(`slot of ${tenant} was free`)),
    (err: unknown) => err,
  );
  expect(err).toBeInstanceOf(Denied);
  return err as Denied;
}

describe('acquire', () => {
  it('grants a permit with typed fields, decided by the store', async () => {
    const client = clientOf();
    const permit = await client.acquire({ resource: 'calls', descriptors: { tenant: 'grant' } });
    expect(permit).toBeInstanceOf(Permit);
    expect(permit).toMatchObject({ permitId: undefined, remaining: 1, limit: 2, limitName: 'rph', decidedBy: 'STORE', waitedMs: 0 });
    expect(permit.resetAfterMs).toBeGreaterThan(0);
    // Nothing to give back: resolves false.
    expect(await permit.release()).toBe(false);
  });

  it('rejects a denial with Denied: retryAfterMs, limitName, reason and decidedBy', async () => {
    const client = clientOf();
    const descriptors = { tenant: 'deny' };
    await client.acquire({ resource: 'calls', descriptors, cost: 2 });
    const denied = await client.acquire({ resource: 'calls', descriptors }).catch((err: unknown) => err);
    expect(denied).toBeInstanceOf(Denied);
    expect(denied).toBeInstanceOf(Error);
    expect(denied).toMatchObject({ name: 'Denied', limitName: 'rph', decidedBy: 'STORE', remaining: 0, limit: 2 });
    // One unit comes back every 30 min.
    expect((denied as Denied).retryAfterMs).toBeGreaterThan(25 * 60_000);
    expect((denied as Denied).retryAfterMs).toBeLessThanOrEqual(30 * 60_000);
    expect((denied as Denied).reason).not.toBe('');
    expect((denied as Denied).message).toContain('rph');
  });

  it('rejects a cost that can never fit with Denied and no retryAfterMs', async () => {
    const client = clientOf();
    const denied = await client.acquire({ resource: 'calls', descriptors: { tenant: 'never' }, cost: 3 }).catch((err: unknown) => err);
    expect(denied).toBeInstanceOf(Denied);
    expect(denied).toMatchObject({ limitName: 'rph', retryAfterMs: undefined });
    expect((denied as Denied).reason).not.toBe('');
  });

  it('waits in the sidecar with maxWait, past the client timeout, and says how long', async () => {
    // The call's deadline is the timeout plus maxWait: a wait of about 2 s ends in a grant.
    const client = clientOf({ timeout: 500 });
    const descriptors = { tenant: 'wait' };
    expect((await client.acquire({ resource: 'paced', descriptors })).waitedMs).toBe(0);
    const waited = await client.acquire({ resource: 'paced', descriptors, maxWait: 10_000 });
    expect(waited).toMatchObject({ limitName: 'slow', decidedBy: 'STORE' });
    expect(waited.waitedMs).toBeGreaterThan(500);
    expect(waited.waitedMs).toBeLessThan(10_000);
  });

  it('rejects bad input with the sidecar code and message, whatever onUnavailable says', async () => {
    const client = clientOf({ onUnavailable: 'open' });
    const unknown = await client.acquire({ resource: 'nope', descriptors: { tenant: 'x' } }).catch((err: unknown) => err);
    expect(unknown).toBeInstanceOf(SluiceError);
    expect(unknown).not.toBeInstanceOf(Unavailable);
    expect(unknown).toMatchObject({ codeName: 'NOT_FOUND', code: 5 });
    expect((unknown as SluiceError).details).toContain('nope');
    const missing = await client.acquire({ resource: 'calls', descriptors: {} }).catch((err: unknown) => err);
    expect(missing).toMatchObject({ codeName: 'INVALID_ARGUMENT', code: 3 });
    expect((missing as SluiceError).details).toContain('tenant');
    expect((missing as SluiceError).message).toBe(`INVALID_ARGUMENT: ${(missing as SluiceError).details}`);
  });
});

describe('release', () => {
  it('settles the real cost once: release(actual) refunds the difference', async () => {
    const client = clientOf();
    const descriptors = { tenant: 'settle' };
    const estimate = await client.acquire({ resource: 'tokens', descriptors, cost: 600 });
    expect(estimate.permitId).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(estimate.remaining).toBe(400);
    expect(await estimate.release(100)).toBe(true);
    expect(estimate.released).toBe(true);
    // Only the first call counts.
    expect(await estimate.release(1000)).toBe(false);
    // 500 came back: 900 fit, where 400 were left before the settlement.
    const rest = await client.acquire({ resource: 'tokens', descriptors, cost: 900 });
    expect(rest.remaining).toBe(0);
  });

  it('happens on leaving an `await using` block', async () => {
    const client = clientOf();
    let held: Permit | undefined;
    {
      await using permit = await client.acquire({ resource: 'slot', descriptors: { tenant: 'using' } });
      held = permit;
      expect(permit.permitId).toBeDefined();
      expect((await deniedNow(client, 'using')).limitName).toBe('inflight');
    }
    expect(held.released).toBe(true);
    const next = await client.acquire({ resource: 'slot', descriptors: { tenant: 'using' } });
    expect(next.limitName).toBe('inflight');
    await next.release();
  });
});

describe('withPermit', () => {
  it("runs fn with the permit, releases it after, and resolves to fn's result", async () => {
    const client = clientOf();
    const result = await client.withPermit({ resource: 'slot', descriptors: { tenant: 'with' } }, async (permit) => {
      expect(permit.permitId).toBeDefined();
      await deniedNow(client, 'with');
      return 42;
    });
    expect(result).toBe(42);
    await (await client.acquire({ resource: 'slot', descriptors: { tenant: 'with' } })).release();
  });

  it('releases when fn throws, and rejects with what fn threw', async () => {
    const client = clientOf();
    const failure = new Error('the partner said no');
    await expect(client.withPermit({ resource: 'slot', descriptors: { tenant: 'throws' } }, () => Promise.reject(failure))).rejects.toBe(failure);
    await (await client.acquire({ resource: 'slot', descriptors: { tenant: 'throws' } })).release();
  });

  it('sends one Release when fn settled the permit itself', async () => {
    const releases: string[] = [];
    const countReleases: Interceptor = (options, next) => {
      if (options.method_definition.path === '/sluice.v1.RateLimiter/Release') releases.push(options.method_definition.path);
      return new InterceptingCall(next(options));
    };
    const client = clientOf({ grpc: { interceptors: [countReleases] } });
    const settled = await client.withPermit({ resource: 'tokens', descriptors: { tenant: 'with-settle' }, cost: 500 }, async (permit) => {
      return permit.release(200);
    });
    expect(settled).toBe(true);
    expect(releases).toHaveLength(1);
    // The settlement stands: 800 left.
    expect((await client.acquire({ resource: 'tokens', descriptors: { tenant: 'with-settle' } })).remaining).toBe(799);
  });
});

describe('an unreachable sidecar (a port nothing listens on)', () => {
  it("onUnavailable 'raise' (the default) rejects with Unavailable", async () => {
    const target = `127.0.0.1:${await freePort()}`;
    const client = clientOf({}, target);
    expect(client.onUnavailable).toBe('raise');
    const err = await client.acquire({ resource: 'calls', descriptors: { tenant: 'x' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Unavailable);
    expect(err).toBeInstanceOf(SluiceError);
    expect(err).toMatchObject({ codeName: 'UNAVAILABLE', target });
    expect((err as Unavailable).message).toContain(target);
  });

  it("onUnavailable 'open' resolves a permit decided by CLIENT_OPEN, with nothing to release", async () => {
    const client = clientOf({ onUnavailable: 'open' }, `127.0.0.1:${await freePort()}`);
    const permit = await client.acquire({ resource: 'calls', descriptors: { tenant: 'x' } });
    expect(permit).toMatchObject({ decidedBy: 'CLIENT_OPEN', permitId: undefined });
    expect(await permit.release(5)).toBe(false);
    expect(await client.withPermit({ resource: 'calls', descriptors: { tenant: 'x' } }, (p) => p.decidedBy)).toBe('CLIENT_OPEN');
  });

  it("onUnavailable 'closed' rejects with Denied decided by CLIENT_CLOSED, saying why", async () => {
    const target = `127.0.0.1:${await freePort()}`;
    const client = clientOf({ onUnavailable: 'closed' }, target);
    const denied = await client.acquire({ resource: 'calls', descriptors: { tenant: 'x' } }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Denied);
    expect(denied).toMatchObject({ decidedBy: 'CLIENT_CLOSED', retryAfterMs: undefined });
    expect((denied as Denied).reason).toContain(`sluice sidecar at ${target} unavailable`);
    expect((denied as Denied).cause).toBeInstanceOf(Unavailable);
  });

  it('a sidecar that never answers is Unavailable (DEADLINE_EXCEEDED) after the timeout plus maxWait', async () => {
    // Accepts connections and says nothing.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const client = clientOf({ timeout: 300 }, `127.0.0.1:${port}`);
      const started = performance.now();
      const err = await client.acquire({ resource: 'calls', descriptors: { tenant: 'x' }, maxWait: 700 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Unavailable);
      expect(err).toMatchObject({ codeName: 'DEADLINE_EXCEEDED' });
      expect(performance.now() - started).toBeGreaterThanOrEqual(950);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });
});

describe('an AbortSignal', () => {
  it('cancels a waiting acquire, leaving no ticket and nothing charged', async () => {
    const client = clientOf();
    const descriptors = { tenant: 'abort' };
    const a = await client.acquire({ resource: 'slot', descriptors });
    const controller = new AbortController();
    const b = client.acquire({ resource: 'slot', descriptors, maxWait: 10_000, signal: controller.signal }).catch((err: unknown) => err);
    await untilWaiting(world.redis.client, 'slot', 'abort', 1);
    controller.abort();
    expect(await b).toBe(controller.signal.reason);
    expect((await b) as Error).toMatchObject({ name: 'AbortError' });
    // The sidecar heard the cancellation, and B's ticket left the line.
    await waitFor('the cancellation counted', 10_000, async () => ((await metric(running.sidecar, 'sluice_wait_seconds_count', 'end="cancelled"')) >= 1 ? true : undefined));
    await untilNoLine(world.redis.client, 'slot', 'abort', 10_000);
    expect(await a.release()).toBe(true);
    // C, not waiting, gets the slot B did not take.
    const c = await client.acquire({ resource: 'slot', descriptors });
    expect(c.limitName).toBe('inflight');
    expect(await c.release()).toBe(true);
    // B was charged nothing on the daily limit either: A and C took 2 of 3, D takes the last.
    expect(await (await client.acquire({ resource: 'slot', descriptors })).release()).toBe(true);
    expect((await deniedNow(client, 'abort')).limitName).toBe('daily');
    expect(await lineKeysHeld(world.redis.client, 'slot', 'abort')).toEqual([]);
  });

  it('already aborted rejects at once with its reason', async () => {
    const client = clientOf();
    const reason = new Error('gave up');
    await expect(client.acquire({ resource: 'calls', descriptors: { tenant: 'pre-abort' }, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    // Nothing was asked: both units are still there.
    expect((await client.acquire({ resource: 'calls', descriptors: { tenant: 'pre-abort' } })).remaining).toBe(1);
  });
});

describe('the types', () => {
  it('name who decided as a union of strings, not numbers (checked by tsc -p tsconfig.test.json)', () => {
    expectTypeOf<Permit['decidedBy']>().toEqualTypeOf<'LEASE' | 'STORE' | 'FAIL_OPEN' | 'FAIL_CLOSED' | 'LOCAL_FALLBACK' | 'CLIENT_OPEN' | 'CLIENT_CLOSED'>();
    expectTypeOf<Denied['decidedBy']>().toEqualTypeOf<DecidedBy>();
    expectTypeOf<Denied['retryAfterMs']>().toEqualTypeOf<number | undefined>();
    // @ts-expect-error a number is not one of the names
    const two: DecidedBy = 2;
    expect(two).toBe(2);
  });
});
