// What an open-loop run saw, request by request, in typed arrays: 40,000 requests a round would
// otherwise be 40,000 objects kept until the figures are taken. Entry n is the n-th request sent.
/** An entry whose answer has not come (yet): not an Outcome of load.ts. */
export const UNANSWERED = 3;

export interface AnswerLog {
  /** Requests sent: entries 0 .. count - 1, in the order they were written. */
  count: number;
  /** The sidecar each request went to. */
  sidecar: Uint8Array;
  /** performance.now() when the request was written, ms. */
  sentAt: Float64Array;
  /** GRANTED, DENIED or FAILED (load.ts), or UNANSWERED. */
  outcome: Uint8Array;
  /** A denial's retry_after, ms; NaN for a grant, and for a denial that gave none (never). */
  retryAfterMs: Float64Array;
  /** performance.now() when the answer was read, ms; NaN for a request that got none. */
  answeredAt: Float64Array;
}

export function answerLog(capacity: number): AnswerLog {
  return {
    count: 0,
    sidecar: new Uint8Array(capacity),
    sentAt: new Float64Array(capacity),
    outcome: new Uint8Array(capacity).fill(UNANSWERED),
    retryAfterMs: new Float64Array(capacity).fill(Number.NaN),
    answeredAt: new Float64Array(capacity).fill(Number.NaN),
  };
}
