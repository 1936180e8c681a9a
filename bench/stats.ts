// Figures repeated over interleaved rounds, and what they say about a target. One run of a
// scenario on a shared machine moves by tens of percent; the median of several rounds, with the
// range the rounds covered, says how far a figure can be trusted. Pure: no I/O, no clock.

/** The middle of the values (the mean of the two middle ones for an even count); NaN when empty. */
export function median(values: Iterable<number>): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A figure over its rounds: the median, the spread (min–max), and how many rounds measured it. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/**
 * Median and spread of the values that were measured; a value that could not be (NaN, a division
 * by zero) is left out and not counted. The spread is min–max, not the interquartile range: the
 * min–max of n rounds holds the true median with probability 1 − 2^(1−n), 75% for 3 rounds and
 * 94% for 5 (a sign test's interval), where the interquartile range of 5 holds it only 62% of the time.
 */
export function summarise(values: readonly number[]): Summary {
  const measured = values.filter(Number.isFinite);
  if (measured.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  return { median: median(measured), min: Math.min(...measured), max: Math.max(...measured), n: measured.length };
}

/**
 * Per round, a / b of the same round (index = round): each round's figure over the same round's
 * baseline, so that what the machine did in that round weighs on both. NaN where either is missing.
 */
export function roundRatios(a: readonly (number | undefined)[], b: readonly (number | undefined)[]): number[] {
  return Array.from({ length: Math.max(a.length, b.length) }, (_, round) => {
    const x = a[round];
    const y = b[round];
    return x !== undefined && y !== undefined && y !== 0 ? x / y : Number.NaN;
  });
}

/**
 * Where a figure must stay: at most or at least `value`, the bound itself included. `everyRun`
 * marks an invariant (no overshoot, no answer by the failure policy): one run on the bad side
 * breaks it, whatever the others did.
 */
export interface Bound {
  at: 'most' | 'least';
  value: number;
  everyRun?: boolean;
}

export type Verdict = 'met' | 'not met' | 'not resolved' | 'not measured';

/**
 * "met" only when the whole spread is on the good side of the bound, "not met" when the whole
 * spread is on the bad side (for an invariant: when any run is), "not resolved" when it straddles
 * the bound or when fewer than `minRounds` values were measured; "not measured" when there is none.
 */
export function verdict(s: Summary, bound: Bound, minRounds = 1): Verdict {
  if (s.n === 0) return 'not measured';
  const good = (x: number) => (bound.at === 'most' ? x <= bound.value : x >= bound.value);
  const bad = bound.everyRun ? !good(s.min) || !good(s.max) : !good(s.min) && !good(s.max);
  if (bad) return 'not met';
  if (s.n < minRounds) return 'not resolved';
  return good(s.min) && good(s.max) ? 'met' : 'not resolved';
}

/**
 * The order of a round's scenarios: as given in even rounds, backwards in odd ones (A, B, B, A,
 * A, B ...), so that neither side of a comparison always runs first, or always right after the
 * same neighbour, while the machine's load drifts.
 */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...items] : [...items].reverse();
}

/** x rounded to `places` decimals, for figures kept in the report. */
export function roundTo(x: number, places = 3): number {
  return Math.round(x * 10 ** places) / 10 ** places;
}
