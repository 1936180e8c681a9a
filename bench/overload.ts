// `--only overload`: one sidecar, as deployed, on a healthy Redis, asked by many tenants over
// AcquireStreams at rising numbers of requests in flight. The sidecar's own overload must never
// become a failure-policy answer: granted ÷ allowed stays at most 1.000 at every level, and past
// its capacity it sheds (RESOURCE_EXHAUSTED) instead. Levels are interleaved across repeats.
import { metricsText, metricValue } from './admin-metrics.js';
import { adopt, startSluiceProcess } from './children.js';
import { prioritise, startRedis } from '../test/support/redis-server.js';
import { streamLoad, type StreamTally } from '../test/support/stream-load.js';

export interface OverloadOptions {
  levels: number[];
  repeats: number;
  tenants: number;
  asksEach: number;
  /** Each tenant's fixed_window limit per hour. */
  limit: number;
  streams: number;
}

export const DEFAULT_OVERLOAD: OverloadOptions = { levels: [32, 256, 1_600, 5_000], repeats: 3, tenants: 2_000, asksEach: 20, limit: 10, streams: 16 };

export interface OverloadRun {
  inFlight: number;
  decisionsPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Grants ÷ what the tenants' limits allow. */
  grantedRatio: number;
  /** Requests shed with RESOURCE_EXHAUSTED ÷ requests. */
  shedShare: number;
  /** Answers decided by on_store_failure (must be 0 while Redis answers). */
  byPolicy: number;
  /** The sidecar's event-loop delay, p99 over the run. */
  lagP99Ms: number;
}

export interface OverloadResult {
  options: OverloadOptions;
  storeTimeoutMs: number;
  runs: OverloadRun[];
}

const STORE_TIMEOUT_MS = 20;

export async function runOverload(options: OverloadOptions, log: (line: string) => void): Promise<OverloadResult> {
  // Its own Redis, given the CPU first: on a shared 2-core machine the load generator and the
  // sidecar would otherwise starve it, and a starved Redis really is a silent one.
  const redis = await startRedis();
  adopt(redis.child);
  prioritise(redis);
  const sidecar = await startSluiceProcess(
    'sluice-overload',
    `store:\n  redis: { url: ${redis.url} }\n  timeout: ${STORE_TIMEOUT_MS}ms\nresources:\n` +
      `  - { name: overload, keys: [tenant], on_store_failure: open, limits: [{ name: hourly, algorithm: fixed_window, rate: ${options.limit}/1h }] }\n`,
  );
  const runs: OverloadRun[] = [];
  try {
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      for (const inFlight of options.levels) {
        // Reading the figures resets the event-loop histogram: what follows is this run's alone.
        await metricsText(sidecar.admin!);
        const tally = await streamLoad(sidecar.address, {
          resource: 'overload',
          tenants: options.tenants,
          asksEach: options.asksEach,
          inFlight,
          streams: options.streams,
          tenantPrefix: `r${repeat}-l${inFlight}-`,
        });
        const lag = metricValue(await metricsText(sidecar.admin!), 'sluice_nodejs_eventloop_lag_p99_seconds');
        const run = summarise(inFlight, tally, options, lag * 1000);
        runs.push(run);
        log(`overload: ${inFlight} in flight, repeat ${repeat + 1}: granted/allowed ${run.grantedRatio.toFixed(3)}, shed ${(run.shedShare * 100).toFixed(1)}%`);
      }
    }
  } finally {
    await sidecar.stop();
    await redis.stop();
  }
  return { options, storeTimeoutMs: STORE_TIMEOUT_MS, runs };
}

function summarise(inFlight: number, tally: StreamTally, options: OverloadOptions, lagP99Ms: number): OverloadRun {
  const latencies = tally.latencies.slice(0, tally.answered).sort();
  let granted = 0;
  for (const g of tally.granted) granted += g;
  const requests = options.tenants * options.asksEach;
  const shed = Object.values(tally.errors).reduce((a, b) => a + b, 0);
  return {
    inFlight,
    decisionsPerS: (tally.answered / tally.elapsedMs) * 1000,
    p50Ms: latencies[Math.floor(latencies.length * 0.5)] ?? Number.NaN,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
    grantedRatio: granted / (options.tenants * options.limit),
    shedShare: shed / requests,
    byPolicy: (tally.decidedBy.FAIL_OPEN ?? 0) + (tally.decidedBy.FAIL_CLOSED ?? 0) + (tally.decidedBy.LOCAL_FALLBACK ?? 0),
    lagP99Ms,
  };
}
