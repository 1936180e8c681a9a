// The outage scenario: a sidecar (leases on, on_store_failure: open, store.timeout 20ms) on a
// redis-server of its own, under the same unary load as the other scenarios. Its Redis is killed
// with SIGKILL (kill -9); once the circuit is open (/metrics: sluice_store_up 0) the sidecar and
// the floor are measured in interleaved rounds, then redis-server is started again on the same
// port and the time until Redis decides again is measured. No other Redis of the bench is touched.
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { launchRedis, serverArgs, startRedis, type RedisProcess } from '../test/support/redis-server.js';
import { storeUp } from './admin-metrics.js';
import { adopt, startSluiceProcess } from './children.js';
import { unaryTarget } from './grpc-load.js';
import { startLoad, type LoadResult, type RunningLoad } from './load.js';
import { HOT_REQUEST, outagePolicy } from './policies.js';
import { measureScenario, type ScenarioResult, type Timing } from './scenario.js';
import { roundOrder, roundTo } from './stats.js';
import { sumTallies } from './tally.js';

export const OUTAGE_STORE_TIMEOUT_MS = 20;
/** The lease ttl of the outage policy: a dead window shorter than this could still see old leases. */
const LEASE_TTL_MS = 1_000;
/** /metrics is polled this often while waiting for the circuit to open or close. */
const POLL_MS = 10;

/** A stretch of the load, in brief. */
export interface Stretch {
  decisions: number;
  failed: number;
  elapsedS: number;
  decisionsPerS: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  decidedBy: Record<string, number>;
}

export interface OutageResult {
  signal: 'SIGKILL';
  redisPort: number;
  storeTimeoutMs: number;
  onStoreFailure: 'open';
  /** The warm-up: the same sidecar with its Redis up. */
  beforeKill: Stretch;
  /** From the SIGKILL to /metrics reading sluice_store_up 0 (polled every POLL_MS). */
  killToOpenMs: number;
  /** Answers between the kill and the circuit seen open: these may wait out the 20 ms deadline. */
  transition: Stretch;
  /** Requests in flight, as in the unary load scenarios. */
  inFlight: number;
  /**
   * The measured window, Redis dead and the circuit open: one run per round (the row in the
   * table), interleaved with the floor's unary runs at the same requests in flight (`floor`,
   * empty when there is no floor to compare with).
   */
  dead: ScenarioResult[];
  floor: ScenarioResult[];
  /** No answer in the dead window came from Redis, and sluice_store_up was still 0 after it. */
  circuitOpenThroughout: boolean;
  /** From the SIGKILL to starting redis-server again. */
  deadForMs: number;
  /** redis-server on the same port: from spawning it to "Ready to accept connections". */
  restartMs: number;
  /** From the restarted Redis being ready to /metrics reading sluice_store_up 1. */
  recoveryMs: number;
  /** From the restarted Redis being ready to the first answer decided by Redis (STORE or LEASE). */
  firstRedisDecisionMs: number;
  /** Answers from the restart until both of the above were seen. */
  recovery: Stretch;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface OutageOptions {
  timing: Timing;
  rounds: number;
  inFlight: number;
  channels: number;
  /** Measures the floor's unary cell at `inFlight` for a round; null when there is no floor. */
  floor: ((round: number) => Promise<ScenarioResult>) | null;
}

export async function runOutage(options: OutageOptions, log: (line: string) => void): Promise<OutageResult> {
  const { timing, inFlight } = options;
  const redis = await startRedis();
  adopt(redis.child);
  let restarted: RedisProcess | null = null;
  try {
    const sidecar = await startSluiceProcess('sluice-outage', outagePolicy(redis.url));
    try {
      const admin = sidecar.admin;
      if (!admin) throw new Error('sluice-outage: no admin address in its "listening" line');
      // The first answer decided by Redis after the restart, timed as it arrives.
      let watchFrom = Number.POSITIVE_INFINITY;
      let firstRedisAt = Number.NaN;
      const target = await unaryTarget(sidecar.address, options.channels, HOT_REQUEST, (decidedBy) => {
        if (Number.isNaN(firstRedisAt) && (decidedBy === 'STORE' || decidedBy === 'LEASE') && performance.now() >= watchFrom) {
          firstRedisAt = performance.now();
        }
      });
      let load: RunningLoad | null = null;
      try {
        let seen: Record<string, number> = {};
        const decidedSince = () => {
          const now = { ...target.decidedBy };
          const delta: Record<string, number> = {};
          for (const [by, n] of Object.entries(now)) if (n - (seen[by] ?? 0) > 0) delta[by] = n - (seen[by] ?? 0);
          seen = now;
          return delta;
        };

        load = startLoad(target, inFlight);
        await sleep(timing.warmupMs);
        if ((await storeUp(admin)) !== 1) throw new Error('sluice-outage: the store was not up before the kill');
        const beforeKill = stretch(load.take(), decidedSince());

        log('  outage: kill -9 redis-server');
        const killedAt = performance.now();
        redis.child.kill('SIGKILL');
        const openAt = await pollStoreUp(admin, 0, 10_000);
        const transition = stretch(load.take(), decidedSince());
        await load.stop();
        load = null;

        // Redis dead, circuit open: the sidecar and the floor in interleaved rounds, measured as
        // any other scenario (no /metrics polling meanwhile).
        const deadStartedAt = performance.now();
        const dead: ScenarioResult[] = [];
        const floor: ScenarioResult[] = [];
        const deadSpec = { system: 'sluice-outage', api: 'unary' as const, inFlight, target, serverPid: sidecar.pid };
        for (let round = 0; round < options.rounds; round++) {
          for (const side of roundOrder(options.floor ? (['sluice', 'floor'] as const) : (['sluice'] as const), round)) {
            if (side === 'floor') floor.push(await options.floor!(round));
            else dead.push(await measureScenario(deadSpec, { redisDelayMs: 0 }, timing, round));
          }
        }
        // A lease taken before the kill must have expired before Redis comes back.
        await sleep(LEASE_TTL_MS + 500 - (performance.now() - deadStartedAt));
        const deadDecidedBy = sumTallies(dead.map((r) => r.decidedBy));
        const stillOpen = (await storeUp(admin)) === 0;
        seen = { ...target.decidedBy };

        if (redis.child.exitCode === null && redis.child.signalCode === null) await once(redis.child, 'exit');
        log('  outage: redis-server started again on the same port');
        const restartAt = performance.now();
        watchFrom = restartAt;
        load = startLoad(target, inFlight);
        restarted = await launchRedis({ port: redis.port, args: serverArgs(redis.port) });
        adopt(restarted.child);
        const readyAt = performance.now();
        const upAt = await pollStoreUp(admin, 1, 30_000);
        const deadline = performance.now() + 30_000;
        while (Number.isNaN(firstRedisAt) && performance.now() < deadline) await sleep(2);
        const recovery = stretch(load.take(), decidedSince());
        const unfinished = await load.stop();
        if (unfinished > 0) log(`  outage: ${unfinished} requests unanswered at the end`);
        if (Number.isNaN(firstRedisAt)) throw new Error('sluice-outage: no decision came from Redis within 30 s of its restart');

        return {
          signal: 'SIGKILL',
          redisPort: redis.port,
          storeTimeoutMs: OUTAGE_STORE_TIMEOUT_MS,
          onStoreFailure: 'open',
          beforeKill,
          killToOpenMs: roundTo(openAt - killedAt, 1),
          transition,
          inFlight,
          dead,
          floor,
          circuitOpenThroughout: stillOpen && !deadDecidedBy.STORE && !deadDecidedBy.LEASE,
          deadForMs: roundTo(restartAt - killedAt, 1),
          restartMs: roundTo(readyAt - restartAt, 1),
          recoveryMs: roundTo(upAt - readyAt, 1),
          firstRedisDecisionMs: roundTo(firstRedisAt - readyAt, 1),
          recovery,
        };
      } finally {
        // On a failure half-way, the load must not go on (and on retrying) into the next scenario.
        await load?.stop(1_000);
        await target.close();
      }
    } finally {
      await sidecar.stop();
    }
  } finally {
    await redis.stop();
    await restarted?.stop();
  }
}

function stretch(load: LoadResult, decidedBy: Record<string, number>): Stretch {
  return {
    decisions: load.decisions,
    failed: load.failed,
    elapsedS: roundTo(load.elapsedS),
    decisionsPerS: roundTo(load.decisionsPerS, 1),
    p50Us: roundTo(load.latencyUs.p50, 1),
    p99Us: roundTo(load.latencyUs.p99, 1),
    maxUs: roundTo(load.latencyUs.max, 1),
    decidedBy,
  };
}

/** Polls /metrics until sluice_store_up reads `want`; resolves with the performance.now() it did. */
async function pollStoreUp(admin: string, want: 0 | 1, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await storeUp(admin).catch(() => undefined);
    const now = performance.now();
    if (value === want) return now;
    if (now > deadline) throw new Error(`sluice-outage: sluice_store_up did not read ${want} within ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}
