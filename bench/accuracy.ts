// The accuracy run: several sidecars with leases on one Redis, open-loop demand above the limit,
// and what they granted against what the limit allowed over the demand period.
//
// Phase "hot": one key, token_bucket 2000/1s burst 200, demand 2x the rate for 10 s, split evenly
// (round robin) over the sidecars, repeated on a fresh key each round so that its figures come
// with a spread. Phase "many": 10,000 keys, each with a low limit, each key's
// requests going to a different sidecar every round. allowed = keys x (burst + rate x elapsed),
// elapsed measured with Redis TIME around the demand (first request to last answer). "ideal" is
// what a perfect token bucket would grant for the same requests at the moments they were sent.
import { performance } from 'node:perf_hooks';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { startSluiceProcess, type Child } from './children.js';
import { openClients, type RateLimiterClient, type WireRequest, type WireResponse } from './grpc-load.js';
import { accuracyPolicy, type AccuracyLimits } from './policies.js';
import { cpuSeconds, rssMb } from './process-stats.js';
import { commandCalls, commandsBetween, redisTimeMs } from './redis-stats.js';
import { commandFigures, type RedisCommandFigures } from './scenario.js';
import { roundTo } from './stats.js';
import { Tally } from './tally.js';

export interface AccuracyOptions {
  /** Where the sidecars find Redis (possibly through the delay proxy). */
  redisUrl: string;
  /** Straight to Redis: its clock. */
  stats: Redis;
  sidecars: number;
  demandS: number;
  keys: number;
  limits: AccuracyLimits;
  /** Demand on the hot key as a multiple of its rate. */
  hotDemandFactor: number;
  /** How many times the hot-key phase runs, each time on a fresh key. */
  hotRounds: number;
  /** Requests per second over all the keys of phase "many". */
  manyDemandPerS: number;
}

export const DEFAULT_ACCURACY: Omit<AccuracyOptions, 'redisUrl' | 'stats'> = {
  sidecars: 4,
  demandS: 10,
  keys: 10_000,
  limits: { hot: { ratePerS: 2000, burst: 200 }, many: { ratePerMin: 12, burst: 1 } },
  hotDemandFactor: 2,
  hotRounds: 3,
  manyDemandPerS: 4000,
};

export interface PhaseResult {
  phase: string;
  /** The hot-key phase's round (0-based); 0 for a phase that runs once. */
  round: number;
  keys: number;
  limit: string;
  demandPerS: number;
  sent: number;
  granted: number;
  denied: number;
  failed: number;
  decidedBy: Record<string, number>;
  /** Redis TIME from just before the first request to just after the last answer. */
  elapsedS: number;
  /** keys x (burst + rate x elapsed). */
  allowed: number;
  /** Grants above allowed (0 when under). */
  overshoot: number;
  overshootPct: number;
  /** granted / allowed. */
  utilisation: number;
  /** A perfect token bucket's grants for the same requests at their send times. */
  ideal: number;
  /** granted / ideal. */
  ofIdeal: number;
  /**
   * Redis work over the phase (all four sidecars, heartbeats and lease give-backs included), per
   * granted request: `callsPerGrant` counts top-level calls (EVALSHA/EVAL and other client
   * commands), `perGrant` every command, those run inside scripts included.
   */
  redisCommands: RedisCommandFigures;
}

export interface AccuracyResult {
  sidecars: number;
  redisUrl: string;
  phases: PhaseResult[];
  /** RSS of each sidecar after the many-keys phase, MB. */
  rssMbAfterManyKeys: number[];
  rssMbBeforeManyKeys: number[];
  sidecarCpuS: number[];
}

interface Phase {
  name: string;
  round: number;
  keys: number;
  /** Tenant k of the phase is `${tenantPrefix}${k}`. */
  tenantPrefix: string;
  ratePerS: number;
  burst: number;
  demandPerS: number;
  resource: string;
  limitText: string;
}

export async function runAccuracy(options: AccuracyOptions): Promise<AccuracyResult> {
  const { limits } = options;
  const policy = accuracyPolicy(options.redisUrl, limits, 'acc');
  const sidecars: Child[] = [];
  const clients: RateLimiterClient[] = [];
  try {
    sidecars.push(
      ...(await Promise.all(Array.from({ length: options.sidecars }, (_, i) => startSluiceProcess(`sluice-accuracy-${i}`, policy)))),
    );
    for (const s of sidecars) clients.push(...(await openClients(s.address, 1)));
    const cpuBefore = sidecars.map((s) => cpuSeconds(s.pid));

    const hot = (round: number): Phase => ({
      name: 'hot key',
      round,
      keys: 1,
      tenantPrefix: `hot-${round}-`,
      ratePerS: limits.hot.ratePerS,
      burst: limits.hot.burst,
      demandPerS: limits.hot.ratePerS * options.hotDemandFactor,
      resource: 'hot',
      limitText: `token_bucket ${limits.hot.ratePerS}/1s burst ${limits.hot.burst}`,
    });
    const many: Phase = {
      name: `${options.keys} keys`,
      round: 0,
      keys: options.keys,
      tenantPrefix: 'k',
      ratePerS: limits.many.ratePerMin / 60,
      burst: limits.many.burst,
      demandPerS: options.manyDemandPerS,
      resource: 'many',
      limitText: `token_bucket ${limits.many.ratePerMin}/1m burst ${limits.many.burst} per key`,
    };
    const phases: PhaseResult[] = [];
    for (let round = 0; round < options.hotRounds; round++) phases.push(await runPhase(hot(round), clients, options));
    const rssMbBeforeManyKeys = sidecars.map((s) => roundTo(rssMb(s.pid), 1));
    phases.push(await runPhase(many, clients, options));
    return {
      sidecars: options.sidecars,
      redisUrl: options.redisUrl,
      phases,
      rssMbBeforeManyKeys,
      rssMbAfterManyKeys: sidecars.map((s) => roundTo(rssMb(s.pid), 1)),
      sidecarCpuS: sidecars.map((s, i) => roundTo(cpuSeconds(s.pid) - cpuBefore[i]!, 2)),
    };
  } finally {
    for (const c of clients) c.close();
    await Promise.all(sidecars.map((s) => s.stop()));
  }
}

/** Open-loop: requests go out on schedule whatever the answers do, one stream per sidecar. */
async function runPhase(phase: Phase, clients: RateLimiterClient[], options: AccuracyOptions): Promise<PhaseResult> {
  const total = Math.round(phase.demandPerS * options.demandS);
  const requests: WireRequest[] = Array.from({ length: phase.keys }, (_, k) => ({
    resource: phase.resource,
    descriptors: { tenant: `${phase.tenantPrefix}${k}` },
    cost: 1,
  }));
  const counts = new Tally();
  let allAnswered: () => void = () => undefined;
  const answeredAll = new Promise<void>((resolve) => (allAnswered = resolve));
  let sent = 0;
  const settle = () => {
    if (sent === total && counts.answered + counts.failed >= total) allAnswered();
  };

  const streams = clients.map((client) => {
    const call: ClientDuplexStream<WireRequest, WireResponse> = client.AcquireStream();
    let outstanding = 0;
    call.on('data', (res: WireResponse) => {
      outstanding--;
      counts.count(res);
      settle();
    });
    call.on('error', () => {
      counts.failed += outstanding;
      outstanding = 0;
      settle();
    });
    return {
      send(req: WireRequest) {
        outstanding++;
        call.write(req);
      },
      end: () => call.end(),
    };
  });

  // A perfect GCRA over the same requests at their send times, for the "ideal" figure.
  const intervalMs = 1000 / phase.ratePerS;
  const toleranceMs = phase.burst * intervalMs;
  const tat = new Float64Array(phase.keys).fill(-Infinity);
  let ideal = 0;

  const callsBefore = await commandCalls(options.stats);
  const startedAt = await redisTimeMs(options.stats);
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) * phase.demandPerS) / 1000) + 1);
      for (; sent < due; sent++) {
        const key = sent % phase.keys;
        const lap = Math.floor(sent / phase.keys);
        streams[(key + lap) % streams.length]!.send(requests[key]!);
        const next = Math.max(tat[key]!, now) + intervalMs;
        if (next - now <= toleranceMs + 1e-9) {
          tat[key] = next;
          ideal++;
        }
      }
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 2);
    tick();
  });
  settle();
  const timedOut = await Promise.race([answeredAll.then(() => false), sleep(30_000).then(() => true)]);
  const endedAt = await redisTimeMs(options.stats);
  for (const s of streams) s.end();
  // Leases idle for 300 ms go back to Redis: count those give-backs with the phase.
  await sleep(GIVE_BACK_MS);
  const commands = commandsBetween(callsBefore, await commandCalls(options.stats));

  const elapsedS = (endedAt - startedAt) / 1000;
  const allowed = phase.keys * (phase.burst + phase.ratePerS * elapsedS);
  const overshoot = Math.max(0, counts.granted - allowed);
  return {
    phase: phase.name,
    round: phase.round,
    keys: phase.keys,
    limit: phase.limitText,
    demandPerS: phase.demandPerS,
    sent,
    granted: counts.granted,
    denied: counts.denied,
    failed: counts.failed + (timedOut ? total - counts.answered - counts.failed : 0),
    decidedBy: counts.decidedBy,
    elapsedS: roundTo(elapsedS),
    allowed: roundTo(allowed, 1),
    overshoot: roundTo(overshoot, 1),
    overshootPct: roundTo((overshoot / allowed) * 100, 2),
    utilisation: roundTo(counts.granted / allowed),
    ideal,
    ofIdeal: roundTo(counts.granted / ideal),
    redisCommands: commandFigures(commands, counts.granted + counts.denied, counts.granted),
  };
}

/** After a phase, how long to wait for the sidecars to give idle leases back (idle after 300 ms). */
const GIVE_BACK_MS = 500;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
