// When Redis refuses work, its own words reach the caller's `reason`, the log and /storez: a
// wrong password, a user without key access, a full Redis. /storez proves the decision script
// runs, not only that a connection is open.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { connect } from '../support/client.js';

const POLICY = `
store:
  timeout: 50ms
resources:
  - name: closed
    keys: [tenant]
    on_store_failure: closed
    lease: { enabled: false }
    limits: [{ name: hourly, algorithm: fixed_window, rate: 10/1h }]
`;

async function storez(sidecar: SidecarProcess): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://${sidecar.admin}/storez`);
  return { status: res.status, text: await res.text() };
}

/** A sidecar on `url`, asked once; what the caller, /storez and the log say. */
async function diagnose(url: string) {
  const sidecar = await startSidecar(POLICY, { SLUICE_REDIS_URL: url });
  const client = connect(sidecar.address);
  try {
    const answer = await client.acquire({ resource: 'closed', descriptors: { tenant: 't' } });
    return { answer, storez: await storez(sidecar), logs: JSON.stringify(sidecar.logs) };
  } finally {
    client.close();
    await sidecar.stop();
  }
}

describe('Redis errors are named where an operator looks', () => {
  const world = {} as { redis: RedisProcess; full: RedisProcess };
  beforeAll(async () => {
    world.redis = await startRedis([], { password: 'right', users: ['limited on >pw ~other:* &* +@all'] });
    world.full = await startRedis(['--maxmemory', '1']);
  });
  afterAll(async () => {
    await world.redis?.stop();
    await world.full?.stop();
  });

  const cases: [string, () => string, RegExp][] = [
    ['a wrong password', () => `redis://:wrong@127.0.0.1:${world.redis.port}`, /WRONGPASS/],
    ['a user without access to the keys', () => `redis://limited:pw@127.0.0.1:${world.redis.port}`, /NOPERM/],
    ['a Redis out of memory', () => world.full.url, /OOM command not allowed/],
  ];
  for (const [what, url, words] of cases) {
    it(`${what}: the reason, /storez and the log carry ${words.source}`, async () => {
      const { answer, storez, logs } = await diagnose(url());
      expect(answer).toMatchObject({ granted: false, decided_by: 'FAIL_CLOSED' });
      expect(answer.reason).toMatch(words);
      expect(answer.reason).not.toMatch(/store unavailable:.*store unavailable:/);
      expect(storez.status).toBe(503);
      expect(storez.text).toMatch(words);
      expect(logs).toMatch(words);
    });
  }

  it('a healthy Redis: /storez runs the decision script and says so', async () => {
    const sidecar = await startSidecar(POLICY, { SLUICE_REDIS_URL: `redis://:right@127.0.0.1:${world.redis.port}` });
    try {
      expect(await storez(sidecar)).toEqual({ status: 200, text: 'store up: the decision script answers\n' });
    } finally {
      await sidecar.stop();
    }
  });
});
