// Budgets in Redis, shared by every sidecar on it. One script call per decision, atomic over all
// of a resource's limits: the keys of one scope share a hash tag, so they sit in one Cluster slot.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, type RedisOptions } from 'ioredis';
import { costFor, type Limit, type RedisConfig, type Resource } from '../../config/policy.js';
import { algorithmOf, holdsSlots } from '../../limits/registry.js';
import { luaDir } from '../../paths.js';
import { ScriptBatcher } from './batcher.js';
import { closeRedis, connectionFromUrl, connectRedis, type RedisClient, type RedisConnection } from './connect.js';
import { lateAnswer, Watchdog, type Outstanding } from './watchdog.js';
import {
  ONCE_TTL_MS,
  ScriptError,
  StoreError,
  StoreTimeout,
  type Grant,
  type LineEvents,
  type LineState,
  type LineVerdict,
  type ScopeLook,
  type Store,
  type StoreVerdict,
  type TakeVerdict,
  type Ticket,
} from '../store.js';

/** What a resource's limits contribute to every script call, computed once per resource. */
interface ScriptPlan {
  /** Appended to `<prefix>:{<scope>` to make each key: the limits' keys, then the line's. */
  keySuffixes: string[];
  /** n, then four values per limit: the ARGV after cost, usable and permit id. */
  limitArgs: (string | number)[];
  /** Each lane's share (serve.lua), when the resource has more than one lane. */
  laneShares: readonly number[];
}

const SCRIPTS = {
  sluiceAcquire: 'acquire.lua',
  sluiceWait: 'wait.lua',
  sluiceSettle: 'settle.lua',
  sluiceInspect: 'inspect.lua',
  sluiceHeartbeat: 'heartbeat.lua',
} as const;
/** What each script is loaded after, in order: the parts it shares with others (Redis has no include). */
const PARTS: Readonly<Record<string, readonly string[]>> = {
  'acquire.lua': ['prelude.lua', 'limits.lua', 'line.lua', 'serve.lua'],
  'wait.lua': ['prelude.lua', 'limits.lua', 'line.lua', 'serve.lua'],
  'settle.lua': ['prelude.lua', 'line.lua'],
  'inspect.lua': ['prelude.lua', 'limits.lua', 'line.lua'],
};

/** A script's text as Redis runs it (and hashes it): its parts, then its file. */
/** A script's text: its parts, after the store's settings it reads (prelude.lua names them). */
function scriptText(file: string, expiryJitterMs: number): string {
  const settings = `local EXPIRY_JITTER_MS = ${expiryJitterMs}\n`;
  return settings + [...(PARTS[file] ?? []), file].map((part) => readFileSync(join(luaDir, part), 'utf8')).join('\n');
}

/** wait.lua's states, by number. */
const LINE_STATES: readonly LineState[] = ['waiting', 'granted', 'full', 'never', 'gone'];

/** Options every form takes: `redis` adds ioredis options (tests shorten timeouts with it). */
interface Tuning {
  redis?: RedisOptions;
  /** How long Redis may stay silent towards a command before it fails with StoreTimeout. Default 1 s. */
  timeoutMs?: number;
  /** A window key's expiry is its window's end plus up to this much. Default 0. */
  expiryJitterMs?: number;
}

/** The compiled store.redis, or (for tests and tools) a plain redis:// or rediss:// url and a prefix. */
export type RedisStoreOptions = (RedisConfig & Tuning) | ({ url?: string | undefined; prefix: string } & Tuning);

/**
 * A command Redis is visibly working through (replies to the commands ahead of it keep coming)
 * may wait this many deadlines before it fails anyway: the store is then too slow to be useful.
 */
export const PATIENCE = 10;

/**
 * A command failed for silence is still waited for (its late answer reconciles what was decided
 * without it) until this many deadlines after it was written, and at least GIVE_UP_MIN_MS.
 */
export const GIVE_UP = 20;
export const GIVE_UP_MIN_MS = 1_000;

/** The scope of the probe: no resource's scope starts with `|`. */
const PROBE_SCOPE = '|probe';

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
  private readonly watchdog: Watchdog;
  private readonly probe: Resource;
  /** A sidecar's tickets are told of on `<channels><sidecar id>` (line.lua). */
  private readonly channels: string;
  /** The connection that hears about lines, once listen() is called. */
  private subscriber: RedisClient | null = null;

  constructor(options: RedisStoreOptions) {
    this.prefix = options.prefix;
    this.channels = `${options.prefix}:line:`;
    let connection: RedisConnection;
    if ('topology' in options) connection = options;
    else if (options.url !== undefined) connection = connectionFromUrl(options.url);
    else throw new Error('RedisStore: no url; a Sentinel or Cluster store needs the whole store.redis config (policy.store.redis)');
    this.client = connectRedis(connection, options.redis);
    // ioredis sends EVALSHA and falls back to EVAL (which loads the script) on NOSCRIPT; on a
    // Cluster it does so on whichever node serves the keys' slot.
    for (const [name, file] of Object.entries(SCRIPTS)) this.client.defineCommand(name, { lua: scriptText(file, options.expiryJitterMs ?? 0) });
    const timeoutMs = options.timeoutMs ?? 1_000;
    this.watchdog = new Watchdog({
      timeoutMs,
      patienceMs: PATIENCE * timeoutMs,
      giveUpMs: Math.max(GIVE_UP_MIN_MS, GIVE_UP * timeoutMs),
      // One connection answers in order; a Cluster's nodes answer each for itself.
      fifo: !(this.client instanceof Cluster),
      explain: () => (this.lastConnectionError ? `; last connection error: ${this.lastConnectionError.message}` : ''),
    });
    this.batcher = this.client instanceof Cluster ? null : new ScriptBatcher(this.client, this.watchdog);
    this.probe = probeResource();
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

  acquire(resource: Resource, scope: string, cost: number, permitId: string, usable = 1, priority = 0): Promise<StoreVerdict> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    return this.call<number[]>('sluiceAcquire', [keys.length, ...keys, cost, usable, permitId, ...plan.limitArgs, priority, this.channels, ...plan.laneShares]).then(
      verdictOf,
      lateVerdict,
    );
  }

  take(resource: Resource, scope: string, cost: number, want: readonly number[], aheadMs: number, usable = 1): Promise<TakeVerdict> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    const args = [keys.length, ...keys, cost, usable, '', ...plan.limitArgs, 0, this.channels, ...plan.laneShares, ...want, aheadMs];
    return this.call<number[]>('sluiceAcquire', args).then(takeVerdictOf, lateTakeVerdict);
  }

  join(resource: Resource, scope: string, ticket: Ticket, maxWaiters: number): Promise<LineVerdict> {
    const spec = `${ticket.id}|${ticket.priority}|${ticket.cost}|${ticket.usable}|${ticket.lane}|${ticket.permitId}`;
    return this.line(resource, scope, 'join', spec, Math.ceil(ticket.waitMs), maxWaiters);
  }

  retry(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return this.line(resource, scope, 'try', ticket, 0, 0);
  }

  leave(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return this.line(resource, scope, 'leave', ticket, 0, 0);
  }

  inspect(resource: Resource, scope: string): Promise<ScopeLook> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    return this.call<number[]>('sluiceInspect', [keys.length, ...keys, '', '', '', ...plan.limitArgs]).then(scopeLookOf);
  }

  /**
   * Hears this sidecar's channel and the channel of lines that form, on a connection of its own
   * (a subscribed connection can do nothing else). Redis keeps no message for a connection that
   * is away: when it is back, `resync` says so, and the sidecar asks about its tickets again.
   */
  listen(sidecarId: string, events: LineEvents): void {
    const subscriber = this.client.duplicate();
    this.subscriber = subscriber;
    const own = this.channels + sidecarId;
    const formed = `${this.channels}formed`;
    subscriber.on('error', () => undefined); // the main connection reports; this one reconnects
    let connected = false;
    subscriber.on('ready', () => {
      if (connected) events.resync();
      connected = true;
    });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === formed) events.formed(message);
      else if (channel === own) heard(message, events);
    });
    subscriber.subscribe(own, formed).catch(() => undefined);
  }

  private line(resource: Resource, scope: string, op: string, ticket: string, waitMs: number, maxWaiters: number): Promise<LineVerdict> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    const args = [keys.length, ...keys, op, ticket, waitMs, ...plan.limitArgs, maxWaiters, this.channels, scope, ...plan.laneShares];
    return this.call<(number | string)[]>('sluiceWait', args).then(lineVerdictOf, lateLineVerdict);
  }

  async release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    const amounts = resource.limits.map((limit) => (holdsSlots(limit) ? costFor(limit, grant.cost) : limit.countsRequests ? 0 : delta));
    await this.settle(resource, scope, grant.permitId, grant.permitId, amounts, grant.grantedAt);
  }

  async refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    const amounts = resource.limits.map((limit, i) => (holdsSlots(limit) ? 0 : -(units[i] ?? 0)));
    return this.settle(resource, scope, refundId, '', amounts, takenAt);
  }

  async heartbeat(sidecarId: string, ttlMs: number): Promise<number> {
    return this.call<number>('sluiceHeartbeat', [1, `${this.prefix}:{sidecars}`, sidecarId, ttlMs]);
  }

  /**
   * Runs the decision script on a probe key: answers only when decisions can be made, so a user
   * without key access (NOPERM), a full Redis (OOM) or a replica (READONLY) fail it, not just a
   * dead connection.
   */
  async ping(): Promise<void> {
    await this.acquire(this.probe, PROBE_SCOPE, 1, '');
  }

  async close(): Promise<void> {
    if (this.subscriber) await closeRedis(this.subscriber);
    await closeRedis(this.client);
  }

  private call<T>(command: keyof typeof SCRIPTS, args: (string | number)[]): Promise<T> {
    const sent = this.batcher ? this.batcher.call<T>(command, args) : this.callAlone<T>(command, args);
    return sent.catch(this.explained);
  }

  private readonly explained = (err: unknown): never => {
    throw this.explain(err);
  };

  /** On a Cluster: one command, routed by its keys, under the watchdog by itself. */
  private callAlone<T>(command: keyof typeof SCRIPTS, args: (string | number)[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Outstanding = { sentAt: performance.now(), settled: false, late: null, reject };
      (this.client as unknown as Record<typeof command, (...args: (string | number)[]) => Promise<T>>)[command](...args).then(
        (value) => {
          if (!entry.settled) resolve(value);
          else lateAnswer(entry, null, value);
          entry.settled = true;
        },
        (err: unknown) => {
          if (!entry.settled) reject(err);
          else lateAnswer(entry, err, undefined);
          entry.settled = true;
        },
      );
      this.watchdog.sent(entry);
    });
  }

  /**
   * The error a caller should see, always a StoreError (whatever Redis or the connection said is
   * a store failure): a script's own failure as ScriptError; a lost connection with the
   * connection error behind it when there is one.
   */
  private explain(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    if (!(err instanceof Error)) return new StoreError(String(err), { cause: err });
    if (isScriptError(err)) return new ScriptError(err.message, { cause: err });
    const last = this.lastConnectionError;
    const lost = err.name === 'MaxRetriesPerRequestError' || /Connection is closed|Too many Cluster redirections|None of startup nodes|Failed to refresh slots/.test(err.message);
    if (!last || !lost || err.message.includes(last.message)) return new StoreError(err.message, { cause: err });
    return new StoreError(`${err.message}; last connection error: ${last.message}`, { cause: err });
  }

  /** The Redis key of each limit of a scope, as the scripts see them (for tests and tools). */
  keysOf(resource: Resource, scope: string): string[] {
    return this.keys(this.plan(resource), scope).slice(0, -lineSuffixes(resource).length);
  }

  /** The keys of a scope's waiting line (line.lua), for tests and tools. */
  lineKeysOf(resource: Resource, scope: string): string[] {
    return this.keys(this.plan(resource), scope).slice(-lineSuffixes(resource).length);
  }

  private async settle(resource: Resource, scope: string, onceId: string, permitId: string, amounts: number[], takenAt: number): Promise<boolean> {
    const plan = this.plan(resource);
    const keys = this.keys(plan, scope);
    keys.push(`${this.prefix}:{${scope}}|once|${onceId}`);
    const applied = await this.call<number>('sluiceSettle', [keys.length, ...keys, ONCE_TTL_MS, permitId, ...plan.limitArgs, ...amounts, takenAt, this.channels]);
    return applied === 1;
  }

  private keys(plan: ScriptPlan, scope: string): string[] {
    const head = `${this.prefix}:{${scope}`;
    return plan.keySuffixes.map((suffix) => head + suffix);
  }

  private plan(resource: Resource): ScriptPlan {
    let plan = this.plans.get(resource);
    if (!plan) {
      plan = {
        keySuffixes: [...resource.limits.flatMap(keySuffixes), ...lineSuffixes(resource)],
        limitArgs: [resource.limits.length, ...resource.limits.flatMap(limitArgs)],
        laneShares: resource.lanes.length > 1 ? resource.laneShares : [],
      };
      this.plans.set(resource, plan);
    }
    return plan;
  }
}

/**
 * An error a script raised over what one call gave it or met (ERR, WRONGTYPE), as opposed to the
 * store refusing work (NOPERM, OOM, READONLY, BUSY, LOADING, ... keep their own codes).
 */
function isScriptError(err: Error): boolean {
  return err.name === 'ReplyError' && /^(ERR|WRONGTYPE) /.test(err.message) && err.message.includes('script:');
}

/** A resource nobody can name (see PROBE_SCOPE): one limit that never denies and keeps its key a few ms. */
function probeResource(): Resource {
  return {
    name: '|probe',
    keys: [],
    onStoreFailure: 'open',
    limits: [{ name: 'probe', algorithm: 'token_bucket', capacity: 1_000, intervalMs: 1, countsRequests: true }],
    permitTtlMs: 0,
    lease: { enabled: false, maxFraction: 0.1, ttlMs: 1_000 },
    leasable: false,
    reserve: [],
    usableBelow: [],
    maxWaiters: 0,
    lanes: [],
    laneShares: [],
  };
}

/** A timeout whose late answer is read as `read` reads a timely one. */
function lateAs(read: (reply: number[]) => unknown): (err: unknown) => never {
  return (err) => {
    throw err instanceof StoreTimeout ? err.map((reply) => read(reply as number[])) : err;
  };
}
const lateVerdict = lateAs(verdictOf);
const lateTakeVerdict = lateAs(takeVerdictOf);
const lateLineVerdict = lateAs(lineVerdictOf as (reply: unknown[]) => unknown);

/** acquire.lua's whole reply, for a lease's take. */
function takeVerdictOf(reply: number[]): TakeVerdict {
  const taken: number[] = [];
  const left: number[] = [];
  const dueInMs: number[] = [];
  for (let i = 9; i < reply.length; i += 3) {
    taken.push(reply[i]!);
    left.push(reply[i + 1]!);
    // Whole microseconds, rounded up by the script: a unit is never taken to be due sooner.
    dueInMs.push(reply[i + 2]! / 1_000);
  }
  const windowEnds = reply[6]!;
  return { ...verdictOf(reply), taken, left, dueInMs, windowEndsInMs: windowEnds < 0 ? Number.POSITIVE_INFINITY : windowEnds };
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
    reserved: reply[7] === 1,
    waiting: reply[8]!,
  };
}

/** inspect.lua's reply. */
function scopeLookOf(reply: number[]): ScopeLook {
  const limits = [];
  for (let i = 2; i < reply.length; i += 2) limits.push({ remaining: reply[i]!, resetAfterMs: reply[i + 1]! });
  return { limits, waiting: reply[1]! };
}

/** wait.lua's reply. */
function lineVerdictOf(reply: (number | string)[]): LineVerdict {
  const [state, decider, remaining, retry, reset, now, reserved, turn, ticket, waiting] = reply as [number, number, number, number, number, number, number, number, string, number];
  return {
    state: LINE_STATES[state]!,
    granted: state === 1,
    decider: Math.max(0, decider - 1),
    remaining,
    retryAfterMs: retry < 0 ? Number.POSITIVE_INFINITY : retry,
    resetAfterMs: reset,
    now,
    reserved: reserved === 1,
    turnInMs: turn < 0 ? Number.POSITIVE_INFINITY : turn,
    ticket,
    waiting,
  };
}

/** A message on a sidecar's own channel (line.lua says what each means). */
function heard(message: string, events: LineEvents): void {
  const parts = message.split('|');
  const id = parts[1] ?? '';
  switch (parts[0]) {
    case 's':
    case 'n': {
      const [, , decider, remaining, retry, reset, now, reserved] = parts.map(Number);
      events.answered(id, {
        granted: parts[0] === 's',
        decider: decider! - 1,
        remaining: remaining!,
        retryAfterMs: retry! < 0 ? Number.POSITIVE_INFINITY : retry!,
        resetAfterMs: reset!,
        now: now!,
        reserved: reserved === 1,
      });
      return;
    }
    case 't':
      events.turn(id, Number(parts[2]));
      return;
    case 'w':
      events.wake(id);
  }
}

/**
 * The keys of a limit name its algorithm (`sluice:{openai|acme}:rpm|tb`): a limit whose algorithm
 * changes under the same name starts on fresh keys instead of reading another algorithm's state
 * (WRONGTYPE, or fields it does not have), and the old keys expire with their TTL. `|` cannot
 * occur in a limit name, so the keys sluice adds never collide with a limit's own.
 */
function keySuffixes(limit: Limit): string[] {
  return algorithmOf(limit).redis.keys.map((suffix) => `}:${limit.name}${suffix}`);
}

/** The line's keys (line.lua): `}|wait|...` never collides with a limit's `}:<name>...`. */
function lineSuffixes(resource: Resource): string[] {
  const lines = Array.from({ length: Math.max(1, resource.lanes.length) }, (_, l) => `}|wait|line|${l + 1}`);
  return ['}|wait|due', '}|wait|served', '}|wait|lanes', ...lines];
}

/** algorithm, a, b, per_request: see the ARGV contract in acquire.lua. */
function limitArgs(limit: Limit): (string | number)[] {
  const { code, args } = algorithmOf(limit).redis;
  return [code, ...args(limit), limit.countsRequests ? 1 : 0];
}
