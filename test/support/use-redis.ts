// A redis-server for the enclosing describe block (or file): started in beforeAll, stopped in
// afterAll. A test may replace `world.redis` (a restart on the same port); the last one is stopped.
import { afterAll, beforeAll } from 'vitest';
import { prioritise, startRedis, type RedisProcess, type RedisServerOptions } from './redis-server.js';

export interface UseRedisOptions extends RedisServerOptions {
  /** Extra redis-server arguments. */
  args?: string[];
  /** Give it the CPU first (see prioritise), for tests that load the machine. */
  prioritised?: boolean;
}

export function useRedis(options: UseRedisOptions = {}): { redis: RedisProcess } {
  const world = {} as { redis: RedisProcess };
  beforeAll(async () => {
    world.redis = await startRedis(options.args ?? [], options);
    if (options.prioritised) prioritise(world.redis);
  });
  afterAll(async () => {
    world.redis?.resume();
    await world.redis?.stop();
  });
  return world;
}
