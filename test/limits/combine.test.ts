// Which limit speaks for a request over several limits.
import { describe, expect, it } from 'vitest';
import { decidingLimit } from '../../src/limits/combine.js';
import type { Verdict } from '../../src/limits/verdict.js';

const grant = (remaining: number): Verdict => ({ allowed: true, taken: 1, remaining, retryAfterMs: 0, resetAfterMs: 1000 });
const deny = (retryAfterMs: number, remaining = 0): Verdict => ({ allowed: false, taken: 0, remaining, retryAfterMs, resetAfterMs: 1000 });

describe('decidingLimit', () => {
  it('a single limit decides', () => {
    expect(decidingLimit([grant(3)])).toBe(0);
    expect(decidingLimit([deny(10)])).toBe(0);
  });

  it('on a grant, the limit with the least remaining', () => {
    expect(decidingLimit([grant(5), grant(2), grant(9)])).toBe(1);
    expect(decidingLimit([grant(9), grant(5), grant(0)])).toBe(2);
    expect(decidingLimit([grant(0), grant(5)])).toBe(0);
  });

  it('on a tie among grants, the first such limit', () => {
    expect(decidingLimit([grant(4), grant(2), grant(2)])).toBe(1);
  });

  it('on a denial, the denying limit with the longest retry_after', () => {
    expect(decidingLimit([deny(100), deny(900), deny(300)])).toBe(1);
    expect(decidingLimit([deny(100), deny(90)])).toBe(0);
  });

  it('a denial wins over grants, even those with less remaining', () => {
    expect(decidingLimit([grant(0), deny(50, 7)])).toBe(1);
    expect(decidingLimit([grant(0), grant(1), deny(1, 3), grant(0)])).toBe(2);
    expect(decidingLimit([deny(1, 3), grant(0)])).toBe(0);
  });

  it('a never-grantable denial (Infinity) outranks any finite retry', () => {
    expect(decidingLimit([deny(86_400_000), deny(Infinity), deny(5)])).toBe(1);
  });

  it('on a tie among denials, the first such limit', () => {
    expect(decidingLimit([grant(1), deny(200), deny(200)])).toBe(1);
  });
});
