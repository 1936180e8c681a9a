// What a perfect token bucket (GCRA, no network, no leases) would have granted for the same
// requests at the moments they were sent: the fair yardstick when demand, not the limit, bounds
// the grants. Pure: the answer log's send times in, a count out.
import type { AnswerLog } from './answer-log.js';

/** Request n asks key n % keys; every key has `ratePerS` and `burst`. */
export function perfectBucketGrants(log: AnswerLog, keys: number, ratePerS: number, burst: number): number {
  const intervalMs = 1000 / ratePerS;
  const toleranceMs = burst * intervalMs;
  const tat = new Float64Array(keys).fill(Number.NEGATIVE_INFINITY);
  let granted = 0;
  for (let n = 0; n < log.count; n++) {
    const key = n % keys;
    const now = log.sentAt[n]!;
    const next = Math.max(tat[key]!, now) + intervalMs;
    if (next - now <= toleranceMs + 1e-9) {
      tat[key] = next;
      granted++;
    }
  }
  return granted;
}
