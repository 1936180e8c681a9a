// Budgets in Redis, shared by every sidecar on it. One script call per decision, atomic over all
// of a resource's limits: the keys of one scope share a hash tag, so they sit in one Cluster slot.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import type { Limit, Resource } from '../../config/policy.js';
import { luaDir } from '../../paths.js';
import type { Grant, Store, StoreVerdict } from '../store.js';

const ALGORITHM_CODE = { token_bucket: 1, fixed_window: 2, sliding_window: 3, concurrency: 4 } as const;

/** What a resource's limits contribute to every script call, computed once per resource. */
interface ScriptPlan {
  /** Appended to `<prefix>:{<scope>` to make each key. */
  keySuffixes: string[];
  /** n, then four values per limit: the ARGV after cost and permit id. */
  limitArgs: (string | number)[];
}

interface SluiceCommands {
  sluiceAcquire(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<number[]>;
  sluiceRelease(numKeys: number, ...keysAndArgs: (string | number)[]): Promise<number>;
}

export interface RedisStoreOptions {
  url: string;
  prefix: string;
  redis?: RedisOptions;
}

export class RedisStore implements Store {
  readonly client: Redis & SluiceCommands;
  private readonly prefix: string;
  private readonly plans = new WeakMap<Resource, ScriptPlan>();

  constructor(options: RedisStoreOptions) {
    this.prefix = options.prefix;
    this.client = new Redis(options.url, {
      enableAutoPipelining: true,
      maxRetriesPerRequest: 1,
      ...options.redis,
    }) as Redis & SluiceCommands;
    // ioredis sends EVALSHA and falls back to EVAL (which loads the script) on NOSCRIPT.
    this.client.defineCommand('sluiceAcquire', { lua: readFileSync(join(luaDir, 'acquire.lua'), 'utf8') });
    this.client.defineCommand('sluiceRelease', { lua: readFileSync(join(luaDir, 'release.lua'), 'utf8') });
  }

  async acquire(resource: Resource, scope: string, cost: number, permitId: string): Promise<StoreVerdict> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    const reply = await this.client.sluiceAcquire(keys.length, ...keys, cost, permitId, ...plan.limitArgs);
    const retry = reply[3]!;
    return {
      granted: reply[0] === 1,
      decider: reply[1]! - 1,
      remaining: reply[2]!,
      retryAfterMs: retry < 0 ? Number.POSITIVE_INFINITY : retry,
      resetAfterMs: reply[4]!,
      now: reply[5]!,
    };
  }

  async release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    await this.client.sluiceRelease(keys.length, ...keys, grant.cost, grant.permitId, ...plan.limitArgs, delta, grant.grantedAt);
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }

  /** The Redis key of each limit of a scope, as the scripts see them (for tests and tools). */
  keysOf(resource: Resource, scope: string): string[] {
    return this.keys(this.plan(resource), scope);
  }

  private keys(plan: ScriptPlan, scope: string): string[] {
    const head = `${this.prefix}:{${scope}`;
    return plan.keySuffixes.map((suffix) => head + suffix);
  }

  private plan(resource: Resource): ScriptPlan {
    let plan = this.plans.get(resource);
    if (!plan) {
      plan = { keySuffixes: resource.limits.flatMap(keySuffixes), limitArgs: [resource.limits.length, ...resource.limits.flatMap(limitArgs)] };
      this.plans.set(resource, plan);
    }
    return plan;
  }
}

function keySuffixes(limit: Limit): string[] {
  return limit.algorithm === 'concurrency' ? [`}:${limit.name}`, `}:${limit.name}:held`] : [`}:${limit.name}`];
}

/** algorithm, a, b, per_request: see the ARGV contract in acquire.lua. */
function limitArgs(limit: Limit): (string | number)[] {
  const perRequest = limit.countsRequests ? 1 : 0;
  switch (limit.algorithm) {
    case 'token_bucket':
      return [ALGORITHM_CODE.token_bucket, limit.intervalMs, limit.capacity, perRequest];
    case 'fixed_window':
    case 'sliding_window':
      return [ALGORITHM_CODE[limit.algorithm], limit.periodMs, limit.capacity, perRequest];
    case 'concurrency':
      return [ALGORITHM_CODE.concurrency, limit.ttlMs, limit.capacity, perRequest];
  }
}
