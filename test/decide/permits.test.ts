import { describe, expect, it } from 'vitest';
import { PERMIT_ID, PermitIds } from '../../src/decide/permits.js';

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
