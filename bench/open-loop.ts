// Open-loop demand over AcquireStreams: requests go out on schedule whatever the answers do, one
// stream per sidecar, each with its index as request_id, and every answer is written into an
// AnswerLog against its request (answers may come out of order).
import { performance } from 'node:perf_hooks';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { ms } from '../test/support/client.js';
import { answerLog, UNANSWERED, type AnswerLog } from './answer-log.js';
import type { RateLimiterClient, WireRequest, WireResponse } from './grpc-load.js';
import { DENIED, FAILED, GRANTED } from './load.js';
import { Tally } from './tally.js';

export interface OpenLoopDemand {
  /** Requests in all. */
  total: number;
  /** Requests per second, over all sidecars. */
  perS: number;
  /** The sidecar (index into the clients) request n goes to. */
  sidecarOf(n: number): number;
  /** Request n, without its request_id (set here). */
  request(n: number): WireRequest;
  /** After the last request is sent, how long its answers may take; those missing then count as failed. */
  answerWithinMs: number;
}

export interface OpenLoopRun {
  log: AnswerLog;
  /** Answers by outcome and decided_by; `failed` counts requests that got none. */
  tally: Tally;
}

/**
 * Sends `demand.total` requests at `demand.perS` (a timer every 2 ms sends all that are due, so a
 * late timer catches up at once), waits for the answers, and ends the streams. A broken stream
 * fails its requests under way and every later one sent to its sidecar.
 */
export async function driveOpenLoop(clients: readonly RateLimiterClient[], demand: OpenLoopDemand): Promise<OpenLoopRun> {
  const log = answerLog(demand.total);
  const tally = new Tally();
  let settled = 0;
  let allSettled: () => void = () => undefined;
  const settledAll = new Promise<void>((resolve) => (allSettled = resolve));
  const settle = () => {
    if (++settled === demand.total) allSettled();
  };
  const fail = (n: number) => {
    log.outcome[n] = FAILED;
    tally.failed++;
    settle();
  };

  const broken = new Uint8Array(clients.length);
  const calls = clients.map((client, s) => {
    const call: ClientDuplexStream<WireRequest, WireResponse> = client.AcquireStream();
    call.on('data', (res: WireResponse) => {
      const n = Number(res.request_id);
      if (!Number.isInteger(n) || n >= log.count || log.sidecar[n] !== s || log.outcome[n] !== UNANSWERED) return;
      log.answeredAt[n] = performance.now();
      tally.count(res);
      log.outcome[n] = res.granted ? GRANTED : DENIED;
      if (!res.granted && res.retry_after) log.retryAfterMs[n] = ms(res.retry_after);
      settle();
    });
    call.on('error', () => {
      broken[s] = 1;
      for (let n = 0; n < log.count; n++) if (log.sidecar[n] === s && log.outcome[n] === UNANSWERED) fail(n);
    });
    return call;
  });

  const send = (n: number) => {
    const s = demand.sidecarOf(n);
    log.sidecar[n] = s;
    log.sentAt[n] = performance.now();
    log.count = n + 1;
    if (broken[s]) fail(n);
    else calls[s]!.write({ ...demand.request(n), request_id: String(n) });
  };
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(demand.total, Math.floor(((performance.now() - t0) * demand.perS) / 1000) + 1);
      while (log.count < due) send(log.count);
      if (log.count === demand.total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 2);
    tick();
  });

  let giveUp: NodeJS.Timeout | undefined;
  await Promise.race([settledAll, new Promise<void>((resolve) => (giveUp = setTimeout(resolve, demand.answerWithinMs)))]);
  clearTimeout(giveUp);
  for (let n = 0; n < log.count; n++) if (log.outcome[n] === UNANSWERED) fail(n);
  for (const call of calls) call.end();
  return { log, tally };
}
