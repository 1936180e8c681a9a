// The bounds hold at run time: a sidecar on a real redis-server serves policies at their maxima.
import { describe, expect, it } from 'vitest';
import { ms } from '../support/client.js';
import { useRedis } from '../support/use-redis.js';
import { useSidecar } from '../support/sidecar.js';
import { MAX_COST } from '../../src/grpc/validate.js';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const POLICY = `
store:
  timeout: 1m
resources:
  - name: widest
    keys: [tenant]
    limits:
      - { name: daily, algorithm: fixed_window, rate: ${MAX_SAFE}/1d }
  - name: sliding
    keys: [tenant]
    limits:
      - { name: yearly, algorithm: sliding_window, rate: ${MAX_SAFE}/365d }
  - name: finest
    keys: [tenant]
    lease: { enabled: false }
    limits:
      - { name: per-us, algorithm: token_bucket, rate: 1000000/1s, burst: 60000000 }
  - name: held
    keys: [tenant]
    settle_within: 1d
    limits:
      - { name: inflight, algorithm: concurrency, max: ${MAX_COST}, ttl: 1d }
`;

describe('a sidecar on redis with every bound at its maximum', () => {
  const world = useRedis();
  const running = useSidecar(
    () => POLICY,
    () => ({ SLUICE_REDIS_URL: world.redis.url }),
  );

  it('store.timeout 1m: decides from the store', async () => {
    const res = await running.client.acquire({ resource: 'widest', descriptors: { tenant: 'timeout' } });
    expect(res).toMatchObject({ granted: true, decided_by: 'STORE' });
  });

  it(`a window of N = 2^53-1 reports limit and remaining exactly`, async () => {
    const first = await running.client.acquire({ resource: 'widest', descriptors: { tenant: 'exact' }, cost: 3 });
    expect(first).toMatchObject({ granted: true, limit: MAX_SAFE, remaining: MAX_SAFE - 3 });
    // The largest cost a request may carry, taken from the largest limit, to the unit.
    const second = await running.client.acquire({ resource: 'widest', descriptors: { tenant: 'exact' }, cost: MAX_COST });
    expect(second).toMatchObject({ granted: true, limit: MAX_SAFE, remaining: MAX_SAFE - 3 - MAX_COST });
  });

  it('a sliding window of N = 2^53-1 over 365d grants and counts', async () => {
    const res = await running.client.acquire({ resource: 'sliding', descriptors: { tenant: 'year' }, cost: 2 });
    expect(res).toMatchObject({ granted: true, limit: MAX_SAFE });
    // The previous window's share makes the estimate a float; it must stay within a unit.
    expect(Math.abs(res.remaining - (MAX_SAFE - 2))).toBeLessThanOrEqual(1);
  });

  it('a token bucket at one unit per microsecond grants its burst exactly, then waits for the refill', async () => {
    const taken = await running.client.acquire({ resource: 'finest', descriptors: { tenant: 'us' }, cost: 60_000_000 });
    expect(taken).toMatchObject({ granted: true, limit: 60_000_000, remaining: 0 });
    expect(ms(taken.reset_after)).toBe(60_000);
    // The full burst again needs a minute of refill, less the moments since.
    const next = await running.client.acquire({ resource: 'finest', descriptors: { tenant: 'us' }, cost: 60_000_000 });
    expect(next.granted).toBe(false);
    expect(ms(next.retry_after)).toBeGreaterThan(50_000);
    expect(ms(next.retry_after)).toBeLessThanOrEqual(60_000);
  });

  it('a concurrency ttl of 1d holds a permit of the largest cost in redis, and Release frees it', async () => {
    const res = await running.client.acquire({ resource: 'held', descriptors: { tenant: 'day' }, cost: MAX_COST });
    expect(res).toMatchObject({ granted: true, limit: MAX_COST, remaining: 0 });
    expect(ms(res.reset_after)).toBe(86_400_000);
    const keys = await world.redis.client.keys('*inflight*');
    const ttls = await Promise.all(keys.map((key) => world.redis.client.pttl(key)));
    expect(ttls.length).toBeGreaterThan(0);
    for (const ttl of ttls) expect(ttl).toBeGreaterThan(86_000_000);
    expect((await running.client.acquire({ resource: 'held', descriptors: { tenant: 'day' } })).granted).toBe(false);
    expect(await running.client.release(res.permit_id)).toBe(true);
    expect(await running.client.acquire({ resource: 'held', descriptors: { tenant: 'day' } })).toMatchObject({ granted: true, remaining: MAX_COST - 1 });
  });
});
