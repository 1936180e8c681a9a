/**
 * What one limit says about one request. A request may ask for more than its cost (`want`, a
 * lease block): it is allowed when the cost fits and then takes up to `want` of what is there.
 * Times are milliseconds from `now`; a retryAfterMs of Infinity means the request can never be
 * granted (its cost exceeds the limit's capacity, or the part of it the request may use).
 */
export interface Verdict {
  allowed: boolean;
  /** Units taken if allowed: the cost, or more when a lease asked for more (0 if denied). */
  taken: number;
  /** Units left after this request (if allowed) or now (if not). */
  remaining: number;
  retryAfterMs: number;
  /** Until the limit is back to full capacity if nothing more is taken. */
  resetAfterMs: number;
  /**
   * For an algorithm with a schedule: ms from now until the first unit taken falls due (0 or less:
   * at once); the rest follow one scheduleStepMs apart. Absent: every unit taken is due at once.
   */
  dueInMs?: number;
  /**
   * Denied only because of the part of the limit reserved for higher priorities: the whole
   * limit would have allowed it now, or (retryAfterMs Infinity) ever.
   */
  reserved?: boolean;
}

/** Slack for floating-point time arithmetic: far below a millisecond, far above rounding error. */
export const EPSILON = 1e-6;

export const NEVER = Number.POSITIVE_INFINITY;
