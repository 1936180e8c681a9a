// The cost bound end to end, on a sidecar with the memory store and one on a real redis-server:
// cost and actual_cost past 10^15 are refused at the edge naming the field and change nothing;
// at the bound a settlement drains a 60/1m bucket for a minute at most, not for 31,710 years.
// Both stores answer the same.
import { status, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { MAX_COST } from '../../src/grpc/validate.js';
import { ms, type SluiceClient } from '../support/client.js';
import { useSidecars } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const policy = (store: string) => `
${store}
resources:
  - name: tokens
    keys: [tenant]
    on_store_failure: closed
    settle_within: 5m
    lease: { enabled: false }
    limits:
      - { name: rpm, algorithm: token_bucket, rate: 60/1m }
`;

const world = useRedis();
// Filled when the file starts: the memory store's sidecar, then the Redis store's.
const sidecars = useSidecars(() => [policy(''), policy(`store:\n  redis: { url: ${world.redis.url} }\n  timeout: 2s`)]);

/** The error's code name and message, or 'OK' and the answer. */
async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call };
  } catch (err) {
    const e = err as ServiceError;
    return { code: status[e.code], details: e.details };
  }
}

/** Everything one store answers to the extremes, with timings reduced to what must hold. */
async function extremes(client: SluiceClient): Promise<unknown> {
  const acquire = (tenant: string, cost?: number) => client.acquire({ resource: 'tokens', descriptors: { tenant }, ...(cost === undefined ? {} : { cost }) });
  const seen: Record<string, unknown> = {};
  seen.costPastBound = await outcome(acquire('a', MAX_COST + 1));
  const atBound = await acquire('a', MAX_COST);
  seen.costAtBound = { granted: atBound.granted, retryAfter: atBound.retry_after, remaining: atBound.remaining };

  const grant = await acquire('a');
  expect(grant.granted).toBe(true);
  expect(grant.permit_id).not.toBe('');
  seen.actualPastBound = await outcome(client.release(grant.permit_id, MAX_COST + 1));
  seen.actualMaxSafe = await outcome(client.release(grant.permit_id, Number.MAX_SAFE_INTEGER));
  seen.actualAtBound = await outcome(client.release(grant.permit_id, MAX_COST));
  seen.retried = await outcome(client.release(grant.permit_id, MAX_COST));
  const drained = await acquire('a');
  seen.drained = {
    granted: drained.granted,
    remaining: drained.remaining,
    // One unit a second: the next is at most a second away, a full bucket at most a minute.
    retryWithinASecond: ms(drained.retry_after) > 0 && ms(drained.retry_after) <= 1_001,
    fullWithinAMinute: ms(drained.reset_after) <= 60_001,
  };

  const zero = await acquire('b', 5);
  seen.zeroCost = await outcome(client.release(zero.permit_id, 0));
  seen.afterZero = (await acquire('b')).remaining;
  return seen;
}

describe('cost and actual_cost at and past the bound, memory and Redis stores alike', () => {
  it('refused past 10^15 naming the field; at 10^15 a settlement drains the bucket, never more', async () => {
    const [memory, onRedis] = sidecars;
    const onMemory = await extremes(memory!.client);
    const onRedisStore = await extremes(onRedis!.client);
    const past = (field: string) => ({ code: 'INVALID_ARGUMENT', details: `${field}: must be at most ${MAX_COST}` });
    expect(onMemory).toEqual({
      costPastBound: past('cost'),
      costAtBound: { granted: false, retryAfter: null, remaining: 60 },
      actualPastBound: past('actual_cost'),
      actualMaxSafe: past('actual_cost'),
      actualAtBound: { ok: true },
      retried: { ok: false },
      drained: { granted: false, remaining: 0, retryWithinASecond: true, fullWithinAMinute: true },
      zeroCost: { ok: true },
      afterZero: 59,
    });
    expect(onRedisStore).toEqual(onMemory);
  });
});
