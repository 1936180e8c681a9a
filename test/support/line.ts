// A scope's waiting line as Redis holds it (line.lua), for tests that look behind the sidecars.
import type { Redis } from 'ioredis';
import type { Resource } from '../../src/config/policy.js';
import { scopeOf } from '../../src/decide/scope.js';
import type { RedisStore } from '../../src/store/redis/redis-store.js';

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
