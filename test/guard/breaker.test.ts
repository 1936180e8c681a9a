import { describe, expect, it } from 'vitest';
import { Breaker } from '../../src/guard/breaker.js';

describe('circuit breaker', () => {
  it('opens after the given failures in a row, and only then', () => {
    const breaker = new Breaker(3);
    expect(breaker.failure()).toBe(false);
    expect(breaker.failure()).toBe(false);
    expect(breaker.isOpen).toBe(false);
    expect(breaker.failure()).toBe(true);
    expect(breaker.isOpen).toBe(true);
    expect(breaker.failure()).toBe(false); // already open: no second "opened"
  });

  it('a success in between starts the count again', () => {
    const breaker = new Breaker(2);
    breaker.failure();
    expect(breaker.success()).toBe(false); // was not open
    breaker.failure();
    expect(breaker.isOpen).toBe(false);
    breaker.failure();
    expect(breaker.isOpen).toBe(true);
  });

  it('closes on the first success while open', () => {
    const breaker = new Breaker(1);
    breaker.failure();
    expect(breaker.success()).toBe(true);
    expect(breaker.isOpen).toBe(false);
  });
});
