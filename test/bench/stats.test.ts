// The bench's statistics: medians, spreads, per-round ratios and verdicts, on made-up figures (no
// bench runs here).
import { describe, expect, it } from 'vitest';
import { ratiosByRound } from '../../bench/ratios.js';
import type { ScenarioResult } from '../../bench/scenario.js';
import { median, roundOrder, roundRatios, summarise, verdict, type Bound } from '../../bench/stats.js';

describe('median', () => {
  it('is the middle value of an odd count, whatever the order', () => {
    expect(median([9, 1, 5])).toBe(5);
  });

  it('is the mean of the two middle values of an even count', () => {
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('is NaN for no values', () => {
    expect(median([])).toBeNaN();
  });
});

describe('summarise', () => {
  it('gives the median and the min–max spread', () => {
    expect(summarise([1.2, 0.9, 1.05, 1.0, 1.4])).toEqual({ median: 1.05, min: 0.9, max: 1.4, n: 5 });
  });

  it('leaves out values that could not be measured, and does not count them', () => {
    expect(summarise([1, Number.NaN, 3, Number.POSITIVE_INFINITY])).toEqual({ median: 2, min: 1, max: 3, n: 2 });
    expect(summarise([Number.NaN]).n).toBe(0);
  });
});

describe('roundRatios', () => {
  it('divides each round by the same round of the baseline, never by another', () => {
    expect(roundRatios([2, 6, 3], [1, 3, 3])).toEqual([2, 2, 1]);
  });

  it('is NaN for a round missing on either side or with a zero baseline', () => {
    const a: (number | undefined)[] = [2, undefined, 4, 5];
    expect(roundRatios(a, [1, 1, 0])).toEqual([2, Number.NaN, Number.NaN, Number.NaN]);
  });
});

describe('verdict', () => {
  const atMost: Bound = { at: 'most', value: 1.1 };
  const atLeast: Bound = { at: 'least', value: 0.95 };
  const spread = (min: number, median: number, max: number) => ({ min, median, max, n: 5 });

  it('is met only when the whole spread is on the good side (the bound itself is good)', () => {
    expect(verdict(spread(0.9, 1.0, 1.1), atMost)).toBe('met');
    expect(verdict(spread(0.95, 1.0, 1.2), atLeast)).toBe('met');
  });

  it('is not met when the whole spread is on the bad side', () => {
    expect(verdict(spread(1.11, 1.3, 1.5), atMost)).toBe('not met');
    expect(verdict(spread(0.5, 0.7, 0.94), atLeast)).toBe('not met');
  });

  it('is not resolved when the spread crosses the bound, even with the median on the good side', () => {
    expect(verdict(spread(0.9, 1.0, 1.2), atMost)).toBe('not resolved');
    expect(verdict(spread(0.9, 1.2, 1.3), atLeast)).toBe('not resolved');
  });

  it('is not met for an invariant as soon as one run breaks it', () => {
    const never: Bound = { at: 'most', value: 0, everyRun: true };
    expect(verdict(summarise([0, 0, 64, 0]), never)).toBe('not met');
    expect(verdict(summarise([0, 0, 0]), never)).toBe('met');
    expect(verdict({ min: 0, median: 0, max: 1, n: 2 }, never, 3)).toBe('not met');
  });

  it('is not resolved with fewer rounds than asked for, and not measured with none', () => {
    expect(verdict({ min: 1, median: 1, max: 1, n: 2 }, atMost, 3)).toBe('not resolved');
    expect(verdict({ min: 1, median: 1, max: 1, n: 1 }, atMost)).toBe('met');
    expect(verdict(summarise([]), atMost)).toBe('not measured');
  });
});

describe('roundOrder', () => {
  it('runs even rounds in order and odd rounds backwards, leaving the input alone', () => {
    const cells = ['floor', 'memory', 'lease'];
    expect([0, 1, 2, 3].map((round) => roundOrder(cells, round).join(' '))).toEqual([
      'floor memory lease',
      'lease memory floor',
      'floor memory lease',
      'lease memory floor',
    ]);
    expect(cells).toEqual(['floor', 'memory', 'lease']);
  });
});

describe('ratiosByRound', () => {
  const run = (system: string, round: number, p50: number, inFlight = 1): ScenarioResult =>
    ({ system, api: 'unary', inFlight, round, latencyUs: { p50 } }) as ScenarioResult;

  it('pairs runs by round, whatever order they ran in, and only with the same API and requests in flight', () => {
    // Round 1 ran backwards; the 32-in-flight floor must not be taken for the 1-in-flight one.
    const runs = [
      run('floor', 0, 100),
      run('sluice-lease', 0, 110),
      run('sluice-lease', 1, 150),
      run('floor', 1, 100, 32),
      run('floor', 1, 120),
    ];
    const lease = { system: 'sluice-lease', api: 'unary', inFlight: 1 } as const;
    const floor = { system: 'floor', api: 'unary', inFlight: 1 } as const;
    expect(ratiosByRound(runs, lease, floor, 'p50')).toEqual([1.1, 1.25]);
  });
});
