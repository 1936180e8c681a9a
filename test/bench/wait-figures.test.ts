// The waiting run's figures over made-up answer logs (no bench runs here): the waits of granted
// requests, a perfect global FIFO's grants and waits, Jain's index, and the requests in flight.
import { describe, expect, it } from 'vitest';
import { grantedWaits, jainIndex, mostInFlight, perfectFifo } from '../../bench/wait-figures.js';
import { logOf } from './answer-logs.js';

/** [sidecar, sent at ms, outcome, answered at ms]. */
const answered = (entries: [number, number, 'g' | 'd' | 'f' | '-', number?][]) =>
  logOf(entries.map(([sidecar, sentAt, outcome, answeredAt]) => [sidecar, sentAt, outcome, undefined, answeredAt]));

describe('grantedWaits', () => {
  it('takes send to answer of granted requests only, with the percentiles of the load recorder', () => {
    // Granted after 10, 20, 30 and 400 ms; the denial after 500 ms does not count.
    const log = answered([[0, 0, 'g', 10], [1, 0, 'g', 20], [0, 5, 'd', 505], [1, 10, 'g', 40], [0, 100, 'g', 500]]);
    // Four waits: p50 is the third smallest (index floor(0.5 x 4)), p99 the largest.
    expect(grantedWaits(log)).toEqual({ granted: 4, p50Ms: 30, p99Ms: 400 });
  });

  it('takes only the requests picked', () => {
    const log = answered([[0, 0, 'g', 10], [1, 0, 'g', 20], [1, 10, 'g', 40]]);
    expect(grantedWaits(log, (n) => log.sidecar[n] === 1)).toEqual({ granted: 2, p50Ms: 30, p99Ms: 30 });
  });

  it('is NaN when nothing was granted', () => {
    const waits = grantedWaits(answered([[0, 0, 'd', 10], [0, 1, 'f']]));
    expect(waits.granted).toBe(0);
    expect(waits.p50Ms).toBeNaN();
  });
});

describe('perfectFifo', () => {
  it('grants the burst at once, then each in arrival order as its unit falls due', () => {
    // 1000/s (a unit every ms), burst 1: three sent at 0 wait 0, 1 and 2 ms.
    const log = answered([[0, 0, '-'], [1, 0, '-'], [2, 0, '-']]);
    expect(perfectFifo(log, { ratePerS: 1000, burst: 1, maxWaitMs: 10 })).toEqual({ granted: 3, p50Ms: 1, p99Ms: 2 });
    // Burst 2: two at once, the third a unit later.
    expect(perfectFifo(log, { ratePerS: 1000, burst: 2, maxWaitMs: 10 })).toEqual({ granted: 3, p50Ms: 0, p99Ms: 1 });
  });

  it('lets a request whose unit falls due after its max_wait give up, charged nothing', () => {
    // Burst 2 at 1000/s: at 0 two are granted and the third waits 1 ms; the fourth would wait 2 ms,
    // past its 1.5, and gives up; the fifth, at 2.5, finds its unit due (the fourth took none).
    const log = answered([[0, 0, '-'], [0, 0, '-'], [0, 0, '-'], [0, 0, '-'], [0, 2.5, '-']]);
    expect(perfectFifo(log, { ratePerS: 1000, burst: 2, maxWaitMs: 1.5 })).toEqual({ granted: 4, p50Ms: 0, p99Ms: 1 });
  });

  it('grants every request of demand under the rate at once, whatever sluice answered', () => {
    const log = answered([[0, 0, 'd'], [0, 10, 'd'], [0, 20, 'f']]);
    expect(perfectFifo(log, { ratePerS: 1000, burst: 1, maxWaitMs: 0 })).toEqual({ granted: 3, p50Ms: 0, p99Ms: 0 });
  });
});

describe('jainIndex', () => {
  it('is 1 when every value is the same, 1/n when one has everything', () => {
    expect(jainIndex([0.9, 0.9, 0.9, 0.9])).toBeCloseTo(1, 12);
    expect(jainIndex([4, 0, 0, 0])).toBe(0.25);
  });

  it('is (Σx)² / (n Σx²) in between', () => {
    // (1 + 2)² / (2 x (1 + 4)) = 9 / 10.
    expect(jainIndex([1, 2])).toBeCloseTo(0.9, 12);
  });

  it('is NaN for no values, or all 0', () => {
    expect(jainIndex([])).toBeNaN();
    expect(jainIndex([0, 0])).toBeNaN();
  });
});

describe('mostInFlight', () => {
  it('counts, per sidecar, the requests sent and not yet answered at the busiest moment', () => {
    // Sidecar 0: sent at 0, 1, 2, answered at 5, 1.5, 10: two in flight at 1 and at 2 (the one
    // answered at 1.5 is out). Sidecar 1: one at a time, the second sent as the first is answered.
    const log = answered([[0, 0, 'g', 5], [0, 1, 'g', 1.5], [1, 1, 'd', 3], [0, 2, 'd', 10], [1, 3, 'g', 4]]);
    expect(mostInFlight(log, 2)).toEqual([2, 1]);
  });

  it('keeps a request never answered in flight to the end, and is 0 for a sidecar sent nothing', () => {
    const log = answered([[0, 0, '-'], [0, 1, 'f'], [0, 2, 'g', 3]]);
    expect(mostInFlight(log, 2)).toEqual([3, 0]);
  });
});
