// The waiting run (`--only wait`): four sidecars on one Redis, a key asked for at twice its limit
// by open-loop demand in which every request may wait (max_wait), so that a line forms in the
// store and about half the requests time out in it. Each round runs two phases, each on a fresh key:
//
// - fifo: demand dealt to the sidecars 1:2:3:4. How much of what the limit allows was granted
//   (Redis TIME around the demand), how long the granted requests waited against a perfect global
//   FIFO fed the same send times (perfect-fifo in wait-figures.ts), what each grant cost in Redis
//   calls, and whether each sidecar got its share of the grants (Jain's index).
// - priority: one sidecar sends a trickle at priority 5 while the others flood at priority 0, on a
//   resource that reserves part of its limit for priority 5: how long the trickle waits (p99)
//   against the flood (p50).
import type { Redis } from 'ioredis';
import { startSluiceProcess, type Child } from './children.js';
import { openClients, type RateLimiterClient, type WireRequest } from './grpc-load.js';
import type { AnswerLog } from './answer-log.js';
import { driveOpenLoop } from './open-loop.js';
import { waitPolicy, type WaitLimit } from './policies.js';
import { cpuSeconds } from './process-stats.js';
import { commandCalls, commandsBetween, redisTimeMs } from './redis-stats.js';
import type { PhaseResult } from './accuracy-phase.js';
import { commandFigures, type RedisCommandFigures } from './scenario.js';
import { roundOrder, roundTo } from './stats.js';
import { grantedWaits, jainIndex, mostInFlight, perfectFifo, type Waits } from './wait-figures.js';
import { sidecarShares, weightedOrder } from './weighted-split.js';

export interface WaitOptions {
  /** Where the sidecars find Redis. */
  redisUrl: string;
  /** Straight to Redis: its clock and command counts (nothing else may use it meanwhile). */
  stats: Redis;
  /** redis-server's pid, for the CPU it spent on each phase; null when it is not on this machine. */
  redisPid: number | null;
  sidecars: number;
  /**
   * AcquireStreams per sidecar, taking its requests in turn: a stream reads at most 256 requests
   * at once (STREAM_WINDOW), and one waiting requests beyond that would wait in the client.
   */
  streamsPerSidecar: number;
  rounds: number;
  /** Seconds of demand per phase. */
  demandS: number;
  limit: WaitLimit;
  /** Demand as a multiple of the limit's rate (the priority phase's flood too). */
  demandFactor: number;
  /** How the fifo phase's demand is dealt to the sidecars: one weight per sidecar. */
  weights: number[];
  /** Every request's max_wait. */
  maxWaitMs: number;
  /**
   * The priority phase: sidecar 0 sends `weights[0]` of every sum(weights) requests at `high`, the
   * others the rest at priority 0, which is `demandFactor` times the rate; `reserveFraction` of the
   * limit is kept for priority `high` and above.
   */
  priority: { high: number; reserveFraction: number; weights: number[] };
}

export const DEFAULT_WAIT: Omit<WaitOptions, 'redisUrl' | 'stats' | 'redisPid'> = {
  sidecars: 4,
  streamsPerSidecar: 2,
  rounds: 3,
  demandS: 8,
  limit: { ratePerS: 500, burst: 10 },
  demandFactor: 2,
  weights: [1, 2, 3, 4],
  // With 2x demand the line holds about demand x max_wait = 500 requests, and each of the busiest
  // sidecar's streams about 100.
  maxWaitMs: 500,
  // 3 of every 123 requests, 25/s, at priority 5; 1,000/s at priority 0 over the other three.
  priority: { high: 5, reserveFraction: 0.2, weights: [3, 40, 40, 40] },
};

/** What one phase's demand and Redis did, whatever the phase: the accuracy phases' counts, and more. */
interface Demand extends Pick<PhaseResult, 'demandPerS' | 'sent' | 'sentPerS' | 'granted' | 'denied' | 'failed' | 'decidedBy' | 'elapsedS'> {
  /** Per granted request: every Redis call of the phase (heartbeats and lease give-backs included). */
  redisCommands: RedisCommandFigures;
  /** CPU seconds redis-server spent over the phase (NaN when not known): how busy the line kept it. */
  redisCpuS: number;
  /** CPU seconds the sidecars spent over the phase, all of them. */
  sidecarCpuS: number;
  /** Per stream (sidecar-major), the most requests it held unanswered at once. */
  mostInFlight: number[];
}

export interface FifoPhase extends Demand {
  round: number;
  /** burst + rate x elapsed. */
  allowed: number;
  /** granted / allowed. */
  utilisation: number;
  /** Grants above allowed, rounded up to 0.1 (0 when under). */
  overshoot: number;
  /** Send to grant, as the callers saw it. */
  waits: Waits;
  /** A perfect global FIFO's grants and waits for the same send times, limit and max_wait. */
  ideal: Waits;
  /** Per sidecar: its share of the requests and of the grants. */
  shares: { demand: number[]; granted: number[] };
  /** Jain's index over the sidecars of grant share / demand share: 1 when every sidecar got its share. */
  fairness: number;
}

export interface PriorityPhase extends Demand {
  round: number;
  /** The trickle (sidecar 0). */
  high: Waits & { sent: number };
  /** The flood (the other sidecars). */
  low: Waits & { sent: number };
  /** high.p99Ms / low.p50Ms. */
  highP99OverLowP50: number;
}

export interface WaitRound {
  round: number;
  fifo: FifoPhase;
  priority: PriorityPhase;
}

export interface WaitResult {
  options: Omit<WaitOptions, 'redisUrl' | 'stats' | 'redisPid'>;
  rounds: WaitRound[];
}

/** The running sidecars and their streams (sidecar-major: sidecar i's are i x streamsPerSidecar ...). */
interface Setup {
  options: WaitOptions;
  sidecars: readonly Child[];
  streams: readonly RateLimiterClient[];
}

/** After a phase, how long to wait for the sidecars to give idle leases back (idle after 300 ms). */
const GIVE_BACK_MS = 500;
/** After the last request, how long its answers may take (beyond its max_wait) before they count as failed. */
const ANSWER_WITHIN_MS = 30_000;

export async function runWait(options: WaitOptions, log: (line: string) => void): Promise<WaitResult> {
  const { redisUrl, stats, redisPid, ...shape } = options;
  if (options.weights.length !== options.sidecars || options.priority.weights.length !== options.sidecars) {
    throw new Error(`the waiting run deals its demand by one weight per sidecar (${options.sidecars})`);
  }
  const policy = waitPolicy(redisUrl, options.limit, { fraction: options.priority.reserveFraction, minPriority: options.priority.high });
  const sidecars: Child[] = [];
  const streams: RateLimiterClient[] = [];
  try {
    sidecars.push(...(await Promise.all(Array.from({ length: options.sidecars }, (_, i) => startSluiceProcess(`sluice-wait-${i}`, policy)))));
    for (const s of sidecars) streams.push(...(await openClients(s.address, options.streamsPerSidecar)));
    const setup: Setup = { options, sidecars, streams };
    // An unmeasured first phase, as the load passes run an unmeasured first round: fresh sidecars
    // spend more CPU per request, and at 2x demand a sidecar that answers late loses grants to
    // the line's deadlines (docs/benchmarks.md, "Waiting").
    await fifoPhase(setup, -1, 'fifo-warmup');
    const rounds: WaitRound[] = [];
    for (let round = 0; round < options.rounds; round++) {
      // Odd rounds run the priority phase first, so that neither always runs on a fresher machine.
      const phases: Partial<Omit<WaitRound, 'round'>> = {};
      for (const phase of roundOrder(['fifo', 'priority'] as const, round)) {
        if (phase === 'fifo') phases.fifo = await fifoPhase(setup, round, `fifo-${round}`);
        else phases.priority = await priorityPhase(setup, round);
      }
      const { fifo, priority } = phases as Omit<WaitRound, 'round'>;
      rounds.push({ round, fifo, priority });
      log(
        `wait: round ${round + 1}: utilisation ${fifo.utilisation.toFixed(3)}, fairness ${fifo.fairness.toFixed(4)}, ` +
          `p50 ${fifo.waits.p50Ms.toFixed(1)} ms (perfect FIFO ${fifo.ideal.p50Ms.toFixed(1)}), ` +
          `priority ${options.priority.high} p99 ${priority.high.p99Ms.toFixed(1)} ms against priority 0 p50 ${priority.low.p50Ms.toFixed(1)} ms`,
      );
    }
    return { options: shape, rounds };
  } finally {
    for (const c of streams) c.close();
    await Promise.all(sidecars.map((s) => s.stop()));
  }
}

async function fifoPhase(setup: Setup, round: number, tenant: string): Promise<FifoPhase> {
  const { options } = setup;
  const { limit, maxWaitMs } = options;
  const request = waitingRequest('fifo', tenant, maxWaitMs, 0);
  const { demand, log } = await drive(setup, {
    perS: limit.ratePerS * options.demandFactor,
    order: weightedOrder(options.weights),
    request: () => request,
  });
  const allowed = limit.burst + limit.ratePerS * demand.elapsedS;
  const shares = sidecarShares(log, options.sidecars);
  const waits = grantedWaits(log);
  return {
    round,
    ...demand,
    allowed: roundTo(allowed, 1),
    utilisation: roundTo(demand.granted / allowed, 4),
    overshoot: Math.ceil(Math.max(0, demand.granted - allowed) * 10) / 10,
    waits,
    ideal: perfectFifo(log, { ...limit, maxWaitMs }),
    shares: { demand: shares.demand.map((x) => roundTo(x, 4)), granted: shares.granted.map((x) => roundTo(x, 4)) },
    fairness: roundTo(jainIndex(shares.granted.map((g, s) => g / shares.demand[s]!).filter(Number.isFinite)), 5),
  };
}

async function priorityPhase(setup: Setup, round: number): Promise<PriorityPhase> {
  const { options } = setup;
  const { weights, high: priority } = options.priority;
  const tenant = `priority-${round}`;
  const high = waitingRequest('priority', tenant, options.maxWaitMs, priority);
  const low = waitingRequest('priority', tenant, options.maxWaitMs, 0);
  const total = weights.reduce((a, b) => a + b, 0);
  const order = weightedOrder(weights);
  const { demand, log } = await drive(setup, {
    // The flood is demandFactor x the rate; the trickle comes on top.
    perS: (options.limit.ratePerS * options.demandFactor * total) / (total - weights[0]!),
    order,
    request: (n) => (order[n % order.length] === 0 ? high : low),
  });
  const count = (pick: (n: number) => boolean) => {
    let sent = 0;
    for (let n = 0; n < log.count; n++) if (pick(n)) sent++;
    return sent;
  };
  const isHigh = (n: number) => log.sidecar[n] === 0;
  const isLow = (n: number) => log.sidecar[n] !== 0;
  const highWaits = { ...grantedWaits(log, isHigh), sent: count(isHigh) };
  const lowWaits = { ...grantedWaits(log, isLow), sent: count(isLow) };
  return { round, ...demand, high: highWaits, low: lowWaits, highP99OverLowP50: roundTo(highWaits.p99Ms / lowWaits.p50Ms, 4) };
}

function waitingRequest(resource: string, tenant: string, maxWaitMs: number, priority: number): WireRequest {
  return { resource, descriptors: { tenant }, cost: 1, max_wait: { seconds: Math.floor(maxWaitMs / 1000), nanos: (maxWaitMs % 1000) * 1e6 }, priority };
}

/** Open-loop demand for `demandS`, dealt to the sidecars by `order`, with Redis TIME and commands read around it. */
async function drive(
  { options, sidecars, streams }: Setup,
  demand: { perS: number; order: Uint8Array; request: (n: number) => WireRequest },
): Promise<{ demand: Demand; log: AnswerLog }> {
  const { stats, streamsPerSidecar: k } = options;
  const { order } = demand;
  const redisCpu = () => (options.redisPid === null ? Number.NaN : cpuSeconds(options.redisPid));
  const sidecarCpu = () => sidecars.reduce((sum, s) => sum + cpuSeconds(s.pid), 0);
  const callsBefore = await commandCalls(stats);
  const redisCpuBefore = redisCpu();
  const sidecarCpuBefore = sidecarCpu();
  const startedAt = await redisTimeMs(stats);
  const run = await driveOpenLoop(streams, {
    total: Math.round(demand.perS * options.demandS),
    perS: demand.perS,
    // A sidecar's streams take its requests in turn, one lap of the order each.
    sidecarOf: (n) => order[n % order.length]! * k + (Math.floor(n / order.length) % k),
    request: demand.request,
    answerWithinMs: options.maxWaitMs + ANSWER_WITHIN_MS,
  });
  const endedAt = await redisTimeMs(stats);
  // Leases idle for 300 ms go back to Redis: count those give-backs with the phase.
  await new Promise((resolve) => setTimeout(resolve, GIVE_BACK_MS));
  const commands = commandsBetween(callsBefore, await commandCalls(stats));
  const redisCpuS = roundTo(redisCpu() - redisCpuBefore, 2);
  const sidecarCpuS = roundTo(sidecarCpu() - sidecarCpuBefore, 2);
  const { tally } = run;
  // The figures are per sidecar: entry n's sidecar, not its stream.
  const log: AnswerLog = { ...run.log, sidecar: run.log.sidecar.map((stream) => Math.floor(stream / k)) };
  const sendingS = (log.sentAt[log.count - 1]! - log.sentAt[0]!) / 1000;
  return {
    log,
    demand: {
      demandPerS: roundTo(demand.perS, 1),
      sent: log.count,
      sentPerS: roundTo((log.count - 1) / sendingS, 1),
      granted: tally.granted,
      denied: tally.denied,
      failed: tally.failed,
      decidedBy: tally.decidedBy,
      elapsedS: (endedAt - startedAt) / 1000,
      redisCommands: commandFigures(commands, tally.granted + tally.denied, tally.granted),
      redisCpuS,
      sidecarCpuS,
      mostInFlight: mostInFlight(run.log, streams.length),
    },
  };
}
