// A scope's waiting line as Redis holds it, read from outside the sidecars: what a client that
// gave up may have left behind.
import { parsePolicy } from '../../src/config/load.js';
import { scopeOf } from '../../src/decide/scope.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import type { RedisProcess } from './redis-server.js';

/**
 * Every ticket the line of a scope holds: waiting in a lane, due to be dropped, or served and not
 * yet collected. `values` are the scope's descriptor values in the order of the resource's keys;
 * the sidecars use the default key prefix.
 */
export async function ticketsIn(redis: RedisProcess, policyYaml: string, resourceName: string, values: string[]): Promise<string[]> {
  const resource = parsePolicy(policyYaml, 'policy.yaml').resources.get(resourceName);
  if (!resource) throw new Error(`no resource ${resourceName} in the policy`);
  const names = new RedisStore({ url: redis.url, prefix: 'sluice' });
  const [due, served, , ...lines] = names.lineKeysOf(resource, scopeOf(resource, values));
  await names.close();
  const held = await Promise.all([redis.client.zrange(due!, 0, -1), redis.client.hkeys(served!), ...lines.map((line) => redis.client.zrange(line, 0, -1))]);
  return held.flat();
}
