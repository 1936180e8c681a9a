import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { PERMIT_ID, PermitIds, PermitTable, type PermitRecord } from '../../src/decide/permits.js';

describe('permit ids', () => {
  it('are 22 base64url characters (128 random bits), all different', () => {
    const ids = new PermitIds();
    const seen = new Set<string>();
    // Several refills of the pooled buffer.
    for (let i = 0; i < 5_000; i++) {
      const id = ids.next();
      expect(id).toMatch(PERMIT_ID);
      seen.add(id);
    }
    expect(seen.size).toBe(5_000);
  });

  it('show no pattern a caller could follow: every character position varies, and ids of two tables differ', () => {
    const a = new PermitIds();
    const b = new PermitIds();
    const first = Array.from({ length: 300 }, () => a.next());
    const valuesAt = (position: number) => new Set(first.map((id) => id[position])).size;
    // 300 draws of 6 random bits: every position takes many values (a sequence would not)...
    for (let position = 0; position < 21; position++) expect(valuesAt(position)).toBeGreaterThan(40);
    // ...and the last holds the 128th and 127th bits: all four of their values.
    expect(valuesAt(21)).toBe(4);
    const second = new Set(Array.from({ length: 300 }, () => b.next()));
    expect(first.some((id) => second.has(id))).toBe(false);
  });
});

describe('the permit table', () => {
  const resource = parsePolicy('resources: [{ name: r, limits: [{ name: l, algorithm: concurrency, max: 5, ttl: 1m }] }]', 'p.yaml').resources.get('r')!;
  const clock = { now: 1_000 };
  const record = (expiresAt: number): PermitRecord => ({ resource, scope: 'r', cost: 1, grantedAt: clock.now, expiresAt, local: false });

  it('gives a live permit back once: a second take, or one of an id never added, finds nothing', () => {
    const table = new PermitTable(10, () => clock.now);
    const id = table.nextId();
    expect(id).toMatch(PERMIT_ID);
    table.add(id, record(clock.now + 100));
    expect(table.take(id)).toMatchObject({ scope: 'r', cost: 1 });
    expect(table.take(id)).toBeUndefined();
    expect(table.take(table.nextId())).toBeUndefined();
    expect(table.size).toBe(0);
  });

  it('an expired permit cannot be taken (and is dropped by the attempt), not even at its expiry', () => {
    const table = new PermitTable(10, () => clock.now);
    table.add('a', record(clock.now + 100));
    clock.now += 100;
    expect(table.take('a')).toBeUndefined();
    expect(table.size).toBe(0);
  });

  it('past its cap drops the oldest permit and counts it', () => {
    const table = new PermitTable(2, () => clock.now);
    for (const id of ['a', 'b', 'c']) table.add(id, record(clock.now + 1_000));
    expect(table.size).toBe(2);
    expect(table.evicted).toBe(1);
    expect(table.take('a')).toBeUndefined();
    expect(table.take('c')).toBeDefined();
  });

  it('a sweep drops the expired permits only', () => {
    const table = new PermitTable(10, () => clock.now);
    table.add('soon', record(clock.now + 10));
    table.add('later', record(clock.now + 1_000));
    clock.now += 10;
    table.sweep();
    expect(table.size).toBe(1);
    expect(table.take('later')).toBeDefined();
  });
});

