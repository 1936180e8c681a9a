// One pass of the load comparison at one Redis delay. Every system is started once and kept
// running for the whole pass, each on a redis-server of its own (so one system's Redis calls, or an
// idle sidecar's heartbeats, never count for another). Then a warm-up round and N measured rounds;
// a round runs every cell once (the floor and the systems compared with it side by side, per API
// and requests in flight), and odd rounds run the same sequence backwards.
import { startRedis } from '../test/support/redis-server.js';
import { adopt, startFloorProcess, startProxyProcess, startSluiceProcess } from './children.js';
import { streamTarget, unaryTarget } from './grpc-load.js';
import { runLoad } from './load.js';
import { runOutage, type OutageResult } from './outage.js';
import { bottleneckTarget, rateLimiterFlexibleTarget } from './peers.js';
import { HOT_REQUEST, loadPolicy, type SluiceMode } from './policies.js';
import { sameCell } from './ratios.js';
import { measureScenario, scenarioName, type Probes, type ScenarioResult, type ScenarioSpec, type Timing } from './scenario.js';
import { roundOrder } from './stats.js';

/** What a pass can compare with the floor, in the order a round runs them. */
export const SYSTEMS = ['sluice-memory', 'sluice-redis', 'sluice-lease', 'rate-limiter-flexible', 'bottleneck'] as const;
export type System = (typeof SYSTEMS)[number];

export interface PassOptions {
  redisDelayMs: number;
  rounds: number;
  timing: Timing;
  /** Unary and peer cells run at each; streams at the largest. */
  inFlight: number[];
  channels: number;
  systems: readonly System[];
  /** The measured rounds; false for the outage scenario alone. */
  load: boolean;
  /** The outage scenario, its dead stretch interleaved with this pass's unary floor. */
  outage: boolean;
}

export interface Pass {
  redisDelayMs: number;
  rounds: number;
  /** Every measured run, all rounds. */
  runs: ScenarioResult[];
  outage: OutageResult | null;
  /** What could not be measured (a sidecar that would not start, a run that failed): the rest still is. */
  errors: { system: string; error: string }[];
}

interface Contender {
  specs: ScenarioSpec[];
  probes: Probes;
  stop(): Promise<void>;
}

export async function runPass(options: PassOptions, log: (line: string) => void): Promise<Pass> {
  const { redisDelayMs, timing } = options;
  const errors: Pass['errors'] = [];
  const failed = (system: string, err: unknown) => {
    const error = (err as Error).message ?? String(err);
    errors.push({ system, error });
    log(`  ${system} failed: ${error.split('\n')[0]}`);
  };
  const contenders: Contender[] = [];
  try {
    for (const system of ['floor', ...options.systems] as const) {
      try {
        contenders.push(await startContender(system, options));
      } catch (err) {
        failed(system, err);
      }
    }
    const sequence = runSequence(contenders);
    const runs: ScenarioResult[] = [];
    const measure = async ({ spec, probes }: Step, round: number): Promise<ScenarioResult | null> => {
      try {
        const run = await measureScenario(spec, probes, timing, round);
        log(`  round ${round + 1}: ${describe(run)}`);
        return run;
      } catch (err) {
        failed(`${scenarioName(spec)} @${spec.inFlight}, round ${round + 1}`, err);
        return null;
      }
    };

    if (options.load) {
      // JIT, connections, leases: every cell once, unmeasured, before the first round.
      for (const { spec } of sequence) await runLoad(spec.target, { concurrency: spec.inFlight, durationMs: 2 * timing.warmupMs });
      for (let round = 0; round < options.rounds; round++) {
        for (const step of roundOrder(sequence, round)) {
          const run = await measure(step, round);
          if (run) runs.push(run);
        }
      }
    }

    let outage: OutageResult | null = null;
    if (options.outage) {
      const inFlight = Math.max(...options.inFlight);
      const floorStep = sequence.find((s) => sameCell(s.spec, { system: 'floor', api: 'unary', inFlight }));
      const measureFloor = async (round: number) => {
        const run = floorStep && (await measure(floorStep, round));
        if (!run) throw new Error('the floor could not be measured');
        return run;
      };
      try {
        outage = await runOutage({ timing, rounds: options.rounds, inFlight, channels: options.channels, floor: floorStep ? measureFloor : null }, log);
      } catch (err) {
        failed('sluice-outage', err);
      }
    }
    return { redisDelayMs, rounds: options.rounds, runs, outage, errors };
  } finally {
    for (const c of contenders.reverse()) await c.stop();
  }
}

interface Step {
  spec: ScenarioSpec;
  probes: Probes;
}

/** A round's cells: per number in flight the unary and peer cells, then the streams; floor first. */
function runSequence(contenders: readonly Contender[]): Step[] {
  const all = contenders.flatMap((c) => c.specs.map((spec) => ({ spec, probes: c.probes })));
  const levels = [...new Set(all.map((s) => s.spec.inFlight))].sort((a, b) => a - b);
  return [
    ...levels.flatMap((level) => all.filter((s) => s.spec.api !== 'stream' && s.spec.inFlight === level)),
    ...all.filter((s) => s.spec.api === 'stream'),
  ];
}

/**
 * Starts a system with what it needs (its own redis-server, behind its own delay proxy in a
 * delayed pass) and its load targets, kept for the whole pass; stop() ends them all.
 */
async function startContender(system: 'floor' | System, options: PassOptions): Promise<Contender> {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const { redisDelayMs, channels } = options;
    const mostInFlight = Math.max(...options.inFlight);
    let probes: Probes = { redisDelayMs };
    let redisUrl = '';
    if (system !== 'floor' && system !== 'sluice-memory') {
      const redis = await startRedis();
      adopt(redis.child);
      stops.push(() => redis.stop());
      const proxy = redisDelayMs > 0 ? await startProxyProcess(redis.port, redisDelayMs) : null;
      if (proxy) stops.push(() => proxy.stop());
      redisUrl = proxy ? `redis://${proxy.address}` : redis.url;
      probes = { stats: redis.client, redisPid: redis.child.pid!, proxyPid: proxy?.pid, redisDelayMs };
    }

    if (system === 'rate-limiter-flexible' || system === 'bottleneck') {
      const target = await (system === 'bottleneck' ? bottleneckTarget : rateLimiterFlexibleTarget)(redisUrl, mostInFlight);
      stops.push(() => target.close());
      return { probes, stop, specs: options.inFlight.map((inFlight) => ({ system, api: 'in-process', inFlight, target })) };
    }

    const server =
      system === 'floor' ? await startFloorProcess() : await startSluiceProcess(system, loadPolicy(MODES[system], redisUrl));
    stops.push(() => server.stop());
    const unary = await unaryTarget(server.address, channels, HOT_REQUEST);
    stops.push(() => unary.close());
    const stream = await streamTarget(server.address, channels, HOT_REQUEST, mostInFlight);
    stops.push(() => stream.close());
    const serverPid = server.pid;
    return {
      probes,
      stop,
      specs: [
        ...options.inFlight.map((inFlight): ScenarioSpec => ({ system, api: 'unary', inFlight, target: unary, serverPid })),
        { system, api: 'stream', inFlight: mostInFlight, target: stream, serverPid },
      ],
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const MODES: Record<'sluice-memory' | 'sluice-redis' | 'sluice-lease', SluiceMode> = {
  'sluice-memory': 'memory',
  'sluice-redis': 'redis',
  'sluice-lease': 'lease',
};

function describe(r: ScenarioResult): string {
  const fails = r.failed + r.unfinished;
  return (
    `${r.name} @${r.inFlight}: ${Math.round(r.decisionsPerS)}/s, p50 ${Math.round(r.latencyUs.p50)} µs, ` +
    `p99 ${Math.round(r.latencyUs.p99)} µs, ${r.redisCommands.callsPerGrant} calls per grant` +
    (fails ? `, ${fails} failed` : '')
  );
}
