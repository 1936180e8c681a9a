// The hot key's figures over made-up answer logs (no bench runs here): the weighted split, each
// sidecar's share of demand and grants, whether denials' retry_after held, and the perfect bucket.
import { describe, expect, it } from 'vitest';
import { perfectBucketGrants } from '../../bench/perfect-bucket.js';
import { retryTruth } from '../../bench/retry-truth.js';
import { sidecarShares, weightedOrder } from '../../bench/weighted-split.js';
import { logOf } from './answer-logs.js';

describe('weightedOrder', () => {
  it('deals 1:2:3:4 as ten slots, each sidecar as often as its weight, spread out, the same every time', () => {
    const order = [...weightedOrder([1, 2, 3, 4])];
    expect(order).toEqual([3, 2, 1, 3, 0, 2, 3, 1, 2, 3]);
    expect([0, 1, 2, 3].map((s) => order.filter((x) => x === s).length)).toEqual([1, 2, 3, 4]);
    expect([...weightedOrder([1, 2, 3, 4])]).toEqual(order);
  });

  it('deals equal weights round robin', () => {
    expect([...weightedOrder([1, 1, 1])]).toEqual([0, 1, 2]);
  });

  it('refuses weights it cannot deal', () => {
    expect(() => weightedOrder([])).toThrow(/weights/);
    expect(() => weightedOrder([0, 0])).toThrow(/all be 0/);
    expect(() => weightedOrder([1, 1.5])).toThrow(/whole numbers/);
  });
});

describe('sidecarShares', () => {
  // Demand 1:3 over two sidecars.
  const demand: [number, number, 'd'][] = [
    [0, 0, 'd'],
    [1, 1, 'd'],
    [1, 2, 'd'],
    [1, 3, 'd'],
  ];

  it('is 0 when the grants split as the demand did', () => {
    const log = logOf([...demand, [0, 4, 'g'], [1, 5, 'g'], [1, 6, 'g'], [1, 7, 'g']]);
    expect(sidecarShares(log, 2)).toEqual({ demand: [0.25, 0.75], granted: [0.25, 0.75], shareError: 0 });
  });

  it('is the largest relative gap between a sidecar grant share and its demand share', () => {
    // Sidecar 0 asks 2 of 8 (25%) and gets 2 of 4 grants (50%): twice its share, an error of 1;
    // sidecar 1 gets 50% for 75%, an error of 1/3.
    const log = logOf([[0, 0, 'g'], [0, 1, 'g'], [1, 2, 'd'], [1, 3, 'd'], [1, 4, 'd'], [1, 5, 'd'], [1, 6, 'g'], [1, 7, 'g']]);
    const shares = sidecarShares(log, 2);
    expect(shares.demand).toEqual([0.25, 0.75]);
    expect(shares.granted).toEqual([0.5, 0.5]);
    expect(shares.shareError).toBeCloseTo(1, 12);
  });

  it('counts failed and unanswered requests as demand, never as grants', () => {
    const shares = sidecarShares(logOf([[0, 0, 'g'], [1, 1, 'f'], [1, 2, '-'], [1, 3, 'g']]), 2);
    expect(shares.demand).toEqual([0.25, 0.75]);
    expect(shares.granted).toEqual([0.5, 0.5]);
    expect(shares.shareError).toBeCloseTo(1, 12);
  });

  it('leaves out a sidecar that was sent nothing, and is NaN when nothing was granted', () => {
    expect(sidecarShares(logOf([[0, 0, 'g'], [0, 1, 'g']]), 2).shareError).toBe(0);
    expect(sidecarShares(logOf(demand), 2).shareError).toBeNaN();
  });
});

describe('retryTruth', () => {
  it('calls a denial untruthful when its sidecar granted more than 5 ms before its retry_after', () => {
    // Denied at 0 for 20 ms, granted at 10: early. Denied at 100 for 12 ms, granted at 110: 2 ms
    // before, within the slack, and 0 ms late.
    const truth = retryTruth(logOf([[0, 0, 'd', 20], [0, 10, 'g'], [0, 100, 'd', 12], [0, 110, 'g']]), 1);
    expect(truth).toEqual({ denials: 2, judged: 2, early: 1, retryEarly: 0.5, retryLateMs: 0, retryAfterMs: 16 });
  });

  it('judges a denial only by later grants on its own sidecar', () => {
    // Sidecar 1 grants at once; sidecar 0's next grant comes 10 ms after its retry_after. The
    // grant on sidecar 0 before the denial does not count.
    const truth = retryTruth(logOf([[0, 0, 'g'], [0, 1, 'd', 20], [1, 2, 'g'], [0, 31, 'g']]), 2);
    expect(truth).toEqual({ denials: 1, judged: 1, early: 0, retryEarly: 0, retryLateMs: 10, retryAfterMs: 20 });
  });

  it('judges every denial made while windows were open against the grant that ends them', () => {
    // Denials at 0, 10 and 20 (retry_after 50, 50, 5), one grant at 30: the first two were
    // untruthful, the third's grant came 5 ms late.
    const truth = retryTruth(logOf([[0, 0, 'd', 50], [0, 10, 'd', 50], [0, 20, 'd', 5], [0, 30, 'g']]), 1);
    expect(truth).toMatchObject({ denials: 3, judged: 3, early: 2, retryLateMs: 0 });
    expect(truth.retryEarly).toBeCloseTo(2 / 3, 12);
  });

  it('ignores a denial no grant follows, one without retry_after, and failed or unanswered requests', () => {
    const truth = retryTruth(logOf([[0, 0, 'd'], [0, 1, 'f'], [0, 2, '-'], [0, 10, 'g'], [0, 20, 'd', 1], [0, 21, 'f']]), 1);
    expect(truth.denials).toBe(2);
    expect(truth.judged).toBe(0);
    expect(truth.retryEarly).toBeNaN();
    expect(truth.retryLateMs).toBeNaN();
    expect(truth.retryAfterMs).toBeNaN();
  });

  it('takes the median lateness and the median retry_after', () => {
    const truth = retryTruth(logOf([[0, 0, 'd', 1], [0, 3, 'g'], [0, 10, 'd', 1], [0, 20, 'g'], [0, 30, 'd', 2], [0, 35, 'g']]), 1);
    expect(truth.retryLateMs).toBe(3);
    expect(truth.retryAfterMs).toBe(1);
  });
});

describe('perfectBucketGrants', () => {
  it('grants the burst at once, then one unit per interval, per key', () => {
    // 1000/s (1 ms apart), burst 2: three asks at 0 get two, the ask at 0.5 none, the ask at 2 one.
    const oneKey = logOf([[0, 0, '-'], [0, 0, '-'], [0, 0, '-'], [0, 0.5, '-'], [0, 2, '-']]);
    expect(perfectBucketGrants(oneKey, 1, 1000, 2)).toBe(3);
    // Requests alternate over two keys (n % 2): each key is asked at most twice at 0, all granted.
    const twoKeys = logOf([[0, 0, '-'], [0, 0, '-'], [0, 0, '-'], [0, 0, '-']]);
    expect(perfectBucketGrants(twoKeys, 2, 1000, 2)).toBe(4);
  });
});
