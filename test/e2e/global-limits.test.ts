// The promise of sluice: one limit, however many sidecars. Three sidecar processes share one
// real redis-server; many concurrent clients hit the same key through all of them. Leases are off
// here so that every decision is the store's and the count must be exact; test/lease/ covers them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, ms, type SluiceClient } from '../support/client.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';

const LIMIT = 50;
const POLICY = `
# Generous: these tests are about the store's answers, not its failures, on a busy machine.
store:
  timeout: 10s
resources:
  - name: window
    keys: [tenant]
    lease: { enabled: false }
    limits:
      - { name: daily, algorithm: fixed_window, rate: ${LIMIT}/1d }
      - { name: witness, algorithm: fixed_window, rate: 1000000/1d }
  - name: bucket
    keys: [tenant]
    lease: { enabled: false }
    limits:
      - { name: burst, algorithm: token_bucket, rate: ${LIMIT}/1d }
      - { name: witness, algorithm: sliding_window, rate: 1000000/1d }
  - name: slots
    keys: [tenant]
    limits:
      - { name: inflight, algorithm: concurrency, max: 8, ttl: 1h }
  - name: leaky
    limits:
      - { name: inflight, algorithm: concurrency, max: 8, ttl: 2s }
`;

describe('three sidecars on one Redis', () => {
  let redis: RedisProcess;
  let sidecars: SidecarProcess[];
  let clients: SluiceClient[];

  beforeAll(async () => {
    redis = await startRedis();
    sidecars = await Promise.all([0, 1, 2].map(() => startSidecar(POLICY, { SLUICE_REDIS_URL: redis.url })));
    // Four channels per sidecar, as several pods' worth of callers would open.
    clients = sidecars.flatMap((s) => [0, 1, 2, 3].map(() => connect(s.address)));
    await waitForDayToLast(redis, 60_000);
  });
  afterAll(async () => {
    for (const c of clients ?? []) c.close();
    await Promise.all((sidecars ?? []).map((s) => s.stop()));
    await redis?.stop();
  });

  /** 200 concurrent callers, 3 requests each, spread over every sidecar. */
  async function storm(resource: string, tenant: string): Promise<number> {
    let granted = 0;
    await Promise.all(
      Array.from({ length: 200 }, async (_, caller) => {
        for (let round = 0; round < 3; round++) {
          const client = clients[(caller + round) % clients.length]!;
          const res = await client.acquire({ resource, descriptors: { tenant } });
          if (res.granted) granted++;
        }
      }),
    );
    return granted;
  }

  it('fixed_window: grants exactly the limit, and denied requests charge nothing', async () => {
    expect(await storm('window', 'w')).toBe(LIMIT);
    // The second limit saw only the granted requests: all-or-nothing held under contention.
    expect(await redis.client.hget('sluice:{window|w}:witness|fw', 'c')).toBe(String(LIMIT));
    expect(await redis.client.hget('sluice:{window|w}:daily|fw', 'c')).toBe(String(LIMIT));
  });

  it('token_bucket: grants exactly the burst, and denied requests charge nothing', async () => {
    expect(await storm('bucket', 'b')).toBe(LIMIT);
    expect(await redis.client.hget('sluice:{bucket|b}:witness|sw', 'c')).toBe(String(LIMIT));
  });

  it('concurrency: never more than max held at once across sidecars', async () => {
    let held = 0;
    let peak = 0;
    let grants = 0;
    let serverPeak = 0;
    const sampler = setInterval(() => {
      void redis.client.get('sluice:{slots|c}:inflight|cc|held').then((v) => (serverPeak = Math.max(serverPeak, Number(v ?? 0))));
    }, 5);
    await Promise.all(
      Array.from({ length: 50 }, async (_, holder) => {
        for (let round = 0; round < 6; round++) {
          const client = clients[(holder + round) % clients.length]!;
          const res = await client.acquire({ resource: 'slots', descriptors: { tenant: 'c' } });
          if (!res.granted) continue;
          grants++;
          peak = Math.max(peak, ++held);
          await new Promise((r) => setTimeout(r, 10)); // the work the permit guards
          held--;
          expect(await client.release(res.permit_id)).toBe(true);
        }
      }),
    );
    clearInterval(sampler);
    expect(grants).toBeGreaterThanOrEqual(8);
    expect(peak).toBeLessThanOrEqual(8);
    expect(serverPeak).toBeLessThanOrEqual(8);
    expect(await redis.client.get('sluice:{slots|c}:inflight|cc|held')).toBeNull();
  });

  it('concurrency: a holder that never releases is reclaimed after its ttl', async () => {
    const taken = await Promise.all(Array.from({ length: 8 }, (_, i) => clients[i]!.acquire({ resource: 'leaky' })));
    expect(taken.every((t) => t.granted)).toBe(true);
    const start = Date.now();
    const denied = await clients[9]!.acquire({ resource: 'leaky' });
    expect(denied.granted).toBe(false);
    expect(ms(denied.retry_after)).toBeGreaterThan(0);
    expect(ms(denied.retry_after)).toBeLessThanOrEqual(2000);
    // No event marks an expiry: poll until the slot is reclaimed, bounded by a deadline.
    let granted = false;
    while (!granted && Date.now() - start < 15_000) {
      granted = (await clients[10]!.acquire({ resource: 'leaky' })).granted;
      if (!granted) await new Promise((r) => setTimeout(r, 50));
    }
    expect(granted).toBe(true);
    expect(Date.now() - start).toBeGreaterThanOrEqual(ms(denied.retry_after) - 50);
  });
});

/** Daily windows roll at midnight UTC; start the window tests well inside one. */
async function waitForDayToLast(redis: RedisProcess, needMs: number): Promise<void> {
  const [seconds] = await redis.client.time();
  const intoDay = (Number(seconds) * 1000) % 86_400_000;
  const left = 86_400_000 - intoDay;
  if (left < needMs) await new Promise((r) => setTimeout(r, left + 1000));
}
