// What Redis did: command counts from INFO commandstats (commands run inside Lua scripts count
// too), its clock, its version. Read on a client of its own, straight to Redis (never the proxy).
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

export interface CommandDelta {
  total: number;
  byCommand: CommandCalls;
}

export function commandsBetween(before: CommandCalls, after: CommandCalls): CommandDelta {
  const byCommand: CommandCalls = {};
  let total = 0;
  for (const [name, calls] of Object.entries(after)) {
    if (IGNORED.has(name)) continue;
    const delta = calls - (before[name] ?? 0);
    if (delta > 0) {
      byCommand[name] = delta;
      total += delta;
    }
  }
  return { total, byCommand };
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
