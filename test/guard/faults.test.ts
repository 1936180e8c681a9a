// Faults with real processes: Redis killed under load and started again, Redis paused. Every
// request must be answered within the store budget plus a margin, by the policy each resource
// names; the sidecar must stay up with bounded memory, and the limit must hold after recovery.
import { describe, expect, it } from 'vitest';
import { answersWhileFrozen, byStore, FAULT_BUDGET_MS, FAULT_MARGIN_MS, load, OPEN_AND_CLOSED, rssMb, storeDecidesAgain, until } from '../support/load.js';
import { launchRedis, serverArgs } from '../support/redis-server.js';
import { useRedis } from '../support/use-redis.js';
import { DEPLOYED_NODE_FLAGS, useSidecar } from '../support/sidecar.js';


const POLICY = `
store:
  timeout: ${FAULT_BUDGET_MS}ms
resources:
${OPEN_AND_CLOSED}  - name: local
    keys: [tenant]
    on_store_failure: local
    lease: { enabled: false }
    limits: [{ name: hourly, algorithm: fixed_window, rate: 40/1h }]
`;

/** A fresh Redis and a sidecar on it for the describe block; the Redis may be replaced by a test. */
function sidecarOnRedis() {
  const world = useRedis();
  // With the deployed heap flags, so that the memory bound below measures sluice, not V8's defaults.
  const running = useSidecar(() => POLICY, () => ({ SLUICE_REDIS_URL: world.redis.url }), DEPLOYED_NODE_FLAGS);
  return { world, running };
}


describe('Redis killed under load, then started again', () => {
  const { world, running } = sidecarOnRedis();

  it('answers every request by policy within the budget, stays up, and holds the limit after recovery', async () => {
    const traffic = load(running.client, ['open', 'closed'], 4);
    await until(() => traffic.answers.length > 200);
    expect(traffic.answers.every((a) => byStore(a.res))).toBe(true);
    const rssBefore = rssMb(running.sidecar.child.pid!);

    await world.redis.stop(); // kill -9
    const outageStart = traffic.mark();
    await until(() => traffic.answers.length > outageStart + 400);
    // The local share of a fresh tenant: 40/h with one sidecar alive.
    const local = [];
    for (let i = 0; i < 45; i++) local.push(await running.client.acquire({ resource: 'local', descriptors: { tenant: 'outage' } }));
    const during = traffic.answers.slice(outageStart + 20); // past the calls already under way
    const slowest = Math.max(...during.map((a) => a.ms));

    const port = world.redis.port;
    world.redis = await launchRedis({ port, args: serverArgs(port) });
    const recoveryMs = await until(() => storeDecidesAgain(traffic.answers));
    await traffic.stop();

    expect(traffic.errors).toEqual([]);
    expect(running.sidecar.child.exitCode).toBeNull();
    expect(slowest).toBeLessThan(FAULT_BUDGET_MS + FAULT_MARGIN_MS);
    for (const a of during) {
      if (a.resource === 'open') expect(a.res).toMatchObject({ granted: true, decided_by: expect.stringMatching(/^(FAIL_OPEN|LEASE)$/) });
      else expect(a.res.decided_by === 'LEASE' ? a.res.granted : !a.res.granted && a.res.decided_by === 'FAIL_CLOSED').toBe(true);
    }
    expect(during.filter((a) => a.res.decided_by === 'FAIL_OPEN').length).toBeGreaterThan(0);
    expect(during.filter((a) => a.res.decided_by === 'FAIL_CLOSED').length).toBeGreaterThan(0);
    expect(local.filter((d) => d.granted).length).toBe(40);
    expect(local.every((d) => d.decided_by === 'LOCAL_FALLBACK')).toBe(true);
    expect(rssMb(running.sidecar.child.pid!)).toBeLessThan(rssBefore + 64);
    expect(recoveryMs).toBeLessThan(15_000);

    // Back on Redis, the limit holds for a key asked far beyond it.
    const after = await Promise.all(Array.from({ length: 60 }, () => running.client.acquire({ resource: 'local', descriptors: { tenant: 'after' } })));
    expect(after.filter((d) => d.granted).length).toBe(40);
    expect(after.every((d) => d.decided_by === 'STORE')).toBe(true);
  });
});

describe('Redis paused', () => {
  const { world, running } = sidecarOnRedis();

  it('CLIENT PAUSE: answers by policy within the budget while Redis does not answer, then recovers', async () => {
    const traffic = load(running.client, ['open', 'closed'], 4, 'pause');
    await until(() => traffic.answers.length > 100);
    const inspector = world.redis.client.duplicate();
    await inspector.call('CLIENT', 'PAUSE', '2000', 'ALL');
    const pauseStart = traffic.mark();
    await until(() => traffic.answers.length > pauseStart + 200);
    const during = traffic.answers.slice(pauseStart + 20);
    await until(() => storeDecidesAgain(traffic.answers));
    await traffic.stop();
    inspector.disconnect();

    expect(traffic.errors).toEqual([]);
    expect(Math.max(...during.map((a) => a.ms))).toBeLessThan(FAULT_BUDGET_MS + FAULT_MARGIN_MS);
    expect(during.some((a) => a.res.decided_by === 'FAIL_OPEN' && a.res.granted)).toBe(true);
    expect(during.some((a) => a.res.decided_by === 'FAIL_CLOSED' && !a.res.granted)).toBe(true);
  });

  it('SIGSTOP: the same while the process is frozen with its connections open', async () => {
    const { during, errors } = await answersWhileFrozen(running.client, world.redis, ['open', 'closed'], 'stop');
    expect(errors).toEqual([]);
    expect(Math.max(...during.map((a) => a.ms))).toBeLessThan(FAULT_BUDGET_MS + FAULT_MARGIN_MS);
    expect(during.every((a) => a.res.decided_by !== 'STORE')).toBe(true);
  });
});
