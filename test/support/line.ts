// A scope's waiting line as Redis holds it (line.lua), for tests that look behind the sidecars.
import type { Redis } from 'ioredis';
import type { Resource } from '../../src/config/policy.js';
import { scopeOf } from '../../src/decide/scope.js';
import type { RedisStore } from '../../src/store/redis/redis-store.js';
import { waitFor } from './redis-server.js';

export interface LineKeys {
  /** Tickets due to be dropped. */
  due: string;
  /** Tickets served and not yet collected. */
  served: string;
  /** One line per lane. */
  lines: string[];
}

/** The keys of the scope that `values` (the resource's keys' values, in order) name. */
export function lineKeys(store: RedisStore, resource: Resource, values: readonly string[]): LineKeys {
  const [due, served, , ...lines] = store.lineKeysOf(resource, scopeOf(resource, values));
  return { due: due!, served: served!, lines };
}

/** Every ticket the line keys hold: waiting in a lane, due to be dropped, or served and not yet collected. */
export async function ticketsIn(redis: Redis, keys: LineKeys): Promise<string[]> {
  const held = await Promise.all([redis.zrange(keys.due, 0, -1), redis.hkeys(keys.served), ...keys.lines.map((line) => redis.zrange(line, 0, -1))]);
  return held.flat();
}

/** Tickets waiting in the line of `resource` for one tenant (its lanes' sorted sets), found by key name. */
async function waitingIn(redis: Redis, resource: string, tenant: string): Promise<number> {
  let tickets = 0;
  for (const key of await redis.keys(`sluice:{${resource}|${tenant}}|wait|line|*`)) tickets += await redis.zcard(key);
  return tickets;
}

/** The line keys of `resource` for one tenant that exist: none once nobody waits and no verdict is left to collect. */
export function lineKeysHeld(redis: Redis, resource: string, tenant: string): Promise<string[]> {
  return redis.keys(`sluice:{${resource}|${tenant}}|wait|*`);
}

export async function untilNoLine(redis: Redis, resource: string, tenant: string, withinMs: number): Promise<void> {
  await waitFor(`the line of ${resource}|${tenant} to be gone`, withinMs, async () => ((await lineKeysHeld(redis, resource, tenant)).length === 0 ? true : undefined), 20);
}

export async function untilWaiting(redis: Redis, resource: string, tenant: string, count: number): Promise<void> {
  await waitFor(`${count} tickets in the line of ${resource}|${tenant}`, 15_000, async () => ((await waitingIn(redis, resource, tenant)) >= count ? true : undefined), 20);
}
