// `npm run bench`: the load comparison (every system side by side with the no-op floor, in
// interleaved rounds), the Redis outage, the accuracy run, the waiting run, the memory run and the
// overload run; a table per part and the targets on stdout, and everything in
// bench/results/<timestamp>.json.
//
//   node dist/bench/run.js [--quick] [--rounds N] [--redis-delay-ms N] [--only load|outage|accuracy|wait|memory|overload]
//                          [--systems LIST] [--in-flight LIST] [--duration S] [--warmup S] [--channels N]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { packageRoot } from '../src/paths.js';
import { startRedis } from '../test/support/redis-server.js';
import { DEFAULT_ACCURACY, runAccuracy, type AccuracyResult } from './accuracy.js';
import { adopt, killAll } from './children.js';
import { machineFacts, type Machine } from './machine.js';
import { DEFAULT_MEMORY, runMemory, type MemoryResult } from './memory.js';
import type { OutageResult } from './outage.js';
import { DEFAULT_OVERLOAD, runOverload, type OverloadResult } from './overload.js';
import { runPass, SYSTEMS, type Pass, type System } from './pass.js';
import { redisVersion } from './redis-stats.js';
import type { Timing } from './scenario.js';
import { roundTo } from './stats.js';
import { evaluate, MIN_ROUNDS, TARGETS, type TargetResult } from './targets.js';
import { accuracyTable, machineHeader, memoryTable, outageLines, outageTable, overloadTable, passTables, targetsTable, waitTable } from './table.js';
import { DEFAULT_WAIT, runWait, type WaitResult } from './wait.js';

const USAGE = `usage: npm run bench -- [options]

  --quick               3 rounds of 1 s runs (0.25 s warm-up), no second pass with a Redis delay,
                        one overload repeat
  --rounds N            measured rounds of the load comparison and of the outage (default 5,
                        quick 3; at least ${MIN_ROUNDS}): every cell runs once per round, odd rounds backwards
  --redis-delay-ms N    delay of the second pass's proxies, each way (default 1; 0 = no second pass)
  --only WHAT           run only one part: load (the passes, the outage scenario included),
                        outage (the unary floor and the outage scenario), accuracy, wait (the
                        waiting line: 4 sidecars, 2x demand, every request with a max_wait),
                        memory, or overload (one sidecar at 32 to 5,000 in flight on a healthy Redis)
  --systems LIST        compare only these with the floor (comma-separated; default all):
                        ${SYSTEMS.join(', ')}
  --in-flight LIST      requests in flight of the unary and peer cells (default 1,32); streams run
                        at the largest
  --duration S          seconds per measured run (default 1.5, quick 1)
  --warmup S            warm-up seconds before each measured run (default 0.3, quick 0.25); a first,
                        unmeasured round runs each cell for twice as long
  --channels N          gRPC channels (HTTP/2 connections) the requests are spread over (default 4)
  --accuracy-s S        seconds of demand per accuracy phase (default 10)
  --wait-s S            seconds of demand per phase of the waiting run (default ${DEFAULT_WAIT.demandS})
  --memory-keys N       distinct keys of the memory run (default 100000)
`;

const PARTS = ['load', 'outage', 'accuracy', 'wait', 'memory', 'overload'] as const;
type Part = (typeof PARTS)[number];

interface Options {
  quick: boolean;
  only: Part | null;
  rounds: number;
  /** Redis delays of the passes, each way: 0 is straight to Redis. */
  delays: number[];
  systems: System[];
  inFlight: number[];
  timing: Timing;
  channels: number;
  accuracyS: number;
  waitS: number;
  memoryKeys: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      'redis-delay-ms': { type: 'string' },
      only: { type: 'string' },
      systems: { type: 'string' },
      'in-flight': { type: 'string', default: '1,32' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      channels: { type: 'string', default: '4' },
      'accuracy-s': { type: 'string', default: String(DEFAULT_ACCURACY.demandS) },
      'wait-s': { type: 'string', default: String(DEFAULT_WAIT.demandS) },
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
  const oneOf = <T extends string>(name: string, text: string, allowed: readonly T[]): T => {
    if (!(allowed as readonly string[]).includes(text)) throw new Error(`--${name} must be one of ${allowed.join(', ')}, got "${text}"`);
    return text as T;
  };
  const quick = values.quick!;
  const delayGiven = values['redis-delay-ms'] !== undefined;
  const delay = number('redis-delay-ms', values['redis-delay-ms'], 1, 0);
  const picked = values.systems?.split(',').map((name) => oneOf('systems', name.trim(), SYSTEMS));
  const inFlight = values['in-flight']!.split(',').map((n) => Math.round(number('in-flight', n.trim(), 0, 1)));
  return {
    quick,
    only: values.only === undefined ? null : oneOf('only', values.only, PARTS),
    rounds: Math.round(number('rounds', values.rounds, quick ? 3 : 5, MIN_ROUNDS)),
    // The second pass runs in a full run, or in a quick one when a delay was asked for.
    delays: delay > 0 && (!quick || delayGiven) ? [0, delay] : [0],
    systems: SYSTEMS.filter((system) => !picked || picked.includes(system)),
    inFlight: [...new Set(inFlight)].sort((a, b) => a - b),
    timing: {
      durationMs: number('duration', values.duration, quick ? 1 : 1.5, 0.1) * 1000,
      warmupMs: number('warmup', values.warmup, quick ? 0.25 : 0.3, 0) * 1000,
    },
    channels: Math.round(number('channels', values.channels, 4, 1)),
    accuracyS: number('accuracy-s', values['accuracy-s'], DEFAULT_ACCURACY.demandS, 1),
    waitS: number('wait-s', values['wait-s'], DEFAULT_WAIT.demandS, 1),
    memoryKeys: Math.round(number('memory-keys', values['memory-keys'], DEFAULT_MEMORY.keys, 1)),
  };
}

const log = (line: string) => process.stderr.write(`${line}\n`);

interface Report {
  startedAt: string;
  finishedAt: string;
  options: Options;
  machine: Machine & { loadAverageAtEnd: number[] };
  passes: Pass[];
  accuracy: AccuracyResult | null;
  accuracyError?: string;
  wait: WaitResult | null;
  waitError?: string;
  memory: MemoryResult | null;
  overload: OverloadResult | null;
  targets: TargetResult[];
  /** How long each part took, seconds. */
  seconds: Partial<Record<Part, number>>;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const startedAt = new Date();
  // For the accuracy and memory runs; the load passes start a redis-server per system.
  const redis = await startRedis();
  adopt(redis.child);
  try {
    const machine = machineFacts(await redisVersion(redis.client));
    const print = (text: string) => process.stdout.write(`${text}\n`);
    print(`sluice bench, ${startedAt.toISOString()}${options.quick ? ' (quick)' : ''}`);
    print(machineHeader(machine));
    const runs = (part: Part) => options.only === null || options.only === part;
    if (runs('load') || runs('outage')) {
      const { durationMs, warmupMs } = options.timing;
      print(
        `load: ${options.rounds} interleaved rounds (odd rounds backwards) after an unmeasured one; ` +
          `${options.inFlight.join(' and ')} in flight over ${options.channels} channels; ${durationMs / 1000} s per run after ${warmupMs / 1000} s warm-up`,
      );
    }

    const passes: Pass[] = [];
    const printPass = (pass: Pass) => {
      if (pass.runs.length > 0) {
        print(`\n== load, Redis ${pass.redisDelayMs > 0 ? `behind a ${pass.redisDelayMs} ms delay each way` : 'direct'} ==`);
        print(passTables(pass));
      }
      if (pass.outage) {
        print(`\n-- outage: ${outageHeading(pass.outage)} --`);
        print(outageTable(pass.outage));
        print(outageLines(pass.outage));
      }
      for (const e of pass.errors) print(`${e.system}: NOT MEASURED: ${e.error.split('\n')[0]}`);
    };
    // Seconds each part took, to keep `npm run bench` within its 10 minutes.
    const seconds: Partial<Record<Part, number>> = {};
    let lapStart = performance.now();
    const lap = (part: Part) => {
      const now = performance.now();
      seconds[part] = roundTo((now - lapStart) / 1000, 1);
      lapStart = now;
    };

    const passOptions = { rounds: options.rounds, timing: options.timing, inFlight: options.inFlight, channels: options.channels };
    if (runs('load')) {
      for (const delay of options.delays) {
        log(`pass: Redis ${delay > 0 ? `behind a ${delay} ms proxy (each way)` : 'direct'}`);
        // The memory store never touches Redis: its figures would not change with the delay.
        const systems = delay > 0 ? options.systems.filter((s) => s !== 'sluice-memory') : options.systems;
        const pass = await runPass({ ...passOptions, redisDelayMs: delay, systems, load: true, outage: delay === 0 }, log);
        passes.push(pass);
        printPass(pass);
      }
      lap('load');
    } else if (runs('outage')) {
      log('pass: the unary floor and the outage');
      const pass = await runPass({ ...passOptions, redisDelayMs: 0, systems: [], load: false, outage: true }, log);
      passes.push(pass);
      printPass(pass);
      lap('outage');
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
      lap('accuracy');
    }

    let wait: WaitResult | null = null;
    let waitError: string | undefined;
    if (runs('wait')) {
      const shape = { ...DEFAULT_WAIT, demandS: options.waitS };
      log(`wait: ${shape.sidecars} sidecars, ${shape.rounds} rounds of two phases, ${shape.demandS} s each`);
      await redis.client.flushall();
      try {
        wait = await runWait({ ...shape, redisUrl: redis.url, stats: redis.client, redisPid: redis.child.pid ?? null }, log);
        const { limit, priority } = shape;
        print(
          `\n== waiting: ${shape.sidecars} sidecars (${shape.streamsPerSidecar} AcquireStreams each), one Redis, token_bucket ${limit.ratePerS}/1s burst ${limit.burst}, ` +
            `${shape.demandFactor}x demand dealt ${shape.weights.join(':')}, every request with max_wait ${shape.maxWaitMs}ms; ` +
            `then priority ${priority.high} from one sidecar under a priority 0 flood (reserve ${priority.reserveFraction} for priority ${priority.high}); ` +
            `median (min–max) of ${shape.rounds} rounds ==`,
        );
        print(waitTable(wait));
      } catch (err) {
        waitError = (err as Error).message ?? String(err);
        print(`\nwait: NOT MEASURED: ${waitError.split('\n')[0]}`);
      }
      lap('wait');
    }

    let memory: MemoryResult | null = null;
    if (runs('memory')) {
      log(`memory: ${options.memoryKeys} keys x ${DEFAULT_MEMORY.requestsPerKey} requests through one sidecar`);
      memory = await runMemory({ ...DEFAULT_MEMORY, keys: options.memoryKeys, redisUrl: redis.url, stats: redis.client }, log);
      print(`\n== memory: ${memory.keys.toLocaleString('en-US')} distinct keys, ${memory.requestsPerKey} requests each, one sidecar ==`);
      print(memoryTable(memory));
      for (const e of memory.errors) print(`memory, ${e.store} store: NOT MEASURED: ${e.error.split('\n')[0]}`);
      lap('memory');
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
      lap('overload');
    }

    const targets = TARGETS.map((t) => evaluate(t, { passes, accuracy, memory, overload, wait })).filter((t): t is TargetResult => t !== null);
    if (targets.length > 0) {
      print('\n== targets: median (min–max) over the rounds; "met" only if the whole spread is on the good side ==');
      print(targetsTable(targets));
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
      wait,
      waitError,
      memory,
      overload,
      targets,
      seconds,
    };
    const dir = join(packageRoot, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${startedAt.toISOString().replace(/:/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    print(`\nload average at the end ${report.machine.loadAverageAtEnd.join(' ')}`);
    const parts = Object.entries(seconds).map(([part, s]) => `${part} ${Math.round(s)} s`);
    print(`results: ${file} (${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s in all: ${parts.join(', ')})`);
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
