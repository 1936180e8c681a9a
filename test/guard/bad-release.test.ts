// One caller's bad Release is that caller's problem: bursts of releases with absurd actual_cost
// never count against the store, so a bystander's fail-open limit keeps being decided by Redis.
import { describe, expect, it } from 'vitest';
import { useRedis } from '../support/use-redis.js';
import { useSidecar } from '../support/sidecar.js';

// A generous deadline: this test is about bad input, and a loaded machine must not turn a grant
// into FAIL_OPEN (which carries no permit to release).
const POLICY = `
store:
  timeout: 1s
resources:
  - name: tokens
    keys: [tenant]
    settle_within: 5m
    lease: { enabled: false }
    limits: [{ name: rpm, algorithm: token_bucket, rate: 60/1m }]
  - name: bystander
    keys: [tenant]
    on_store_failure: open
    lease: { enabled: false }
    limits: [{ name: hourly, algorithm: fixed_window, rate: 5/1h }]
`;

describe('bursts of releases with absurd actual_cost', () => {
  const world = useRedis();
  const running = useSidecar(() => POLICY, () => ({ SLUICE_REDIS_URL: world.redis.url }));

  it('are refused or bounded, the breaker stays closed, and a bystander keeps getting STORE decisions', async () => {
    const { client, sidecar } = running;
    const outcomes: string[] = [];
    const bystander = [];
    for (let burst = 0; burst < 10; burst++) {
      const grants = await Promise.all(Array.from({ length: 10 }, (_, i) => client.acquire({ resource: 'tokens', descriptors: { tenant: `t${burst}-${i}` } })));
      const releases = grants.map((g, i) =>
        client.release(g.permit_id, i % 2 === 0 ? Number.MAX_SAFE_INTEGER : 1e12).then(
          (released) => `released ${released}`,
          (err: { details: string }) => err.details,
        ),
      );
      outcomes.push(...(await Promise.all(releases)));
      bystander.push(await client.acquire({ resource: 'bystander', descriptors: { tenant: 'b' } }));
    }

    expect(new Set(outcomes)).toEqual(new Set(['released true', 'actual_cost: must be at most 1000000000000000']));
    expect(bystander.map((d) => d.decided_by)).toEqual(Array(10).fill('STORE'));
    expect(bystander.filter((d) => d.granted).length).toBe(5);
    // A settled 1e12 drains that tenant's bucket for at most its own horizon: a minute.
    const drained = await client.acquire({ resource: 'tokens', descriptors: { tenant: 't0-1' } });
    expect(drained.granted).toBe(false);
    expect(drained.reset_after!.seconds).toBeLessThanOrEqual(60);
    const metrics = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
    expect(metrics).toMatch(/^sluice_store_up 1$/m);
    expect(metrics).not.toMatch(/^sluice_store_failures_total\{/m);
    expect((await fetch(`http://${sidecar.admin}/storez`)).status).toBe(200);
  });
});
