// Closed-loop load: a fixed number of requests in flight ("slots"); a slot that completes is
// reissued at once until the duration is over. Latencies go into one preallocated Float64Array, so
// measuring allocates nothing per request.
import { performance } from 'node:perf_hooks';

/** How a request ended. Plain numbers so that reporting one allocates nothing. */
export const GRANTED = 0;
export const DENIED = 1;
export const FAILED = 2;
export type Outcome = typeof GRANTED | typeof DENIED | typeof FAILED;

export type Complete = (slot: number, outcome: Outcome) => void;

/** Something to put load on: a gRPC server, or a limiter library called in this process. */
export interface Target {
  /** Sets where finished requests are reported; called before every run. */
  bind(complete: Complete): void;
  /** Starts one request for `slot`; it must call complete(slot, outcome) exactly once. */
  issue(slot: number): void;
  /** How decisions were made (sluice's decided_by), counted as answers arrive. */
  readonly decidedBy: Record<string, number>;
  close(): Promise<void>;
}

export interface LatencySummary {
  /** Microseconds. */
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Every latency of a run, in microseconds. Grows by doubling (rarely), never per request. */
export class Latencies {
  private values: Float64Array;
  count = 0;

  constructor(capacity = 1 << 20) {
    this.values = new Float64Array(capacity);
  }

  record(us: number): void {
    if (this.count === this.values.length) this.grow();
    this.values[this.count++] = us;
  }

  summary(): LatencySummary {
    const sorted = this.values.subarray(0, this.count).sort();
    let sum = 0;
    for (let i = 0; i < sorted.length; i++) sum += sorted[i]!;
    const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
    return { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: at(1), mean: sorted.length ? sum / sorted.length : NaN };
  }

  private grow(): void {
    const next = new Float64Array(this.values.length * 2);
    next.set(this.values);
    this.values = next;
  }
}

export interface LoadOptions {
  /** Requests in flight at once. */
  concurrency: number;
  durationMs: number;
  /** After the duration, how long requests under way may take before they are given up. */
  drainMs?: number;
}

export interface LoadResult {
  /** Answered requests, granted or denied. */
  decisions: number;
  granted: number;
  denied: number;
  failed: number;
  /** From the first request to the last answer, seconds. */
  elapsedS: number;
  decisionsPerS: number;
  latencyUs: LatencySummary;
  /** Requests still unanswered when the drain time ran out. */
  unfinished: number;
}

export function runLoad(target: Target, options: LoadOptions): Promise<LoadResult> {
  const { concurrency, durationMs, drainMs = 5_000 } = options;
  const latencies = new Latencies();
  const startedAt = new Float64Array(concurrency);
  const counts = [0, 0, 0];
  let inFlight = 0;
  let done = false;
  const t0 = performance.now();
  const stopAt = t0 + durationMs;
  let lastAnswer = t0;

  return new Promise((resolve) => {
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(giveUp);
      const elapsedS = (lastAnswer - t0) / 1000;
      const decisions = counts[GRANTED]! + counts[DENIED]!;
      resolve({
        decisions,
        granted: counts[GRANTED]!,
        denied: counts[DENIED]!,
        failed: counts[FAILED]!,
        elapsedS,
        decisionsPerS: elapsedS > 0 ? decisions / elapsedS : 0,
        latencyUs: latencies.summary(),
        unfinished: inFlight,
      });
    };
    const issue = (slot: number) => {
      if (done) return;
      inFlight++;
      startedAt[slot] = performance.now();
      target.issue(slot);
    };
    target.bind((slot, outcome) => {
      if (done) return;
      const now = performance.now();
      inFlight--;
      lastAnswer = now;
      counts[outcome]!++;
      if (outcome !== FAILED) latencies.record((now - startedAt[slot]!) * 1000);
      if (now < stopAt) {
        // A failing target is retried gently rather than in a hot loop.
        if (outcome === FAILED) setTimeout(issue, 10, slot);
        else issue(slot);
      } else if (inFlight === 0) {
        finish();
      }
    });
    const giveUp = setTimeout(finish, durationMs + drainMs);
    for (let slot = 0; slot < concurrency; slot++) issue(slot);
  });
}

/** A closed loop that runs until stopped, measured in consecutive windows (see startLoad). */
export interface RunningLoad {
  /** The figures since the previous take (or the start); the next window starts now. */
  take(): LoadResult;
  /** Stops issuing; resolves with the requests still unanswered after drainMs (0 when all were). */
  stop(drainMs?: number): Promise<number>;
}

/**
 * Like runLoad, but open-ended: `concurrency` requests in flight until stop(), while the caller
 * does something to the system under test (kills its Redis) and takes the figures of each stretch.
 * A request is counted in the window in which it is answered.
 */
export function startLoad(target: Target, concurrency: number): RunningLoad {
  const startedAt = new Float64Array(concurrency);
  let window = newWindow();
  let inFlight = 0;
  let stopping = false;
  let drained: () => void = () => undefined;

  const issue = (slot: number) => {
    if (stopping) return;
    inFlight++;
    startedAt[slot] = performance.now();
    target.issue(slot);
  };
  target.bind((slot, outcome) => {
    const now = performance.now();
    inFlight--;
    if (!stopping) {
      window.lastAnswer = now;
      window.counts[outcome]!++;
      if (outcome !== FAILED) window.latencies.record((now - startedAt[slot]!) * 1000);
      if (outcome === FAILED) setTimeout(issue, 10, slot);
      else issue(slot);
    } else if (inFlight === 0) {
      drained();
    }
  });
  for (let slot = 0; slot < concurrency; slot++) issue(slot);

  return {
    take() {
      const w = window;
      window = newWindow();
      const elapsedS = Math.max(0, (w.lastAnswer - w.t0) / 1000);
      const decisions = w.counts[GRANTED]! + w.counts[DENIED]!;
      return {
        decisions,
        granted: w.counts[GRANTED]!,
        denied: w.counts[DENIED]!,
        failed: w.counts[FAILED]!,
        elapsedS,
        decisionsPerS: elapsedS > 0 ? decisions / elapsedS : 0,
        latencyUs: w.latencies.summary(),
        unfinished: 0,
      };
    },
    async stop(drainMs = 5_000) {
      stopping = true;
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, drainMs);
          drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return inFlight;
    },
  };
}

function newWindow() {
  const t0 = performance.now();
  return { t0, lastAnswer: t0, counts: [0, 0, 0], latencies: new Latencies(1 << 18) };
}
