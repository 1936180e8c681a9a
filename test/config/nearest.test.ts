// The valid name nearest a misspelt one: a slip of a letter or two, never a guess at a different word.
import { describe, expect, it } from 'vitest';
import { editDistance, nearest } from '../../src/config/nearest.js';

const ALGORITHMS = ['token_bucket', 'fixed_window', 'sliding_window', 'concurrency'];

describe('editDistance', () => {
  it.each([
    ['limits', 'limits', 0],
    ['limts', 'limits', 1],
    ['burts', 'burst', 1],
    ['', 'abc', 3],
    ['kitten', 'sitting', 3],
  ])('%s -> %s: %i', (a, b, distance) => {
    expect(editDistance(a, b)).toBe(distance);
    expect(editDistance(b, a)).toBe(distance);
  });
});

describe('nearest', () => {
  it('names the candidate a letter or two away, a swap of neighbours counting as one', () => {
    expect(nearest('token_buckt', ALGORITHMS)).toBe('token_bucket');
    expect(nearest('fixed_windwo', ALGORITHMS)).toBe('fixed_window');
    expect(nearest('limts', ['name', 'keys', 'limits'])).toBe('limits');
  });

  it('ignores case', () => {
    expect(nearest('Sliding_Window', ALGORITHMS)).toBe('sliding_window');
  });

  it('names none for a different word, a tie, the word itself, or an overlong one', () => {
    expect(nearest('leaky_bucket', ALGORITHMS)).toBeUndefined();
    expect(nearest('x', ['s', 'm'])).toBeUndefined();
    expect(nearest('limits', ['limits'])).toBeUndefined();
    expect(nearest(`${'a'.repeat(65)}`, ['a'.repeat(64)])).toBeUndefined();
  });
});
