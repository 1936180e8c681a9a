// The registry of algorithms: what the stores rely on when they iterate it instead of switching.
import { describe, expect, it } from 'vitest';
import { ALGORITHMS, holdsSlots, type AnyAlgorithm } from '../../src/limits/registry.js';

const algorithms: [string, AnyAlgorithm][] = Object.entries(ALGORITHMS);

describe('the algorithm registry', () => {
  it('names each algorithm as policy files spell it', () => {
    for (const [name, algorithm] of algorithms) expect(algorithm.name).toBe(name);
  });

  it('gives each algorithm its own script code and key tag, so no two read each other\'s keys', () => {
    const codes = algorithms.map(([, a]) => a.redis.code);
    expect(new Set(codes).size).toBe(codes.length);
    const tags = algorithms.map(([, a]) => a.redis.keys[0]);
    expect(new Set(tags).size).toBe(tags.length);
    // A tag is `|` then letters: never part of a limit name, never a prefix of another tag.
    for (const [, a] of algorithms) for (const key of a.redis.keys) expect(key).toMatch(/^\|[a-z]+(\|[a-z]+)*$/);
  });

  it('a fresh state has expired already: a store may drop it and change nothing', () => {
    const params = { capacity: 10, intervalMs: 100, periodMs: 1_000, ttlMs: 1_000 };
    for (const [, a] of algorithms) expect(a.expiresAt(a.initial(), params)).toBeLessThanOrEqual(0);
  });

  it('a share keeps at least one unit, and a token bucket refills its share at 1/n of the rate', () => {
    const bucket = { name: 'b', algorithm: 'token_bucket' as const, countsRequests: false, capacity: 10, intervalMs: 100 };
    expect(ALGORITHMS.token_bucket.share(bucket, 4)).toEqual({ ...bucket, capacity: 2, intervalMs: 400 });
    const window = { capacity: 3, periodMs: 1_000 };
    expect(ALGORITHMS.fixed_window.share(window, 4)).toEqual({ capacity: 1, periodMs: 1_000 });
  });

  it('only concurrency holds slots (released, never leased)', () => {
    expect(algorithms.filter(([name]) => holdsSlots({ algorithm: name as keyof typeof ALGORITHMS })).map(([name]) => name)).toEqual(['concurrency']);
  });
});
