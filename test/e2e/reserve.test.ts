// Reserved capacity holds globally: two sidecar processes on one real redis-server, leases on, a
// low-priority flood at twice the limit through both, and the high priority still finds its 20%,
// however the flood was spread over the sidecars. A token bucket of 100 a day, so nothing refills
// during the test and no window closes under it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type SluiceClient } from '../support/client.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';

const POLICY = `
# Generous: this test is about the store's answers, not its failures, on a busy machine.
store:
  timeout: 10s
resources:
  - name: api
    keys: [tenant]
    reserve: [{ fraction: 0.2, min_priority: 5 }]
    limits:
      - { name: daily, algorithm: token_bucket, rate: 100/1d }
`;

describe('reserve across two sidecars on one Redis', () => {
  let redis: RedisProcess;
  let sidecars: SidecarProcess[];
  let clients: SluiceClient[];

  beforeAll(async () => {
    redis = await startRedis();
    sidecars = await Promise.all([0, 1].map(() => startSidecar(POLICY, { SLUICE_REDIS_URL: redis.url })));
    clients = sidecars.flatMap((s) => [0, 1].map(() => connect(s.address)));
  });
  afterAll(async () => {
    for (const c of clients ?? []) c.close();
    await Promise.all((sidecars ?? []).map((s) => s.stop()));
    await redis?.stop();
  });

  it('a low-priority flood at 2x the limit gets at most its 80; the high priority gets the reserved 20, and no more', async () => {
    let low = 0;
    const reasons = new Set<string>();
    // 50 concurrent callers, 4 requests each: 200 low-priority requests over both sidecars.
    await Promise.all(
      Array.from({ length: 50 }, async (_, caller) => {
        for (let round = 0; round < 4; round++) {
          const res = await clients[(caller + round) % clients.length]!.acquire({ resource: 'api', descriptors: { tenant: 't' }, priority: 1 });
          if (res.granted) low++;
          else if (res.decided_by === 'STORE') reasons.add(res.reason);
        }
      }),
    );
    expect(low).toBeLessThanOrEqual(80);
    // Leases may strand a few units on the sidecar that did not use them, never many.
    expect(low).toBeGreaterThanOrEqual(60);
    expect([...reasons].some((reason) => reason.includes('reserved for priorities above 1'))).toBe(true);
    // Whatever the leases hold goes back within their ttl (1 s); the high priority asks through
    // both sidecars and gets the 20 held back, then the limit is out for it too.
    let high = 0;
    for (let i = 0; i < 30; i++) {
      const res = await clients[i % clients.length]!.acquire({ resource: 'api', descriptors: { tenant: 't' }, priority: 7 });
      if (res.granted) high++;
    }
    expect(high).toBeGreaterThanOrEqual(20);
    expect(low + high).toBeLessThanOrEqual(100);
    // Low priority is still denied: the reserve was spent by the high priority, not given to it.
    const after = await clients[0]!.acquire({ resource: 'api', descriptors: { tenant: 't' }, priority: 1 });
    expect(after.granted).toBe(false);
  });
});
