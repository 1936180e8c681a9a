// One scenario: warm a target up, then run the measured load between two snapshots of Redis's
// command counts and of the processes' CPU time.
import type { Redis } from 'ioredis';
import { runLoad, type LatencySummary, type Target } from './load.js';
import { cpuSeconds, ownCpuSeconds, rssMb } from './process-stats.js';
import { commandCalls, commandsBetween, type CommandCalls } from './redis-stats.js';

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
  redisCommands: { total: number; perDecision: number; perDecisionByCommand: CommandCalls };
  /** The server process (floor or sidecar): CPU seconds over the measured run, RSS after it. */
  server: { cpuS: number; rssMb: number } | null;
  loadGeneratorCpuS: number;
  redisCpuS: number;
  proxyCpuS: number | null;
  decidedBy: Record<string, number>;
}

const round = (x: number, places = 3) => Math.round(x * 10 ** places) / 10 ** places;

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

  const perDecision = (n: number) => (load.decisions > 0 ? round(n / load.decisions, 4) : NaN);
  const perDecisionByCommand: CommandCalls = {};
  for (const [command, n] of Object.entries(calls.byCommand)) perDecisionByCommand[command] = perDecision(n);
  return {
    name,
    system: spec.system,
    api: spec.api,
    redisDelayMs: probes.redisDelayMs,
    ...load,
    decisionsPerS: round(load.decisionsPerS, 1),
    elapsedS: round(load.elapsedS),
    latencyUs: mapValues(load.latencyUs, (x) => round(x, 1)),
    redisCommands: { total: calls.total, perDecision: perDecision(calls.total), perDecisionByCommand },
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
