// The waiting line's figures over an answer log: how long granted requests waited, what a perfect
// global FIFO would have done with the same arrivals, how evenly the sidecars were served, and how
// many requests each sidecar's stream held at once. Pure: arrays in, figures out.
import type { AnswerLog } from './answer-log.js';
import { GRANTED, Latencies } from './load.js';

export interface Waits {
  /** Granted requests among those picked. */
  granted: number;
  /** ms from send to grant. */
  p50Ms: number;
  p99Ms: number;
}

function waitsOf(record: (latencies: Latencies) => void): Waits {
  const latencies = new Latencies(1024);
  record(latencies);
  const { p50, p99 } = latencies.summary();
  return { granted: latencies.count, p50Ms: p50 / 1000, p99Ms: p99 / 1000 };
}

/** How long the granted requests among those `picked` waited, from their send to their answer, as their callers saw it. */
export function grantedWaits(log: AnswerLog, picked: (n: number) => boolean = () => true): Waits {
  return waitsOf((latencies) => {
    for (let n = 0; n < log.count; n++) {
      if (log.outcome[n] === GRANTED && picked(n)) latencies.record((log.answeredAt[n]! - log.sentAt[n]!) * 1000);
    }
  });
}

/**
 * One line for everyone, served strictly in arrival order by a token bucket (GCRA) with no
 * network, no clock skew and no store: each request is granted the moment its unit falls due and
 * everyone sent before it has been granted or has given up, unless that is more than `maxWaitMs`
 * after it was sent (then it gives up, charged nothing). The yardstick for sluice's line fed the
 * same requests at the same send times (the log's order, which is the send order).
 */
export function perfectFifo(log: AnswerLog, o: { ratePerS: number; burst: number; maxWaitMs: number }): Waits {
  const intervalMs = 1000 / o.ratePerS;
  const toleranceMs = o.burst * intervalMs;
  let tat = Number.NEGATIVE_INFINITY;
  return waitsOf((latencies) => {
    for (let n = 0; n < log.count; n++) {
      const sent = log.sentAt[n]!;
      // A grant at t fits when max(tat, t) + interval - t <= tolerance: from tat + interval - tolerance on.
      const at = Math.max(sent, tat + intervalMs - toleranceMs);
      if (at - sent > o.maxWaitMs + 1e-9) continue;
      tat = Math.max(tat, at) + intervalMs;
      latencies.record((at - sent) * 1000);
    }
  });
}

/**
 * Jain's fairness index of the values: (Σx)² / (n Σx²), 1 when they are all equal, 1/n when one
 * has everything. NaN when there are none or all are 0.
 */
export function jainIndex(values: readonly number[]): number {
  let sum = 0;
  let squares = 0;
  for (const x of values) {
    sum += x;
    squares += x * x;
  }
  return values.length > 0 && squares > 0 ? (sum * sum) / (values.length * squares) : Number.NaN;
}

/**
 * Per sidecar, the most requests sent to it and not yet answered at any moment: a stream reads
 * no more than its window at once (STREAM_WINDOW in src/grpc/sluice-service.ts), and a request
 * held back behind it would wait in the client, not in the line.
 */
export function mostInFlight(log: AnswerLog, sidecars: number): number[] {
  const most = new Array<number>(sidecars).fill(0);
  for (let s = 0; s < sidecars; s++) {
    const sent: number[] = [];
    const answered: number[] = [];
    for (let n = 0; n < log.count; n++) {
      if (log.sidecar[n] !== s) continue;
      sent.push(log.sentAt[n]!);
      // A request that got no answer stays in flight to the end.
      if (Number.isFinite(log.answeredAt[n]!)) answered.push(log.answeredAt[n]!);
    }
    answered.sort((a, b) => a - b);
    // sentAt is in send order already. An answer read at the very moment of a send counts first.
    let a = 0;
    for (let i = 0; i < sent.length; i++) {
      while (a < answered.length && answered[a]! <= sent[i]!) a++;
      most[s] = Math.max(most[s]!, i + 1 - a);
    }
  }
  return most;
}
