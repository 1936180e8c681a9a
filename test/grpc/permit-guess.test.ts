// A permit id is a capability: a caller who did not get it cannot release someone else's slot.
import { describe, expect, it } from 'vitest';
import type { ServiceError } from '@grpc/grpc-js';
import { useRedis } from '../support/use-redis.js';
import { useSidecar } from '../support/sidecar.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Ids one character away from `id`: the next and previous symbol at every position. */
function neighbours(id: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < id.length; i++) {
    const at = ALPHABET.indexOf(id[i]!);
    for (const step of [1, ALPHABET.length - 1]) out.push(id.slice(0, i) + ALPHABET[(at + step) % ALPHABET.length] + id.slice(i + 1));
  }
  return out;
}

describe('guessing a permit id against a sidecar on redis', () => {
  const world = useRedis();
  const running = useSidecar(
    () => `
resources:
  - name: single
    limits:
      - { name: one, algorithm: concurrency, max: 1, ttl: 1m }
`,
    () => ({ SLUICE_REDIS_URL: world.redis.url }),
  );

  it('releases nothing: the holder keeps its slot until it releases with its own id', async () => {
    const holder = await running.client.acquire({ resource: 'single' });
    expect(holder.granted).toBe(true);
    // Ids issued before and after it, from the same sidecar, are released by their holders only.
    const denied = await running.client.acquire({ resource: 'single' });
    expect(denied).toMatchObject({ granted: false, permit_id: '' });

    const guesses = [...neighbours(holder.permit_id), holder.permit_id.toUpperCase(), holder.permit_id.split('').reverse().join('')].filter(
      (guess) => guess !== holder.permit_id,
    );
    for (const guess of guesses) expect(await running.client.release(guess)).toBe(false);

    // The old format (`<12 hex>.<base36 sequence>`) and other shapes are not permits at all.
    for (const guess of ['0123456789ab.0', '0123456789ab.1', holder.permit_id + '.1', holder.permit_id.slice(0, 21)]) {
      await expect(running.client.release(guess)).rejects.toMatchObject({ code: 3, details: 'permit_id: not a permit sluice issued' } satisfies Partial<ServiceError>);
    }

    expect((await running.client.acquire({ resource: 'single' })).granted).toBe(false);
    expect(await running.client.release(holder.permit_id)).toBe(true);
    expect((await running.client.acquire({ resource: 'single' })).granted).toBe(true);
  });
});
