// One measured run of one cell (a system, an API, a number of requests in flight) in one round:
// warm the target up, then run the measured load between two snapshots of Redis's command counts
// and of the processes' CPU time.
import type { Redis } from 'ioredis';
import { runLoad, type LatencySummary, type Target } from './load.js';
import { cpuSeconds, ownCpuSeconds, rssMb } from './process-stats.js';
import { commandCalls, commandsBetween, type CommandCalls, type CommandDelta } from './redis-stats.js';
import { roundTo } from './stats.js';

export type Api = 'unary' | 'stream' | 'in-process';

/** What is compared across rounds: one system, one API, one number of requests in flight. */
export interface Cell {
  /** e.g. "sluice-lease", "floor", "rate-limiter-flexible". */
  system: string;
  api: Api;
  inFlight: number;
}

export interface ScenarioSpec extends Cell {
  target: Target;
  /** The server process under test (the floor or a sidecar); none for in-process peers. */
  serverPid?: number;
}

/** Where a system's Redis work is read: its own redis-server, so no other system's calls count. */
export interface Probes {
  /** A client straight to that Redis, for INFO only; none for systems without Redis. */
  stats?: Redis;
  redisPid?: number;
  proxyPid?: number;
  redisDelayMs: number;
}

/** How long each measured run lasts, after its own warm-up. */
export interface Timing {
  durationMs: number;
  warmupMs: number;
}

export interface ScenarioResult extends Cell {
  /** e.g. "sluice-lease unary", "rate-limiter-flexible". */
  name: string;
  /** The round this run belongs to (0-based): ratios pair runs of the same round. */
  round: number;
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
  redisCpuS: number | null;
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

/** The figures for `delta` over `decisions` answers of which `granted` were grants. */
export function commandFigures(delta: CommandDelta, decisions: number, granted: number): RedisCommandFigures {
  const per = (n: number, d: number) => (d > 0 ? roundTo(n / d, 6) : NaN);
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

/** The name a cell is printed with. */
export function scenarioName(cell: Cell): string {
  return cell.api === 'in-process' ? cell.system : `${cell.system} ${cell.api}`;
}

export async function measureScenario(spec: ScenarioSpec, probes: Probes, timing: Timing, round: number): Promise<ScenarioResult> {
  const { target, inFlight } = spec;
  await runLoad(target, { concurrency: inFlight, durationMs: timing.warmupMs });
  for (const key of Object.keys(target.decidedBy)) delete target.decidedBy[key];

  const cpu = () => ({
    server: spec.serverPid ? cpuSeconds(spec.serverPid) : NaN,
    redis: probes.redisPid ? cpuSeconds(probes.redisPid) : NaN,
    proxy: probes.proxyPid ? cpuSeconds(probes.proxyPid) : NaN,
    own: ownCpuSeconds(),
  });
  const commands = () => (probes.stats ? commandCalls(probes.stats) : Promise.resolve({}));
  const callsBefore = await commands();
  const cpuBefore = cpu();
  const load = await runLoad(target, { concurrency: inFlight, durationMs: timing.durationMs });
  const cpuAfter = cpu();
  const calls = commandsBetween(callsBefore, await commands());

  return {
    name: scenarioName(spec),
    system: spec.system,
    api: spec.api,
    inFlight,
    round,
    redisDelayMs: probes.redisDelayMs,
    ...load,
    decisionsPerS: roundTo(load.decisionsPerS, 1),
    elapsedS: roundTo(load.elapsedS),
    latencyUs: mapValues(load.latencyUs, (x) => roundTo(x, 1)),
    redisCommands: commandFigures(calls, load.decisions, load.granted),
    server: spec.serverPid ? { cpuS: roundTo(cpuAfter.server - cpuBefore.server, 2), rssMb: roundTo(rssMb(spec.serverPid), 1) } : null,
    loadGeneratorCpuS: roundTo(cpuAfter.own - cpuBefore.own, 2),
    redisCpuS: probes.redisPid ? roundTo(cpuAfter.redis - cpuBefore.redis, 2) : null,
    proxyCpuS: probes.proxyPid ? roundTo(cpuAfter.proxy - cpuBefore.proxy, 2) : null,
    decidedBy: { ...target.decidedBy },
  };
}

function mapValues<T extends object>(obj: T, fn: (x: number) => number): T {
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, fn(v as number)])) as T;
}
