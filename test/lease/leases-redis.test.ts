// Leases and pipelining through real sidecar processes on a real redis-server: leases never
// over-admit across sidecars, leased budget is back in Redis after SIGTERM, and decisions that
// need Redis at the same moment share its reads.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type AcquireResponse, type SluiceClient } from '../support/client.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { metric, startSidecar, useSidecars, type SidecarProcess } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const POLICY = `
# Generous: these tests are about the store's answers, not its failures, on a busy machine.
store:
  timeout: 10s
resources:
  - name: bucket
    keys: [tenant]
    lease: { enabled: true, max_fraction: 0.2, ttl: 1s }
    limits:
      - { name: per-second, algorithm: token_bucket, rate: 400/1s, burst: 100 }
  - name: daily
    keys: [tenant]
    lease: { enabled: true, max_fraction: 0.1, ttl: 5s }
    limits:
      - { name: day, algorithm: fixed_window, rate: 3000/1d }
  - name: roomy
    keys: [tenant]
    limits:
      - { name: day, algorithm: fixed_window, rate: 1000000/1d }
`;

async function redisNow(redis: RedisProcess): Promise<number> {
  const [s, us] = await redis.client.time();
  return Number(s) * 1000 + Number(us) / 1000;
}

/** Socket reads Redis has processed, and script calls it has run (commands inside scripts aside). */
async function stats(redis: RedisProcess): Promise<{ reads: number; scripts: number }> {
  const info = await redis.client.info('all');
  const reads = Number(/^total_reads_processed:(\d+)/m.exec(info)![1]);
  const calls = (cmd: string) => Number(new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return { reads, scripts: calls('evalsha') + calls('eval') };
}

async function gauge(sidecar: SidecarProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1]);
}

describe('leases across four sidecars on one Redis', () => {
  let redis: RedisProcess;
  let sidecars: SidecarProcess[];
  let clients: SluiceClient[];

  beforeAll(async () => {
    redis = await startRedis();
    sidecars = await Promise.all([0, 1, 2, 3].map(() => startSidecar(POLICY, { SLUICE_REDIS_URL: redis.url })));
    clients = sidecars.map((s) => connect(s.address));
  });
  afterAll(async () => {
    for (const c of clients ?? []) c.close();
    await Promise.all((sidecars ?? []).map((s) => s.stop()));
    await redis?.stop();
  });

  it('never grant more than burst + rate x elapsed, and serve most requests locally', async () => {
    let granted = 0;
    let leased = 0;
    const start = await redisNow(redis);
    const until = Date.now() + 3000;
    // 16 callers per sidecar asking as fast as they are answered: far beyond 400/s.
    await Promise.all(
      clients.flatMap((client) =>
        Array.from({ length: 16 }, async () => {
          while (Date.now() < until) {
            const res = await client.acquire({ resource: 'bucket', descriptors: { tenant: 'hot' } });
            if (res.granted) granted++;
            if (res.decided_by === 'LEASE') leased++;
          }
        }),
      ),
    );
    const elapsed = (await redisNow(redis)) - start;
    const allowance = 100 + 400 * (elapsed / 1000);
    expect(granted).toBeLessThanOrEqual(Math.floor(allowance));
    expect(granted).toBeGreaterThan(0.5 * allowance);
    expect(leased).toBeGreaterThan(0);
  });

  it('never grant more than a window holds, and give the rest back on SIGTERM', async () => {
    let granted = 0;
    await Promise.all(
      clients.flatMap((client) =>
        Array.from({ length: 16 }, async () => {
          for (let i = 0; i < 70; i++) {
            if ((await client.acquire({ resource: 'daily', descriptors: { tenant: 'd' } })).granted) granted++;
          }
        }),
      ),
    );
    // 4 x 16 x 70 = 4480 asks for 3000.
    expect(granted).toBeLessThanOrEqual(3000);
    expect(granted).toBeGreaterThan(2500);
    expect(await Promise.all(sidecars.map((s) => s.stop()))).toEqual([0, 0, 0, 0]);
    // Whatever the sidecars still held is back: Redis counts exactly what was granted.
    expect(Number(await redis.client.hget('sluice:{daily|d}:day|fw', 'c'))).toBe(granted);
  });
});

describe('a single sidecar on Redis', () => {
  let redis: RedisProcess;

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('holds a lease for a hot key and gives it back on SIGTERM', async () => {
    const sidecar = await startSidecar(POLICY, { SLUICE_REDIS_URL: redis.url });
    const client = connect(sidecar.address);
    let granted = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = 0; i < 40; i++) {
          if ((await client.acquire({ resource: 'roomy', descriptors: { tenant: 'r' } })).granted) granted++;
        }
      }),
    );
    expect(granted).toBe(1280);
    const held = await gauge(sidecar, 'sluice_lease_units_held');
    expect(held).toBeGreaterThan(0);
    expect(await gauge(sidecar, 'sluice_lease_decisions_total')).toBeGreaterThan(granted / 2);
    const inRedis = Number(await redis.client.hget('sluice:{roomy|r}:day|fw', 'c'));
    expect(inRedis).toBe(granted + held);
    client.close();
    expect(await sidecar.stop()).toBe(0);
    expect(Number(await redis.client.hget('sluice:{roomy|r}:day|fw', 'c'))).toBe(granted);
  });

  it('pipelines: decisions that need Redis at the same moment share its reads', async () => {
    const sidecar = await startSidecar(POLICY, { SLUICE_REDIS_URL: redis.url });
    const client = connect(sidecar.address);
    try {
      await client.acquire({ resource: 'roomy', descriptors: { tenant: 'warm-up' } });
      const before = await stats(redis);
      // 400 distinct cold keys at once: no lease applies, every decision is a script call.
      const answers = await Promise.all(
        Array.from({ length: 400 }, (_, i) => client.acquire({ resource: 'roomy', descriptors: { tenant: `k${i}` } })),
      );
      const after = await stats(redis);
      expect(answers.every((a) => a.granted && a.decided_by === 'STORE')).toBe(true);
      const scripts = after.scripts - before.scripts;
      const reads = after.reads - before.reads - 1; // less the INFO that measured it
      expect(scripts).toBe(400);
      // Without pipelining Redis would read each call on its own: 400 reads.
      expect(reads).toBeLessThan(scripts / 4);
    } finally {
      client.close();
      await sidecar.stop();
    }
  });
});

describe('a burst on a fresh budget, leases on', () => {
  const world = useRedis();
  // An hour's period: no unit comes back while a burst is decided, so the budget is the burst.
  const policy = `
store:
  timeout: 10s
resources:
  - name: fifty
    keys: [tenant]
    lease: { enabled: true, max_fraction: 0.1, ttl: 1s }
    limits:
      - { name: hourly, algorithm: token_bucket, rate: 50/1h }
  - name: hundred
    keys: [tenant]
    lease: { enabled: true, max_fraction: 0.1, ttl: 1s }
    limits:
      - { name: hourly, algorithm: token_bucket, rate: 100/1h }
`;
  const running = useSidecars(
    () => [policy, policy],
    () => ({ SLUICE_REDIS_URL: world.redis.url }),
  );

  /** `requests` Acquires at once, dealt round robin over the first `over` sidecars. */
  function burst(resource: string, tenant: string, requests: number, over: number): Promise<AcquireResponse[]> {
    return Promise.all(Array.from({ length: requests }, (_, i) => running[i % over]!.client.acquire({ resource, descriptors: { tenant } })));
  }

  /** Units the sidecars hold in leases, all keys together. */
  async function held(): Promise<number> {
    return (await Promise.all(running.map(({ sidecar }) => metric(sidecar, 'sluice_lease_units_held')))).reduce((a, b) => a + b, 0);
  }

  /** Units still in Redis of a fresh `budget`/1h token bucket. */
  async function leftInRedis(resource: string, tenant: string, budget: number): Promise<number> {
    const intervalMs = 3_600_000 / budget;
    const tat = Number((await world.redis.client.get(`sluice:{${resource}|${tenant}}:hourly|tb`)) ?? 0);
    const now = await redisNow(world.redis);
    return Math.floor((now + budget * intervalMs - Math.max(tat, now)) / intervalMs);
  }

  for (const [resource, budget, requests] of [
    ['fifty', 50, 60],
    ['hundred', 100, 100],
  ] as const) {
    it(`grants exactly ${budget} of ${requests} requests at once through one sidecar, leases included`, async () => {
      const answers = await burst(resource, 'one', requests, 1);
      expect(answers.filter((a) => a.granted).length).toBe(budget);
      // The key was hot enough to lease, and the lease kept nothing back while a request was denied.
      expect(answers.some((a) => a.decided_by === 'LEASE')).toBe(true);
      expect(await held()).toBe(0);
    });

    it(`split over two sidecars, grants or holds every unit of ${budget} for ${requests} requests, none left in Redis`, async () => {
      expect(await held()).toBe(0); // what is held from here on is this burst's
      const answers = await burst(resource, 'two', requests, 2);
      const granted = answers.filter((a) => a.granted).length;
      // Read at once, before an idle lease gives its units back (300 ms).
      const [heldNow, left] = await Promise.all([held(), leftInRedis(resource, 'two', budget)]);
      // Every unit is granted, or held by a lease that took it ahead on one sidecar while the other
      // was denied: the one error leases allow. None was left in Redis while a request was denied.
      expect(left).toBe(0);
      expect(granted + heldNow).toBe(budget);
    });
  }
});
