// `npm run bench`: every scenario, one after another, against one redis-server started here (the
// outage scenario kills a redis-server of its own), then the accuracy run and the memory run; a
// table on stdout and everything in bench/results/<timestamp>.json.
//
//   node dist/bench/run.js [--quick] [--redis-delay-ms N] [--only load|outage|accuracy|memory|overload]
//                          [--duration S] [--warmup S] [--concurrency N] [--channels N]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/paths.js';
import { startRedis, type RedisProcess } from '../test/support/redis-server.js';
import { DEFAULT_ACCURACY, runAccuracy, type AccuracyResult } from './accuracy.js';
import { DEFAULT_MEMORY, runMemory, type MemoryResult } from './memory.js';
import { runOutage, type OutageResult } from './outage.js';
import { DEFAULT_OVERLOAD, runOverload, type OverloadResult } from './overload.js';
import { adopt, killAll, startFloorProcess, startProxyProcess, startSluiceProcess, type Child } from './children.js';
import { streamTarget, unaryTarget } from './grpc-load.js';
import type { Target } from './load.js';
import { machineFacts, type Machine } from './machine.js';
import { bottleneckTarget, rateLimiterFlexibleTarget } from './peers.js';
import { HOT_REQUEST, loadPolicy, type SluiceMode } from './policies.js';
import { floorRatios, leaseVsPeers, type PeerRatio } from './ratios.js';
import { redisVersion } from './redis-stats.js';
import { measureScenario, type LoadShape, type Probes, type ScenarioResult } from './scenario.js';
import { accuracyTable, machineHeader, memoryTable, outageLines, outageTable, overloadTable, ratioLines, scenarioTable } from './table.js';

const USAGE = `usage: npm run bench -- [options]

  --quick               2 s per scenario (0.5 s warm-up), no second pass with a Redis delay
  --redis-delay-ms N    delay of the second pass's proxy, each way (default 1; 0 = no second pass)
  --only WHAT           run only one part: load (the passes, the outage scenario included),
                        outage (the unary floor and the outage scenario), accuracy, memory,
                        or overload (one sidecar at 32 to 5,000 in flight on a healthy Redis)
  --duration S          seconds per scenario (default 5, quick 2)
  --warmup S            warm-up seconds before each scenario (default 1, quick 0.5)
  --concurrency N       requests in flight (default 32)
  --channels N          gRPC channels (HTTP/2 connections) the requests are spread over (default 4)
  --accuracy-s S        seconds of demand per accuracy phase (default 10)
  --memory-keys N       distinct keys of the memory run (default 100000)
`;

const PARTS = ['load', 'outage', 'accuracy', 'memory', 'overload'] as const;
type Part = (typeof PARTS)[number];

interface Options {
  quick: boolean;
  only: Part | null;
  /** Redis delays of the passes, each way: 0 is straight to Redis. */
  delays: number[];
  shape: LoadShape;
  channels: number;
  accuracyS: number;
  memoryKeys: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      'redis-delay-ms': { type: 'string' },
      only: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      concurrency: { type: 'string', default: '32' },
      channels: { type: 'string', default: '4' },
      'accuracy-s': { type: 'string', default: String(DEFAULT_ACCURACY.demandS) },
      'memory-keys': { type: 'string', default: String(DEFAULT_MEMORY.keys) },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const number = (name: string, text: string | undefined, fallback: number, min: number): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number of at least ${min}, got "${text}"`);
    return n;
  };
  if (values.only !== undefined && !(PARTS as readonly string[]).includes(values.only)) {
    throw new Error(`--only must be one of ${PARTS.join(', ')}, got "${values.only}"`);
  }
  const quick = values.quick!;
  const delayGiven = values['redis-delay-ms'] !== undefined;
  const delay = number('redis-delay-ms', values['redis-delay-ms'], 1, 0);
  return {
    quick,
    only: (values.only as Options['only']) ?? null,
    // The second pass runs in a full run, or in a quick one when a delay was asked for.
    delays: delay > 0 && (!quick || delayGiven) ? [0, delay] : [0],
    shape: {
      durationMs: number('duration', values.duration, quick ? 2 : 5, 0.1) * 1000,
      warmupMs: number('warmup', values.warmup, quick ? 0.5 : 1, 0) * 1000,
      concurrency: Math.round(number('concurrency', values.concurrency, 32, 1)),
    },
    channels: Math.round(number('channels', values.channels, 4, 1)),
    accuracyS: number('accuracy-s', values['accuracy-s'], DEFAULT_ACCURACY.demandS, 1),
    memoryKeys: Math.round(number('memory-keys', values['memory-keys'], DEFAULT_MEMORY.keys, 1)),
  };
}

const log = (line: string) => process.stderr.write(`${line}\n`);

interface Pass {
  redisDelayMs: number;
  scenarios: (ScenarioResult & { vsFloor: ReturnType<typeof floorRatios> })[];
  leaseVsPeers: PeerRatio[];
  /** The outage scenario (first pass only); its dead-Redis window is also a row of `scenarios`. */
  outage: (OutageResult & { deadVsFloor: ReturnType<typeof floorRatios> }) | null;
  /** Systems that could not be measured (say, a sidecar that would not start): the rest still are. */
  errors: { system: string; error: string }[];
}

/**
 * All scenarios at one Redis delay, one after another. `outageOnly`: just the unary floor (for the
 * ratios) and the outage scenario.
 */
async function runPass(redis: RedisProcess, delayMs: number, options: Options, outageOnly = false): Promise<Pass> {
  const proxy = delayMs > 0 ? await startProxyProcess(redis.port, delayMs) : null;
  const redisUrl = proxy ? `redis://${proxy.address}` : redis.url;
  const probes: Probes = { stats: redis.client, redisPid: redis.child.pid!, proxyPid: proxy?.pid, redisDelayMs: delayMs };
  const results: ScenarioResult[] = [];
  const errors: Pass['errors'] = [];
  const { concurrency } = options.shape;
  const guarded = async (system: string, run: () => Promise<void>) => {
    try {
      await run();
    } catch (err) {
      errors.push({ system, error: (err as Error).message ?? String(err) });
      log(`  ${system} failed: ${(err as Error).message}`);
    }
  };

  const measure = async (system: string, api: ScenarioResult['api'], makeTarget: () => Promise<Target>, server?: Child) => {
    await redis.client.flushall();
    const target = await makeTarget();
    try {
      const result = await measureScenario({ system, api, target, serverPid: server?.pid }, probes, options.shape);
      results.push(result);
      log(
        `  ${result.name}: ${Math.round(result.decisionsPerS)}/s, p50 ${Math.round(result.latencyUs.p50)} µs, ` +
          `p99 ${Math.round(result.latencyUs.p99)} µs, ${result.redisCommands.callsPerGrant} calls and ` +
          `${result.redisCommands.perGrant} commands per grant` +
          (result.failed ? `, ${result.failed} failed` : ''),
      );
    } finally {
      await target.close();
    }
  };
  const overGrpc = async (system: string, start: () => Promise<Child>, apis: ('unary' | 'stream')[] = ['unary', 'stream']) => {
    const server = await start();
    try {
      if (apis.includes('unary')) await measure(system, 'unary', () => unaryTarget(server.address, options.channels, HOT_REQUEST), server);
      if (apis.includes('stream')) {
        await measure(system, 'stream', () => streamTarget(server.address, options.channels, HOT_REQUEST, concurrency), server);
      }
    } finally {
      await server.stop();
    }
  };

  let outage: OutageResult | null = null;
  const withRatios = (o: OutageResult | null) => (o ? { ...o, deadVsFloor: floorRatios(o.dead, results) } : null);
  const measureOutage = () =>
    guarded('sluice-outage', async () => {
      outage = await runOutage(options.shape, options.channels, log);
      results.push(outage.dead);
      const o: OutageResult = outage;
      log(
        `  ${o.dead.name}: ${Math.round(o.dead.decisionsPerS)}/s, p50 ${Math.round(o.dead.latencyUs.p50)} µs, ` +
          `p99 ${Math.round(o.dead.latencyUs.p99)} µs; circuit open ${o.killToOpenMs} ms after the kill, ` +
          `store up ${o.recoveryMs} ms after Redis was back`,
      );
    });

  log(`pass: Redis ${delayMs > 0 ? `behind a ${delayMs} ms proxy (each way)` : 'direct'}${outageOnly ? ', outage only' : ''}`);
  if (outageOnly) {
    await guarded('floor', () => overGrpc('floor', startFloorProcess, ['unary']));
    await measureOutage();
    return { redisDelayMs: delayMs, scenarios: results.map((r) => ({ ...r, vsFloor: floorRatios(r, results) })), leaseVsPeers: [], outage: withRatios(outage), errors };
  }
  try {
    await guarded('floor', () => overGrpc('floor', startFloorProcess));
    // The memory store never touches Redis: its figures would not change with the delay.
    const modes: SluiceMode[] = delayMs > 0 ? ['redis', 'lease'] : ['memory', 'redis', 'lease'];
    for (const mode of modes) {
      const system = `sluice-${mode}`;
      await guarded(system, () => overGrpc(system, () => startSluiceProcess(system, loadPolicy(mode, redisUrl))));
    }
    // Its own redis-server, killed and restarted; straight, never through the proxy: first pass only.
    if (delayMs === 0) await measureOutage();
    await guarded('rate-limiter-flexible', () => measure('rate-limiter-flexible', 'in-process', () => rateLimiterFlexibleTarget(redisUrl, concurrency)));
    await guarded('bottleneck', () => measure('bottleneck', 'in-process', () => bottleneckTarget(redisUrl, concurrency)));
  } finally {
    await proxy?.stop();
  }
  return {
    redisDelayMs: delayMs,
    scenarios: results.map((r) => ({ ...r, vsFloor: floorRatios(r, results) })),
    leaseVsPeers: leaseVsPeers(results),
    outage: withRatios(outage),
    errors,
  };
}

interface Report {
  startedAt: string;
  finishedAt: string;
  options: Options;
  machine: Machine & { loadAverageAtEnd: number[] };
  passes: Pass[];
  accuracy: AccuracyResult | null;
  accuracyError?: string;
  memory: MemoryResult | null;
  overload: OverloadResult | null;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const startedAt = new Date();
  const redis = await startRedis();
  adopt(redis.child);
  try {
    const machine = machineFacts(await redisVersion(redis.client));
    const print = (text: string) => process.stdout.write(`${text}\n`);
    print(`sluice bench, ${startedAt.toISOString()}${options.quick ? ' (quick)' : ''}`);
    print(machineHeader(machine));
    const runs = (part: Part) => options.only === null || options.only === part;
    if (runs('load') || runs('outage')) {
      print(
        `load: ${options.shape.concurrency} in flight over ${options.channels} channels, ` +
          `${options.shape.durationMs / 1000} s per scenario after ${options.shape.warmupMs / 1000} s warm-up; ` +
          `redis-server on port ${redis.port}`,
      );
    }

    const passes: Pass[] = [];
    const printPass = (pass: Pass) => {
      print(`\n== Redis ${pass.redisDelayMs > 0 ? `behind a ${pass.redisDelayMs} ms delay each way` : 'direct'} ==`);
      print(scenarioTable(pass.scenarios));
      print(ratioLines(pass.scenarios));
      if (pass.outage) {
        print(`\n-- outage: ${outageHeading(pass.outage)} --`);
        print(outageTable(pass.outage, pass.scenarios));
        print(outageLines(pass.outage, pass.scenarios));
      }
      for (const e of pass.errors) print(`${e.system}: NOT MEASURED: ${e.error.split('\n')[0]}`);
    };
    if (runs('load')) {
      for (const delay of options.delays) {
        const pass = await runPass(redis, delay, options);
        passes.push(pass);
        printPass(pass);
      }
    } else if (runs('outage')) {
      const pass = await runPass(redis, 0, options, true);
      passes.push(pass);
      printPass(pass);
    }

    let accuracy: AccuracyResult | null = null;
    let accuracyError: string | undefined;
    if (runs('accuracy')) {
      log(`accuracy: ${DEFAULT_ACCURACY.sidecars} sidecars with leases, ${options.accuracyS} s per phase`);
      await redis.client.flushall();
      try {
        accuracy = await runAccuracy({ ...DEFAULT_ACCURACY, demandS: options.accuracyS, redisUrl: redis.url, stats: redis.client });
        print(`\n== accuracy: ${accuracy.sidecars} sidecars, leases on, one Redis ==`);
        print(accuracyTable(accuracy));
      } catch (err) {
        accuracyError = (err as Error).message ?? String(err);
        print(`\naccuracy: NOT MEASURED: ${accuracyError.split('\n')[0]}`);
      }
    }

    let memory: MemoryResult | null = null;
    if (runs('memory')) {
      log(`memory: ${options.memoryKeys} keys x ${DEFAULT_MEMORY.requestsPerKey} requests through one sidecar`);
      memory = await runMemory({ ...DEFAULT_MEMORY, keys: options.memoryKeys, redisUrl: redis.url, stats: redis.client }, log);
      print(`\n== memory: ${memory.keys.toLocaleString('en-US')} distinct keys, ${memory.requestsPerKey} requests each, one sidecar ==`);
      print(memoryTable(memory));
      for (const e of memory.errors) print(`memory, ${e.store} store: NOT MEASURED: ${e.error.split('\n')[0]}`);
    }

    let overload: OverloadResult | null = null;
    if (runs('overload')) {
      const shape = options.quick ? { ...DEFAULT_OVERLOAD, repeats: 1 } : DEFAULT_OVERLOAD;
      log(`overload: ${shape.levels.join(', ')} in flight, ${shape.repeats} interleaved repeats`);
      overload = await runOverload(shape, log);
      print(
        `\n== overload: one sidecar on a healthy Redis, ${shape.tenants.toLocaleString('en-US')} tenants x ${shape.asksEach} asks ` +
          `on ${shape.limit}/1h over ${shape.streams} AcquireStreams, store.timeout ${overload.storeTimeoutMs}ms, on_store_failure open; ` +
          `median (min–max) of ${shape.repeats} ==`,
      );
      print(overloadTable(overload));
    }

    const finishedAt = new Date();
    const report: Report = {
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      options,
      machine: { ...machine, loadAverageAtEnd: machineFacts(machine.redisServer).loadAverage },
      passes,
      accuracy,
      accuracyError,
      memory,
      overload,
    };
    const dir = join(packageRoot, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${startedAt.toISOString().replace(/:/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    print(`\nresults: ${file} (${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s in all)`);
  } finally {
    await redis.stop();
    killAll();
  }
}

function outageHeading(o: OutageResult): string {
  return `kill -9 of the sidecar's own redis-server under unary load; on_store_failure open, leases on, store.timeout ${o.storeTimeoutMs}ms`;
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
