// One scenario: warm a target up, then run the measured load between two snapshots of Redis's
// command counts and of the processes' CPU time.
import type { Redis } from 'ioredis';
import { runLoad, type LatencySummary, type Target } from './load.js';
import { cpuSeconds, ownCpuSeconds, rssMb } from './process-stats.js';
import { commandCalls, commandsBetween, type CommandCalls, type CommandDelta } from './redis-stats.js';

export type Api = 'unary' | 'stream' | 'in-process';

export interface ScenarioSpec {
  /** e.g. "sluice-lease", "floor", "rate-limiter-flexible". */
  system: string;
  api: Api;
  target: Target;
  /** The server process under test (the floor or a sidecar); none for in-process peers. */
  serverPid?: number;
}

export interface Probes {
  /** A client straight to Redis, for INFO only. */
  stats: Redis;
  redisPid: number;
  proxyPid?: number;
  redisDelayMs: number;
}

export interface LoadShape {
  concurrency: number;
  durationMs: number;
  warmupMs: number;
}

export interface ScenarioResult {
  name: string;
  system: string;
  api: Api;
  redisDelayMs: number;
  decisions: number;
  granted: number;
  denied: number;
  failed: number;
  unfinished: number;
  elapsedS: number;
  decisionsPerS: number;
  latencyUs: LatencySummary;
  redisCommands: RedisCommandFigures;
  /** The server process (floor or sidecar): CPU seconds over the measured run, RSS after it. */
  server: { cpuS: number; rssMb: number } | null;
  loadGeneratorCpuS: number;
  redisCpuS: number;
  proxyCpuS: number | null;
  decidedBy: Record<string, number>;
}

/**
 * Redis work per decision, from INFO commandstats. `calls` are the top-level calls clients sent
 * (EVALSHA/EVAL and other client commands); `total` is every command Redis ran, those run inside
 * scripts included. Per grant divides by granted decisions only.
 */
export interface RedisCommandFigures {
  total: number;
  calls: number;
  perDecision: number;
  callsPerDecision: number;
  perGrant: number;
  callsPerGrant: number;
  perDecisionByCommand: CommandCalls;
}

const round = (x: number, places = 3) => Math.round(x * 10 ** places) / 10 ** places;

/** The figures for `delta` over `decisions` answers of which `granted` were grants. */
export function commandFigures(delta: CommandDelta, decisions: number, granted: number): RedisCommandFigures {
  const per = (n: number, d: number) => (d > 0 ? round(n / d, 6) : NaN);
  const perDecisionByCommand: CommandCalls = {};
  for (const [command, n] of Object.entries(delta.byCommand)) perDecisionByCommand[command] = per(n, decisions);
  return {
    total: delta.total,
    calls: delta.calls,
    perDecision: per(delta.total, decisions),
    callsPerDecision: per(delta.calls, decisions),
    perGrant: per(delta.total, granted),
    callsPerGrant: per(delta.calls, granted),
    perDecisionByCommand,
  };
}

export async function measureScenario(spec: ScenarioSpec, probes: Probes, shape: LoadShape): Promise<ScenarioResult> {
  const name = spec.api === 'in-process' ? spec.system : `${spec.system} ${spec.api}`;
  await runLoad(spec.target, { concurrency: shape.concurrency, durationMs: shape.warmupMs });
  for (const key of Object.keys(spec.target.decidedBy)) delete spec.target.decidedBy[key];

  const cpu = () => ({
    server: spec.serverPid ? cpuSeconds(spec.serverPid) : NaN,
    redis: cpuSeconds(probes.redisPid),
    proxy: probes.proxyPid ? cpuSeconds(probes.proxyPid) : NaN,
    own: ownCpuSeconds(),
  });
  const callsBefore = await commandCalls(probes.stats);
  const cpuBefore = cpu();
  const load = await runLoad(spec.target, { concurrency: shape.concurrency, durationMs: shape.durationMs });
  const cpuAfter = cpu();
  const calls = commandsBetween(callsBefore, await commandCalls(probes.stats));

  return {
    name,
    system: spec.system,
    api: spec.api,
    redisDelayMs: probes.redisDelayMs,
    ...load,
    decisionsPerS: round(load.decisionsPerS, 1),
    elapsedS: round(load.elapsedS),
    latencyUs: mapValues(load.latencyUs, (x) => round(x, 1)),
    redisCommands: commandFigures(calls, load.decisions, load.granted),
    server: spec.serverPid ? { cpuS: round(cpuAfter.server - cpuBefore.server, 2), rssMb: round(rssMb(spec.serverPid), 1) } : null,
    loadGeneratorCpuS: round(cpuAfter.own - cpuBefore.own, 2),
    redisCpuS: round(cpuAfter.redis - cpuBefore.redis, 2),
    proxyCpuS: probes.proxyPid ? round(cpuAfter.proxy - cpuBefore.proxy, 2) : null,
    decidedBy: { ...spec.target.decidedBy },
  };
}

function mapValues<T extends object>(obj: T, fn: (x: number) => number): T {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, fn(v as number)])) as T;
}
