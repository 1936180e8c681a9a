// The memory run: 100,000 distinct keys driven through one sidecar as fast as it answers, a few
// requests per key, over AcquireStream; the sidecar's RSS before and after. Once on Redis with
// leases on (every key gets lease state in the sidecar, and a budget in Redis), once on the
// embedded memory store (every key's budget lives in the sidecar).
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { metricValue, metricsText } from './admin-metrics.js';
import { startSluiceProcess } from './children.js';
import { openClients, type RateLimiterClient, type WireRequest, type WireResponse } from './grpc-load.js';
import { MEMORY_RESOURCE, memoryPolicy } from './policies.js';
import { cpuSeconds, peakRssMb, rssMb } from './process-stats.js';
import { Tally } from './tally.js';

export interface MemoryOptions {
  /** The main Redis (flushed before the Redis run). */
  redisUrl: string;
  stats: Redis;
  keys: number;
  requestsPerKey: number;
  /** AcquireStream calls, each on its own channel. */
  streams: number;
  /** Requests in flight over all streams (a sidecar decides at most 256 per stream at once). */
  inFlight: number;
}

export const DEFAULT_MEMORY: Omit<MemoryOptions, 'redisUrl' | 'stats'> = {
  keys: 100_000,
  requestsPerKey: 3,
  streams: 4,
  inFlight: 256,
};

export interface MemoryRun {
  store: 'redis' | 'memory';
  keys: number;
  requestsPerKey: number;
  sent: number;
  granted: number;
  denied: number;
  failed: number;
  decidedBy: Record<string, number>;
  /** From the first request to the last answer. */
  elapsedS: number;
  decisionsPerS: number;
  /** VmRSS once the sidecar listens and the streams are open, before any request. */
  rssMbBefore: number;
  /** VmRSS right after the last answer. */
  rssMbAfter: number;
  /** VmHWM: the most it was resident at any moment. */
  rssMbPeak: number;
  /** V8 heap in use after the last answer (sluice_nodejs_heap_size_used_bytes). */
  heapUsedMbAfter: number;
  sidecarCpuS: number;
  /** Keys in Redis after the run (DBSIZE), Redis run only. */
  redisKeys: number | null;
}

export interface MemoryResult {
  keys: number;
  requestsPerKey: number;
  runs: MemoryRun[];
  errors: { store: string; error: string }[];
}

const round = (x: number, places = 3) => Math.round(x * 10 ** places) / 10 ** places;

export async function runMemory(options: MemoryOptions, log: (line: string) => void): Promise<MemoryResult> {
  const runs: MemoryRun[] = [];
  const errors: MemoryResult['errors'] = [];
  for (const store of ['redis', 'memory'] as const) {
    try {
      if (store === 'redis') await options.stats.flushall();
      const run = await runOne(store, options);
      runs.push(run);
      log(
        `  memory, ${store} store: ${run.keys} keys x ${run.requestsPerKey} in ${run.elapsedS} s; ` +
          `RSS ${run.rssMbBefore} -> ${run.rssMbAfter} MB (peak ${run.rssMbPeak})`,
      );
    } catch (err) {
      errors.push({ store, error: (err as Error).message ?? String(err) });
      log(`  memory, ${store} store failed: ${(err as Error).message}`);
    }
  }
  return { keys: options.keys, requestsPerKey: options.requestsPerKey, runs, errors };
}

async function runOne(store: 'redis' | 'memory', options: MemoryOptions): Promise<MemoryRun> {
  const sidecar = await startSluiceProcess(`sluice-memory-run-${store}`, memoryPolicy(store === 'redis' ? options.redisUrl : null));
  let clients: RateLimiterClient[] = [];
  try {
    clients = await openClients(sidecar.address, options.streams);
    const total = options.keys * options.requestsPerKey;
    const perStream = Math.max(1, Math.floor(options.inFlight / options.streams));
    const counts = new Tally();
    let sent = 0;
    let lastAnswer = 0;
    let finished: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (finished = resolve));
    const settle = () => {
      if (counts.answered + counts.failed >= total) finished();
    };
    // Request i asks for key i % keys: every key once, then every key again, and so on, so every
    // key has been asked within the last lap when the run ends.
    const next = (): WireRequest | null =>
      sent < total ? { resource: MEMORY_RESOURCE, descriptors: { tenant: `k${sent++ % options.keys}` }, cost: 1 } : null;

    const streams = clients.map((client) => {
      const call: ClientDuplexStream<WireRequest, WireResponse> = client.AcquireStream();
      const s = { call, outstanding: 0, broken: false };
      const fill = () => {
        while (!s.broken && s.outstanding < perStream) {
          const req = next();
          if (!req) {
            if (s.outstanding === 0) call.end();
            return;
          }
          s.outstanding++;
          call.write(req);
        }
      };
      call.on('data', (res: WireResponse) => {
        s.outstanding--;
        counts.count(res);
        lastAnswer = performance.now();
        fill();
        settle();
      });
      call.on('error', () => {
        if (s.broken) return;
        s.broken = true;
        counts.failed += s.outstanding;
        s.outstanding = 0;
        settle();
      });
      return { fill };
    });

    const rssMbBefore = round(rssMb(sidecar.pid), 1);
    const cpuBefore = cpuSeconds(sidecar.pid);
    const t0 = performance.now();
    for (const s of streams) s.fill();
    const timedOut = await Promise.race([done.then(() => false), sleep(300_000).then(() => true)]);
    const rssMbAfter = round(rssMb(sidecar.pid), 1);
    const sidecarCpuS = round(cpuSeconds(sidecar.pid) - cpuBefore, 2);
    const heapUsed = sidecar.admin ? metricValue(await metricsText(sidecar.admin), 'sluice_nodejs_heap_size_used_bytes') : Number.NaN;
    if (timedOut) counts.failed += total - counts.answered - counts.failed;
    const elapsedS = (lastAnswer - t0) / 1000;
    return {
      store,
      keys: options.keys,
      requestsPerKey: options.requestsPerKey,
      sent,
      granted: counts.granted,
      denied: counts.denied,
      failed: counts.failed,
      decidedBy: counts.decidedBy,
      elapsedS: round(elapsedS, 2),
      decisionsPerS: round(counts.answered / elapsedS, 1),
      rssMbBefore,
      rssMbAfter,
      rssMbPeak: round(peakRssMb(sidecar.pid), 1),
      heapUsedMbAfter: round(heapUsed / 2 ** 20, 1),
      sidecarCpuS,
      redisKeys: store === 'redis' ? await options.stats.dbsize() : null,
    };
  } finally {
    for (const c of clients) c.close();
    await sidecar.stop();
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
