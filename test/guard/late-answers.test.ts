// A decision answered by policy while its script still ran in Redis later: what Redis granted
// for a caller who was answered otherwise is undone as soon as the late answer arrives. A short
// stall must not lock a concurrency limit for its whole ttl, nor charge a budget for requests
// `closed` denied.
import { describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { until } from '../support/load.js';
import { useRedis } from '../support/use-redis.js';
import { useSidecar } from '../support/sidecar.js';

const POLICY = `
store:
  timeout: 150ms
resources:
  - name: slots
    keys: [tenant]
    on_store_failure: open
    limits: [{ name: inflight, algorithm: concurrency, max: 5, ttl: 5m }]
  - name: budget
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: false }
    limits: [{ name: hourly, algorithm: fixed_window, rate: 10/1h }]
`;

/** Starts a 300 ms stall; resolves, once it has begun, with a promise of its end. */
const STALLS: [string, (redis: Redis) => Promise<{ over: Promise<unknown> }>][] = [
  // Redis answers it when it wakes. A busy Redis may read a sidecar's request before it (it reads
  // ready connections in its own order): the stall has begun once a PING on another connection,
  // ready before, goes unanswered.
  ['DEBUG SLEEP 0.3', async (redis) => {
    const probe = redis.duplicate();
    await probe.ping();
    const over = redis.call('DEBUG', 'SLEEP', '0.3');
    while (await Promise.race([probe.ping().then(() => true, () => false), new Promise((resolve) => setTimeout(resolve, 20, false))]));
    probe.disconnect();
    return { over };
  }],
  // Answered at once, once the pause is in force.
  ['CLIENT PAUSE 300', async (redis) => {
    await redis.call('CLIENT', 'PAUSE', '300', 'ALL');
    return { over: new Promise((resolve) => setTimeout(resolve, 300)) };
  }],
];

describe('late answers from a stalled Redis are reconciled', () => {
  // Only the stalls below may silence it, not a machine busy with other tests.
  const world = useRedis({ args: ['--enable-debug-command', 'yes'], prioritised: true });
  const running = useSidecar(() => POLICY, () => ({ SLUICE_REDIS_URL: world.redis.url }));

  for (const [name, stall] of STALLS) {
    it(`${name}: every slot is usable again within 1 s of Redis answering, and a closed denial charges nothing`, async () => {
      const tenant = name.split(' ')[0]!;
      const client = running.client;
      const inspector = world.redis.client.duplicate();
      await inspector.ping();
      const { over } = await stall(inspector);
      const during = await Promise.all([
        ...Array.from({ length: 5 }, () => client.acquire({ resource: 'slots', descriptors: { tenant } })),
        ...Array.from({ length: 5 }, () => client.acquire({ resource: 'budget', descriptors: { tenant } })),
      ]);
      await over;
      const answeredAt = Date.now();
      inspector.disconnect();

      // Answered by policy while Redis said nothing; Redis still ran every script afterwards.
      expect(during.map((d) => `${d.granted} ${d.decided_by}`)).toEqual([...Array(5).fill('true FAIL_OPEN'), ...Array(5).fill('false FAIL_CLOSED')]);

      // All five slots come free: five holders at once, decided by Redis.
      let holders: Awaited<ReturnType<typeof client.acquire>>[] = [];
      await until(async () => {
        for (const h of holders) if (h.granted) await client.release(h.permit_id);
        holders = await Promise.all(Array.from({ length: 5 }, () => client.acquire({ resource: 'slots', descriptors: { tenant } })));
        return holders.every((h) => h.granted && h.decided_by === 'STORE');
      }, 5_000);
      expect(Date.now() - answeredAt).toBeLessThan(1_000);
      const sixth = await client.acquire({ resource: 'slots', descriptors: { tenant } });
      expect(sixth).toMatchObject({ granted: false, decided_by: 'STORE' });
      for (const h of holders) await client.release(h.permit_id);

      // The five denied by `closed` were refunded: the whole 10/1h is still there.
      const after = await Promise.all(Array.from({ length: 11 }, () => client.acquire({ resource: 'budget', descriptors: { tenant } })));
      expect(after.map((d) => d.decided_by)).toEqual(Array(11).fill('STORE'));
      expect(after.filter((d) => d.granted).length).toBe(10);
    });
  }
});
