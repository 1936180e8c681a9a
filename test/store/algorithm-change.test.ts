// A rolling deploy that changes limits' algorithms under the same names: old and new sidecar
// processes share one real redis-server and decide for the same tenants at once. Every key names
// its algorithm, so neither ever reads the other's state: no decision fails, every answer comes
// from the store, and each holds its own budget (the new algorithm starts full).
import { describe, expect, it } from 'vitest';
import type { AcquireResponse, SluiceClient } from '../support/client.js';
import { useSidecars } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const policy = (url: string, limits: string[]) => `
store:
  redis: { url: ${url} }
  timeout: 2s
resources:
  - name: api
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: false }
    limits:
${limits.map((l) => `      - ${l}`).join('\n')}
`;

const OLD = ['{ name: rpm, algorithm: token_bucket, rate: 20/1h }', '{ name: slots, algorithm: fixed_window, rate: 100000/1d }'];
const NEW = ['{ name: rpm, algorithm: fixed_window, rate: 20/1d }', '{ name: slots, algorithm: concurrency, max: 100000, ttl: 1m }'];
const TENANTS = ['acme', 'globex', 'initech', 'umbrella'];
const CALLS_PER_TENANT = 30;

const world = useRedis();
const sidecars = useSidecars(() => [policy(world.redis.url, OLD), policy(world.redis.url, NEW)]);

/** Acquires for `tenant` one after another, releasing every permit; every answer, or the error. */
async function run(client: SluiceClient, tenant: string): Promise<(AcquireResponse | Error)[]> {
  const answers: (AcquireResponse | Error)[] = [];
  for (let i = 0; i < CALLS_PER_TENANT; i++) {
    try {
      const res = await client.acquire({ resource: 'api', descriptors: { tenant } });
      answers.push(res);
      if (res.permit_id) await client.release(res.permit_id, 1);
    } catch (err) {
      answers.push(err as Error);
    }
  }
  return answers;
}

describe('an algorithm change under the same limit name, old and new sidecars on one Redis', () => {
  it('token_bucket -> fixed_window and fixed_window -> concurrency: no failed decision, each side its own full budget', async () => {
    const [oldClient, newClient] = sidecars.map((s) => s.client) as [SluiceClient, SluiceClient];
    const runs = await Promise.all(TENANTS.flatMap((tenant) => [run(oldClient, tenant), run(newClient, tenant)]));
    for (const [i, answers] of runs.entries()) {
      const side = i % 2 === 0 ? 'old' : 'new';
      const errors = answers.filter((a): a is Error => a instanceof Error).map((e) => e.message);
      expect(errors, side).toEqual([]);
      const decided = answers as AcquireResponse[];
      expect(new Set(decided.map((a) => a.decided_by)), side).toEqual(new Set(['STORE']));
      // 20 each: the old bucket and the new window are budgets of their own, and both start full.
      expect(decided.filter((a) => a.granted).length, side).toBe(20);
      expect(decided.filter((a) => !a.granted).every((a) => a.limit_name === 'rpm'), side).toBe(true);
    }
    // Both generations' keys are in Redis, each named by its algorithm, each with a TTL.
    const keys = (await world.redis.client.keys('sluice:{api|acme}:*')).sort();
    expect(keys).toEqual(['sluice:{api|acme}:rpm|fw', 'sluice:{api|acme}:rpm|tb', 'sluice:{api|acme}:slots|fw']);
    for (const key of keys) expect(await world.redis.client.pttl(key)).toBeGreaterThan(0);
  });
});
