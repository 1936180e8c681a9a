// Made-up answer logs for the tests of the bench's figures.
import { answerLog, UNANSWERED, type AnswerLog } from '../../bench/answer-log.js';
import { DENIED, FAILED, GRANTED } from '../../bench/load.js';

const OUTCOMES = { g: GRANTED, d: DENIED, f: FAILED, '-': UNANSWERED } as const;

/**
 * Entries in the order sent: [sidecar, sent at ms, g(ranted) d(enied) f(ailed) -(unanswered),
 * retry_after ms, answered at ms].
 */
export function logOf(entries: [number, number, keyof typeof OUTCOMES, number?, number?][]): AnswerLog {
  const log = answerLog(entries.length);
  entries.forEach(([sidecar, sentAt, outcome, retryAfterMs, answeredAt], n) => {
    log.sidecar[n] = sidecar;
    log.sentAt[n] = sentAt;
    log.outcome[n] = OUTCOMES[outcome];
    if (retryAfterMs !== undefined) log.retryAfterMs[n] = retryAfterMs;
    if (answeredAt !== undefined) log.answeredAt[n] = answeredAt;
  });
  log.count = entries.length;
  return log;
}
