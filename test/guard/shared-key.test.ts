// Three sidecars, 300 callers, one key each for a token bucket and a concurrency limit, on one
// healthy Redis: the number holds across sidecars under load. Grants never exceed burst + rate x
// elapsed, permits held at once never exceed the concurrency max, and no answer comes from the
// failure policy.
import { describe, expect, it } from 'vitest';
import { DEPLOYED_NODE_FLAGS, useSidecars } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const POLICY = `
store:
  timeout: 50ms
resources:
  - name: bucket
    on_store_failure: open
    limits: [{ name: rate, algorithm: token_bucket, rate: 100/1s, burst: 50 }]
  - name: slots
    on_store_failure: open
    limits: [{ name: inflight, algorithm: concurrency, max: 10, ttl: 30s }]
`;
const CALLERS = 300;
const RUN_MS = 3_000;

describe('three sidecars, 300 callers, one key', () => {
  const world = useRedis({ prioritised: true });
  const running = useSidecars(() => [POLICY, POLICY, POLICY], () => ({ SLUICE_REDIS_URL: world.redis.url }), DEPLOYED_NODE_FLAGS);

  it('grants at most what the bucket allows and never holds more than 10 permits at once', async () => {
    const decidedBy: Record<string, number> = {};
    const count = (by: string) => (decidedBy[by] = (decidedBy[by] ?? 0) + 1);
    let bucketGrants = 0;
    let held = 0;
    let mostHeld = 0;
    const started = performance.now();
    let lastAnswer = started;
    const callers = Array.from({ length: CALLERS }, async (_, i) => {
      const { client } = running[i % running.length]!;
      while (performance.now() - started < RUN_MS) {
        if (i % 2 === 0) {
          const res = await client.acquire({ resource: 'bucket' });
          lastAnswer = performance.now();
          count(res.decided_by);
          if (res.granted) bucketGrants++;
        } else {
          const res = await client.acquire({ resource: 'slots' });
          count(res.decided_by);
          if (!res.granted) continue;
          mostHeld = Math.max(mostHeld, ++held);
          await new Promise((resolve) => setTimeout(resolve, 10));
          held--;
          await client.release(res.permit_id);
        }
      }
    });
    await Promise.all(callers);
    const allowed = 50 + Math.ceil((100 * (lastAnswer - started)) / 1000);
    console.log(`shared key: ${bucketGrants} bucket grants of ${allowed} allowed; at most ${mostHeld} permits held; answers ${JSON.stringify(decidedBy)}`);

    expect(Object.keys(decidedBy).every((by) => by === 'STORE' || by === 'LEASE')).toBe(true);
    expect(bucketGrants).toBeLessThanOrEqual(allowed);
    expect(bucketGrants).toBeGreaterThan(allowed * 0.8);
    expect(mostHeld).toBeLessThanOrEqual(10);
    expect(mostHeld).toBe(10);
  });
});
