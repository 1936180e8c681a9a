// A scope's waiting line as Redis holds it (the store's key names, prefix `sluice`), for tests
// that check what waiting requests leave behind.
import type { Redis } from 'ioredis';
import { waitFor } from './redis-server.js';

/** Tickets waiting in the scope's line (its lanes' sorted sets). */
async function ticketsOf(redis: Redis, resource: string, tenant: string): Promise<number> {
  let tickets = 0;
  for (const key of await redis.keys(`sluice:{${resource}|${tenant}}|wait|line|*`)) tickets += await redis.zcard(key);
  return tickets;
}

/** The scope's line keys that exist: none once nobody waits and no verdict is left to collect. */
function lineKeysOf(redis: Redis, resource: string, tenant: string): Promise<string[]> {
  return redis.keys(`sluice:{${resource}|${tenant}}|wait|*`);
}

export async function untilNoLine(redis: Redis, resource: string, tenant: string, withinMs: number): Promise<void> {
  await waitFor(`the line of ${resource}|${tenant} to be gone`, withinMs, async () => ((await lineKeysOf(redis, resource, tenant)).length === 0 ? true : undefined), 20);
}

export async function untilWaiting(redis: Redis, resource: string, tenant: string, count: number): Promise<void> {
  await waitFor(`${count} tickets in the line of ${resource}|${tenant}`, 15_000, async () => ((await ticketsOf(redis, resource, tenant)) >= count ? true : undefined), 20);
}
