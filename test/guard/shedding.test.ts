// Past server.max_in_flight the sidecar sheds honestly: a unary call at once, a stream after it
// waited for room; both with RESOURCE_EXHAUSTED saying the sidecar is overloaded, counted apart
// from store failures. Redis is frozen (SIGSTOP) to hold the decisions in flight.
import { status, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { AcquireResponse } from '../support/client.js';
import { until } from '../support/load.js';
import { useRedis } from '../support/use-redis.js';
import { useSidecar } from '../support/sidecar.js';

const POLICY = `
server:
  max_in_flight: 2
store:
  timeout: 5s
resources:
  - name: r
    keys: [tenant]
    lease: { enabled: false }
    limits: [{ name: hourly, algorithm: fixed_window, rate: 100/1h }]
`;

async function shed(admin: string, reason: 'full' | 'waited'): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  return Number(new RegExp(`^sluice_shed_total\\{reason="${reason}"\\} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
}

describe('a sidecar at server.max_in_flight', () => {
  const world = useRedis();
  const running = useSidecar(() => POLICY, () => ({ SLUICE_REDIS_URL: world.redis.url }));

  it('sheds unary calls past it at once, and decides the ones it took', async () => {
    const { client, sidecar } = running;
    await client.acquire({ resource: 'r', descriptors: { tenant: 'warm' } });
    world.redis.pause();
    const calls = Array.from({ length: 10 }, () =>
      client.acquire({ resource: 'r', descriptors: { tenant: 'u' } }).then(
        (res) => res,
        (err: ServiceError) => err,
      ),
    );
    await until(async () => (await shed(sidecar.admin!, 'full')) >= 8);
    world.redis.resume();
    const outcomes = await Promise.all(calls);
    const refused = outcomes.filter((o): o is ServiceError => o instanceof Error);
    expect(refused).toHaveLength(8);
    for (const err of refused) {
      expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(err.details).toBe('sidecar overloaded: 2 decisions in flight (server.max_in_flight); try again shortly');
    }
    const decided = outcomes.filter((o): o is AcquireResponse => !(o instanceof Error));
    expect(decided.map((d) => `${d.granted} ${d.decided_by}`)).toEqual(['true STORE', 'true STORE']);
  });

  it('makes a stream wait for room, then ends it with RESOURCE_EXHAUSTED once its answers are out', async () => {
    const { client, sidecar } = running;
    world.redis.pause();
    const call = client.stream();
    const answers: AcquireResponse[] = [];
    call.on('data', (res: AcquireResponse) => answers.push(res));
    const ended = new Promise<ServiceError>((resolve) => call.on('error', resolve));
    for (let i = 0; i < 5; i++) call.write({ resource: 'r', descriptors: { tenant: 's' }, request_id: `s${i}` });
    await until(async () => (await shed(sidecar.admin!, 'waited')) >= 1);
    world.redis.resume();
    const err = await ended;
    expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/sidecar overloaded: no room for 1000ms with 2 decisions in flight/);
    expect(answers.map((a) => `${a.granted} ${a.decided_by}`)).toEqual(['true STORE', 'true STORE']);
    const metrics = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
    expect(metrics).not.toMatch(/^sluice_store_failures_total\{/m);
  });
});
