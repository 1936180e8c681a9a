// What Redis did: command counts from INFO commandstats (commands run inside Lua scripts count
// too), split into the calls clients made and all commands run; its clock, its version. Read on a
// client of its own, straight to Redis (never the proxy).
import type { Redis } from 'ioredis';

/** Calls per command so far, e.g. { evalsha: 120, time: 120, hset: 120 }. */
export type CommandCalls = Record<string, number>;

/** Not decisions: the stats client's INFO, and what ioredis sends when a client connects. */
const IGNORED = new Set(['info', 'client|setname', 'client|setinfo', 'hello', 'select']);

export async function commandCalls(client: Redis): Promise<CommandCalls> {
  const text = await client.info('commandstats');
  const calls: CommandCalls = {};
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[match[1]!] = Number(match[2]);
  return calls;
}

/**
 * Commands that are always a client's own call, never run from inside a script: the script entry
 * points (a script cannot call EVAL/EVALSHA/FCALL), commands Redis refuses in scripts, and PING,
 * which no script measured here runs (sluice's probe sends it). INFO commandstats cannot tell where
 * any other command came from; every other command is counted as run by a script. That is exact
 * for sluice and rate-limiter-flexible, whose clients send nothing but EVALSHA (EVAL once, to
 * load a script) and PING; Bottleneck's client also PUBLISHes now and then (its scripts do too),
 * counted as script work.
 */
const CLIENT_CALLS = new Set([
  'eval',
  'evalsha',
  'eval_ro',
  'evalsha_ro',
  'fcall',
  'fcall_ro',
  'ping',
  'multi',
  'exec',
  'discard',
  'watch',
  'unwatch',
  'subscribe',
  'unsubscribe',
  'psubscribe',
  'punsubscribe',
  'quit',
]);

function isClientCall(command: string): boolean {
  return CLIENT_CALLS.has(command) || command.startsWith('script|') || command.startsWith('function|');
}

export interface CommandDelta {
  /** Every command Redis ran, those run inside scripts included. */
  total: number;
  /** Top-level calls: what clients sent (script calls and the commands in CLIENT_CALLS). */
  calls: number;
  byCommand: CommandCalls;
}

export function commandsBetween(before: CommandCalls, after: CommandCalls): CommandDelta {
  const byCommand: CommandCalls = {};
  let total = 0;
  let clientCalls = 0;
  for (const [name, calls] of Object.entries(after)) {
    if (IGNORED.has(name)) continue;
    const delta = calls - (before[name] ?? 0);
    if (delta > 0) {
      byCommand[name] = delta;
      total += delta;
      if (isClientCall(name)) clientCalls += delta;
    }
  }
  return { total, calls: clientCalls, byCommand };
}

/** Redis's clock, in milliseconds. */
export async function redisTimeMs(client: Redis): Promise<number> {
  const [seconds, micros] = await client.time();
  return Number(seconds) * 1000 + Number(micros) / 1000;
}

export async function redisVersion(client: Redis): Promise<string> {
  const text = await client.info('server');
  return /^redis_version:(\S+)/m.exec(text)?.[1] ?? 'unknown';
}
