// One phase of the accuracy run on sidecars already running: open-loop demand above the limit,
// and what they granted against what the limit allowed over the demand period, with Redis TIME
// and INFO commandstats read around it. The bench runs it, and so does test/e2e/hot-key.test.ts.
import type { Redis } from 'ioredis';
import type { RateLimiterClient, WireRequest } from './grpc-load.js';
import { driveOpenLoop } from './open-loop.js';
import { perfectBucketGrants } from './perfect-bucket.js';
import { commandCalls, commandsBetween, redisTimeMs } from './redis-stats.js';
import { retryTruth, type RetryTruth } from './retry-truth.js';
import { commandFigures, type RedisCommandFigures } from './scenario.js';
import { roundTo } from './stats.js';
import { sidecarShares, weightedOrder, type Shares } from './weighted-split.js';

export interface Phase {
  name: string;
  /** The hot-key phase's round (0-based); 0 for a phase that runs once. */
  round: number;
  keys: number;
  /** Tenant k of the phase is `${tenantPrefix}${k}`. */
  tenantPrefix: string;
  ratePerS: number;
  burst: number;
  demandPerS: number;
  resource: string;
  limitText: string;
  /**
   * How the requests are dealt to the sidecars: by these weights (one per sidecar, see
   * weightedOrder), or, when null, each key's requests through the next sidecar every lap.
   */
  weights: readonly number[] | null;
}

/** One key (`${tenantPrefix}0`) limited by a token bucket, asked at demandPerS, dealt by weights. */
export function hotKeyPhase(o: {
  round: number;
  resource: string;
  tenantPrefix: string;
  ratePerS: number;
  burst: number;
  demandPerS: number;
  weights: readonly number[];
}): Phase {
  return { ...o, name: 'hot key', keys: 1, limitText: `token_bucket ${o.ratePerS}/1s burst ${o.burst}` };
}

export interface PhaseResult {
  phase: string;
  round: number;
  keys: number;
  limit: string;
  demandPerS: number;
  sent: number;
  /** What the sender kept up: requests sent / time from the first to the last, per second. */
  sentPerS: number;
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
   * Redis work over the phase (all the sidecars, heartbeats and lease give-backs included), per
   * granted request: `callsPerGrant` counts top-level calls (EVALSHA/EVAL and other client
   * commands), `perGrant` every command, those run inside scripts included.
   */
  redisCommands: RedisCommandFigures;
  /** One key only: each sidecar's share of the demand and of the grants. */
  shares: Shares | null;
  /** One key only: whether the denials' retry_after held on their sidecar. */
  retry: RetryTruth | null;
}

/** After a phase, how long to wait for the sidecars to give idle leases back (idle after 300 ms). */
const GIVE_BACK_MS = 500;
/** After the last request, how long its answers may take before they count as failed. */
const ANSWER_WITHIN_MS = 30_000;

/**
 * `clients[i]` talks to sidecar i; `stats` goes straight to their Redis (its clock and command
 * counts; nothing else may use that Redis meanwhile).
 */
export async function runPhase(phase: Phase, clients: readonly RateLimiterClient[], stats: Redis, demandS: number): Promise<PhaseResult> {
  const sidecars = clients.length;
  if (phase.weights && phase.weights.length !== sidecars) throw new Error(`${phase.weights.length} weights for ${sidecars} sidecars`);
  const order = phase.weights && weightedOrder(phase.weights);
  const { keys } = phase;
  const requests: WireRequest[] = Array.from({ length: keys }, (_, k) => ({
    resource: phase.resource,
    descriptors: { tenant: `${phase.tenantPrefix}${k}` },
    cost: 1,
  }));
  const sidecarOf = order ? (n: number) => order[n % order.length]! : (n: number) => ((n % keys) + Math.floor(n / keys)) % sidecars;

  const callsBefore = await commandCalls(stats);
  const startedAt = await redisTimeMs(stats);
  const { log, tally } = await driveOpenLoop(clients, {
    total: Math.round(phase.demandPerS * demandS),
    perS: phase.demandPerS,
    sidecarOf,
    request: (n) => requests[n % keys]!,
    answerWithinMs: ANSWER_WITHIN_MS,
  });
  const endedAt = await redisTimeMs(stats);
  // Leases idle for 300 ms go back to Redis: count those give-backs with the phase.
  await new Promise((resolve) => setTimeout(resolve, GIVE_BACK_MS));
  const commands = commandsBetween(callsBefore, await commandCalls(stats));

  const elapsedS = (endedAt - startedAt) / 1000;
  const allowed = keys * (phase.burst + phase.ratePerS * elapsedS);
  // Rounded up, never to 0: a grant over the limit by a fraction of a unit is still one grant too many.
  const overshoot = Math.ceil(Math.max(0, tally.granted - allowed) * 10) / 10;
  const ideal = perfectBucketGrants(log, keys, phase.ratePerS, phase.burst);
  const sendingS = (log.sentAt[log.count - 1]! - log.sentAt[0]!) / 1000;
  const shares = keys === 1 ? sidecarShares(log, sidecars) : null;
  const retry = keys === 1 ? retryTruth(log, sidecars) : null;
  return {
    phase: phase.name,
    round: phase.round,
    keys,
    limit: phase.limitText,
    demandPerS: phase.demandPerS,
    sent: log.count,
    sentPerS: roundTo((log.count - 1) / sendingS, 1),
    granted: tally.granted,
    denied: tally.denied,
    failed: tally.failed,
    decidedBy: tally.decidedBy,
    elapsedS: roundTo(elapsedS),
    allowed: roundTo(allowed, 1),
    overshoot,
    overshootPct: roundTo((overshoot / allowed) * 100, 2),
    utilisation: roundTo(tally.granted / allowed),
    ideal,
    ofIdeal: roundTo(tally.granted / ideal),
    redisCommands: commandFigures(commands, tally.granted + tally.denied, tally.granted),
    shares: shares && {
      demand: shares.demand.map((x) => roundTo(x, 4)),
      granted: shares.granted.map((x) => roundTo(x, 4)),
      shareError: roundTo(shares.shareError, 4),
    },
    retry: retry && {
      ...retry,
      retryEarly: roundTo(retry.retryEarly, 4),
      retryLateMs: roundTo(retry.retryLateMs, 2),
      retryAfterMs: roundTo(retry.retryAfterMs, 2),
    },
  };
}
