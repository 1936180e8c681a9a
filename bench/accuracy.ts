// The accuracy run: several sidecars with leases on one Redis, open-loop demand above the limit,
// and what they granted against what the limit allowed over the demand period.
//
// Phase "hot": one key, token_bucket 2000/1s burst 200, demand 2x the rate for 10 s, dealt to the
// four sidecars by weights 1:2:3:4, repeated on a fresh key each round so that its figures come
// with a spread; per sidecar its share of the demand and of the grants, and whether its denials'
// retry_after held. Phase "many": 10,000 keys, each with a low limit, each key's requests going
// to a different sidecar every round. allowed = keys x (burst + rate x elapsed), elapsed measured
// with Redis TIME around the demand (first request to last answer). "ideal" is what a perfect
// token bucket would grant for the same requests at the moments they were sent.
import type { Redis } from 'ioredis';
import { hotKeyPhase, runPhase, type Phase, type PhaseResult } from './accuracy-phase.js';
import { startSluiceProcess, type Child } from './children.js';
import { openClients, type RateLimiterClient } from './grpc-load.js';
import { accuracyPolicy, type AccuracyLimits } from './policies.js';
import { cpuSeconds, rssMb } from './process-stats.js';
import { roundTo } from './stats.js';

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
  /** How the hot key's demand is dealt to the sidecars: one weight per sidecar. */
  hotWeights: number[];
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
  hotWeights: [1, 2, 3, 4],
  hotRounds: 3,
  manyDemandPerS: 4000,
};

export interface AccuracyResult {
  sidecars: number;
  redisUrl: string;
  phases: PhaseResult[];
  /** RSS of each sidecar after the many-keys phase, MB. */
  rssMbAfterManyKeys: number[];
  rssMbBeforeManyKeys: number[];
  sidecarCpuS: number[];
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

    const hot = (round: number): Phase =>
      hotKeyPhase({
        round,
        resource: 'hot',
        tenantPrefix: `hot-${round}-`,
        ...limits.hot,
        demandPerS: limits.hot.ratePerS * options.hotDemandFactor,
        weights: options.hotWeights,
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
      weights: null,
    };
    const phases: PhaseResult[] = [];
    for (let round = 0; round < options.hotRounds; round++) phases.push(await runPhase(hot(round), clients, options.stats, options.demandS));
    const rssMbBeforeManyKeys = sidecars.map((s) => roundTo(rssMb(s.pid), 1));
    phases.push(await runPhase(many, clients, options.stats, options.demandS));
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
