// Whether a denial's retry_after told the truth: a caller that waits as told should not find that
// the same sidecar granted well before then. Pure: one backwards pass over the answer log.
import type { AnswerLog } from './answer-log.js';
import { DENIED, GRANTED } from './load.js';
import { median } from './stats.js';

/** How much earlier than its retry_after a grant may come before the retry_after counts as untrue. */
export const EARLY_SLACK_MS = 5;

export interface RetryTruth {
  /** Denials in the log. */
  denials: number;
  /** Denials followed by a grant on the same sidecar: the ones that can be judged. */
  judged: number;
  /** Judged denials sent at t with retry_after r whose next grant was sent before t + r - EARLY_SLACK_MS. */
  early: number;
  /** early / judged; NaN when none could be judged. */
  retryEarly: number;
  /** Median over the judged denials of max(0, g - (t + r)), ms: how long after retry_after the next grant came. */
  retryLateMs: number;
  /** Median r of the judged denials, ms: with r at most EARLY_SLACK_MS no grant can be early. */
  retryAfterMs: number;
}

/**
 * For each denial on sidecar S sent at t with retry_after r, g is the send time of the next grant
 * on S: the first granted request written to S after the denied one. A denial with no later grant,
 * or with no retry_after, is not judged. Every denial before a grant, back to the previous grant on
 * the same sidecar, is judged against that grant, however many were denied while their windows
 * were open. Entries must be in the order written (the log's order).
 */
export function retryTruth(log: AnswerLog, sidecars: number): RetryTruth {
  const nextGrantAt = new Float64Array(sidecars).fill(Number.NaN);
  const lateMs = new Float64Array(log.count);
  const retryAfterMs = new Float64Array(log.count);
  let denials = 0;
  let judged = 0;
  let early = 0;
  for (let n = log.count - 1; n >= 0; n--) {
    const s = log.sidecar[n]!;
    if (log.outcome[n] === GRANTED) {
      nextGrantAt[s] = log.sentAt[n]!;
      continue;
    }
    if (log.outcome[n] !== DENIED) continue;
    denials++;
    const g = nextGrantAt[s]!;
    const retryAt = log.sentAt[n]! + log.retryAfterMs[n]!;
    if (Number.isNaN(g) || Number.isNaN(retryAt)) continue;
    if (g < retryAt - EARLY_SLACK_MS) early++;
    retryAfterMs[judged] = log.retryAfterMs[n]!;
    lateMs[judged++] = Math.max(0, g - retryAt);
  }
  return {
    denials,
    judged,
    early,
    retryEarly: judged > 0 ? early / judged : Number.NaN,
    retryLateMs: median(lateMs.subarray(0, judged)),
    retryAfterMs: median(retryAfterMs.subarray(0, judged)),
  };
}
