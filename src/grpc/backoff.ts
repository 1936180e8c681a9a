// How long to wait before reconnecting: doubling from `initialMs` up to `maxMs`, each wait cut
// by a random share of at most `jitter`, so that sidecars that lost their server together do not
// all come back at the same moment.

export interface Backoff {
  initialMs: number;
  maxMs: number;
  /** 0 to 1: the share of a wait drawn at random (0.5 waits from half of it to all of it). */
  jitter: number;
}

/** The wait before reconnect attempt `attempt` (0 for the first), in whole milliseconds. */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const full = Math.min(backoff.maxMs, backoff.initialMs * 2 ** attempt);
  return Math.round(full * (1 - backoff.jitter * random()));
}
