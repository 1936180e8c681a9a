// Budgets in Redis, shared by every sidecar on it. One script call per decision, atomic over all
// of a resource's limits: the keys of one scope share a hash tag, so they sit in one Cluster slot.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, type RedisOptions } from 'ioredis';
import { costFor, type Limit, type RedisConfig, type Resource } from '../../config/policy.js';
import { luaDir } from '../../paths.js';
import { ScriptBatcher } from './batcher.js';
import { closeRedis, connectionFromUrl, connectRedis, type RedisClient, type RedisConnection } from './connect.js';
import { ONCE_TTL_MS, type Grant, type Store, type StoreVerdict, type TakeVerdict } from '../store.js';

const ALGORITHM_CODE = { token_bucket: 1, fixed_window: 2, sliding_window: 3, concurrency: 4 } as const;

/** What a resource's limits contribute to every script call, computed once per resource. */
interface ScriptPlan {
  /** Appended to `<prefix>:{<scope>` to make each key. */
  keySuffixes: string[];
  /** n, then four values per limit: the ARGV after cost and permit id. */
  limitArgs: (string | number)[];
}

const SCRIPTS = { sluiceAcquire: 'acquire.lua', sluiceSettle: 'settle.lua', sluiceHeartbeat: 'heartbeat.lua' } as const;

/**
 * The compiled store.redis, or (for tests and tools) a plain redis:// or rediss:// url and a
 * prefix. `redis` adds ioredis options (tests shorten timeouts with it).
 */
export type RedisStoreOptions =
  | (RedisConfig & { redis?: RedisOptions })
  | { url?: string | undefined; prefix: string; redis?: RedisOptions };

export class RedisStore implements Store {
  /** A `Redis` (one server, or the master the sentinels name) or a `Cluster`. */
  readonly client: RedisClient;
  /**
   * One pipeline per event-loop turn; null on a Cluster, where a pipeline must stay on one node:
   * there script calls go out one by one, each routed by its keys' slot and following MOVED, ASK
   * and failovers by itself.
   */
  readonly batcher: ScriptBatcher | null;
  private readonly prefix: string;
  private readonly plans = new WeakMap<Resource, ScriptPlan>();
  private lastConnectionError: Error | null = null;

  constructor(options: RedisStoreOptions) {
    this.prefix = options.prefix;
    let connection: RedisConnection;
    if ('topology' in options) connection = options;
    else if (options.url !== undefined) connection = connectionFromUrl(options.url);
    else throw new Error('RedisStore: no url; a Sentinel or Cluster store needs the whole store.redis config (policy.store.redis)');
    this.client = connectRedis(connection, options.redis);
    // ioredis sends EVALSHA and falls back to EVAL (which loads the script) on NOSCRIPT; on a
    // Cluster it does so on whichever node serves the keys' slot.
    for (const [name, file] of Object.entries(SCRIPTS)) this.client.defineCommand(name, { lua: readFileSync(join(luaDir, file), 'utf8') });
    this.batcher = this.client instanceof Cluster ? null : new ScriptBatcher(this.client);
    // Connection errors (refused, TLS, DNS) reach callers only as "max retries reached" or
    // "connection closed"; remember the last one so a failed call can say what went wrong. The
    // listener also keeps ioredis from printing every reconnect failure to stderr.
    const remember = (err: Error) => {
      this.lastConnectionError = err;
    };
    this.client.on('error', remember);
    this.client.on('node error', remember);
    this.client.on('ready', () => {
      this.lastConnectionError = null;
    });
  }

  async acquire(resource: Resource, scope: string, cost: number, permitId: string): Promise<StoreVerdict> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    return verdictOf(await this.call<number[]>('sluiceAcquire', [keys.length, ...keys, cost, permitId, ...plan.limitArgs]));
  }

  async take(resource: Resource, scope: string, cost: number, want: readonly number[]): Promise<TakeVerdict> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    const reply = await this.call<number[]>('sluiceAcquire', [keys.length, ...keys, cost, '', ...plan.limitArgs, ...want]);
    const taken: number[] = [];
    const left: number[] = [];
    for (let i = 7; i < reply.length; i += 2) {
      taken.push(reply[i]!);
      left.push(reply[i + 1]!);
    }
    const windowEnds = reply[6]!;
    return { ...verdictOf(reply), taken, left, windowEndsInMs: windowEnds < 0 ? Number.POSITIVE_INFINITY : windowEnds };
  }

  async release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    const amounts = resource.limits.map((limit) =>
      limit.algorithm === 'concurrency' ? costFor(limit, grant.cost) : limit.countsRequests ? 0 : delta,
    );
    await this.settle(resource, scope, grant.permitId, grant.permitId, amounts, grant.grantedAt);
  }

  async refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    const amounts = resource.limits.map((limit, i) => (limit.algorithm === 'concurrency' ? 0 : -(units[i] ?? 0)));
    return this.settle(resource, scope, refundId, '', amounts, takenAt);
  }

  async heartbeat(sidecarId: string, ttlMs: number): Promise<number> {
    return this.call<number>('sluiceHeartbeat', [1, `${this.prefix}:{sidecars}`, sidecarId, ttlMs]);
  }

  async ping(): Promise<void> {
    await this.client.ping().catch((err: unknown) => {
      throw this.explain(err);
    });
  }

  async close(): Promise<void> {
    await closeRedis(this.client);
  }

  private call<T>(command: keyof typeof SCRIPTS, args: (string | number)[]): Promise<T> {
    const sent = this.batcher
      ? this.batcher.call<T>(command, args)
      : (this.client as unknown as Record<typeof command, (...args: (string | number)[]) => Promise<T>>)[command](...args);
    return sent.catch((err: unknown) => {
      throw this.explain(err);
    });
  }

  /** A lost-connection error, with the connection error behind it when there is one. */
  private explain(err: unknown): unknown {
    const last = this.lastConnectionError;
    if (!last || !(err instanceof Error) || err.message.includes(last.message)) return err;
    if (err.name !== 'MaxRetriesPerRequestError' && !/Connection is closed|Too many Cluster redirections|None of startup nodes|Failed to refresh slots/.test(err.message)) return err;
    const explained = new Error(`${err.message} Last connection error: ${last.message}`, { cause: err });
    explained.name = err.name;
    return explained;
  }

  /** The Redis key of each limit of a scope, as the scripts see them (for tests and tools). */
  keysOf(resource: Resource, scope: string): string[] {
    return this.keys(this.plan(resource), scope);
  }

  private async settle(resource: Resource, scope: string, onceId: string, permitId: string, amounts: number[], takenAt: number): Promise<boolean> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    keys.push(`${this.prefix}:{${scope}}|once|${onceId}`);
    const applied = await this.call<number>('sluiceSettle', [keys.length, ...keys, ONCE_TTL_MS, permitId, ...plan.limitArgs, ...amounts, takenAt]);
    return applied === 1;
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

/** The head of acquire.lua's reply. */
function verdictOf(reply: number[]): StoreVerdict {
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

/**
 * The key of a limit names its algorithm (`sluice:{openai|acme}:rpm|tb`): a limit whose algorithm
 * changes under the same name starts on fresh keys instead of reading another algorithm's state
 * (WRONGTYPE, or fields it does not have), and the old keys expire with their TTL. `|` cannot
 * occur in a limit name, so the keys sluice adds never collide with a limit's own.
 */
const KEY_TAG = { token_bucket: '|tb', fixed_window: '|fw', sliding_window: '|sw', concurrency: '|cc' } as const;

function keySuffixes(limit: Limit): string[] {
  const key = `}:${limit.name}${KEY_TAG[limit.algorithm]}`;
  return limit.algorithm === 'concurrency' ? [key, `${key}|held`] : [key];
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
