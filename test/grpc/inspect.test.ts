// Inspect through the built sidecar on a real Redis: a scope's limits and line as the store holds
// them, charging nothing, with leases on; and, with Redis gone, UNAVAILABLE (there is nothing to
// fail open or closed), never an answer made up.
import { describe, expect, it } from 'vitest';
import { status, type ServiceError } from '@grpc/grpc-js';
import { ms } from '../support/client.js';
import { useRedis } from '../support/use-redis.js';
import { useSidecar } from '../support/sidecar.js';

const POLICY = `
store:
  timeout: 200ms
resources:
  - name: llm
    keys: [tenant]
    lease: { enabled: true }
    limits:
      - { name: tokens, algorithm: token_bucket, rate: 1000/1h }
      - { name: daily, algorithm: fixed_window, rate: 50/1d, counts: requests }
  - name: partner
    keys: [tenant]
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 1h }
`;

describe('Inspect', () => {
  const world = useRedis();
  const running = useSidecar(() => POLICY, () => ({ SLUICE_REDIS_URL: world.redis.url }));

  it('a scope never seen: every limit full, in policy order, with its name, algorithm and capacity', async () => {
    const look = await running.client.inspect({ resource: 'llm', descriptors: { tenant: 'fresh' } });
    expect(look).toEqual({
      limits: [
        { name: 'tokens', algorithm: 'token_bucket', remaining: 1000, limit: 1000, reset_after: { seconds: 0, nanos: 0 } },
        { name: 'daily', algorithm: 'fixed_window', remaining: 50, limit: 50, reset_after: { seconds: 0, nanos: 0 } },
      ],
      waiters: 0,
    });
  });

  it('shows what grants took, and looking many times charges nothing', async () => {
    const descriptors = { tenant: 'acme' };
    const granted = await running.client.acquire({ resource: 'llm', descriptors, cost: 300 });
    expect(granted.granted).toBe(true);
    const looks = await Promise.all(Array.from({ length: 20 }, () => running.client.inspect({ resource: 'llm', descriptors })));
    // A lease may have taken more than the grant from the store: it counts as taken.
    const tokens = looks[0]!.limits[0]!.remaining;
    expect(tokens).toBeLessThanOrEqual(700);
    for (const look of looks) {
      expect(look.limits[0]!.remaining).toBe(tokens);
      expect(look.limits[1]!.remaining).toBe(49);
      expect(ms(look.limits[1]!.reset_after)).toBeGreaterThan(0);
    }
    // Twenty looks counted no request against the 50 a day.
    expect((await running.client.acquire({ resource: 'llm', descriptors, cost: 1 })).granted).toBe(true);
    expect((await running.client.inspect({ resource: 'llm', descriptors })).limits[1]!.remaining).toBe(48);
  });

  it("counts the requests waiting in the scope's line and serves none of them", async () => {
    const descriptors = { tenant: 'busy' };
    const holder = await running.client.acquire({ resource: 'partner', descriptors });
    expect(holder.granted).toBe(true);
    const waiter = running.client.acquire({ resource: 'partner', descriptors, max_wait: { seconds: 30, nanos: 0 } });
    let look = await running.client.inspect({ resource: 'partner', descriptors });
    for (let i = 0; look.waiters === 0 && i < 200; i++) look = await running.client.inspect({ resource: 'partner', descriptors });
    expect(look).toMatchObject({ waiters: 1, limits: [{ name: 'inflight', remaining: 0, limit: 1 }] });
    expect(ms(look.limits[0]!.reset_after)).toBeGreaterThan(3_500_000);
    expect(await running.client.release(holder.permit_id)).toBe(true);
    const served = await waiter;
    expect(served.granted).toBe(true);
    expect(await running.client.inspect({ resource: 'partner', descriptors })).toMatchObject({ waiters: 0, limits: [{ remaining: 0 }] });
    expect(await running.client.release(served.permit_id)).toBe(true);
    expect(await running.client.inspect({ resource: 'partner', descriptors })).toMatchObject({ waiters: 0, limits: [{ remaining: 1, reset_after: { seconds: 0, nanos: 0 } }] });
  });

  it('Redis gone: UNAVAILABLE saying the store is unavailable', async () => {
    await world.redis.stop();
    const err = (await running.client.inspect({ resource: 'llm', descriptors: { tenant: 'acme' } }).catch((e: unknown) => e)) as ServiceError;
    expect(status[err.code]).toBe('UNAVAILABLE');
    expect(err.details).toMatch(/store unavailable/);
  });
});
