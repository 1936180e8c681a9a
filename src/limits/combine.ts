import type { Verdict } from './verdict.js';

/**
 * Which limit speaks for a request over several limits: on a denial the one that denies longest
 * (so retry_after is when every denying limit would allow), on a grant the one with least left.
 * The Redis script applies the same rule.
 */
export function decidingLimit(verdicts: readonly Verdict[]): number {
  let denied = -1;
  let tightest = 0;
  for (let i = 0; i < verdicts.length; i++) {
    const v = verdicts[i]!;
    if (!v.allowed) {
      if (denied < 0 || v.retryAfterMs > verdicts[denied]!.retryAfterMs) denied = i;
    } else if (v.remaining < verdicts[tightest]!.remaining) {
      tightest = i;
    }
  }
  return denied >= 0 ? denied : tightest;
}
