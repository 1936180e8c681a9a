// Concurrency permits with a ttl, driven by an explicit clock.
import { describe, expect, it } from 'vitest';
import {
  checkConcurrency,
  holdPermit,
  reclaimExpired,
  releasePermit,
  type ConcurrencyParams,
  type ConcurrencyState,
} from '../../src/limits/concurrency.js';

const P: ConcurrencyParams = { capacity: 3, ttlMs: 1000 };
const START = 1_700_000_000_000;

/** acquire = reclaim, check, and hold when allowed, as a store does. */
function pool(params: ConcurrencyParams = P) {
  const state: ConcurrencyState = { held: 0, permits: [] };
  let seq = 0;
  const p = {
    now: START,
    state,
    acquire(cost = 1, id = `p${seq++}`) {
      reclaimExpired(state, p.now);
      const v = checkConcurrency(state, p.now, cost, params);
      if (v.allowed) holdPermit(state, p.now, id, cost, params);
      return { ...v, id };
    },
    release(id: string) {
      return releasePermit(state, id);
    },
  };
  return p;
}

describe('concurrency permits', () => {
  it('grants up to capacity held at once, then denies', () => {
    const p = pool();
    expect(p.acquire().remaining).toBe(2);
    expect(p.acquire().remaining).toBe(1);
    const last = p.acquire();
    expect(last.allowed).toBe(true);
    expect(last.remaining).toBe(0);
    expect(last.resetAfterMs).toBe(1000);
    const denied = p.acquire();
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    expect(p.state.held).toBe(3);
    expect(p.state.permits).toHaveLength(3);
  });

  it('a release frees the slot; releasing the same permit twice frees nothing more', () => {
    const p = pool();
    const a = p.acquire();
    p.acquire();
    p.acquire();
    expect(p.release(a.id)).toBe(true);
    expect(p.state.held).toBe(2);
    expect(p.release(a.id)).toBe(false);
    expect(p.state.held).toBe(2);
    expect(p.acquire().allowed).toBe(true);
    expect(p.acquire().allowed).toBe(false);
  });

  it('releasing an unknown permit frees nothing', () => {
    const p = pool();
    p.acquire();
    expect(p.release('nope')).toBe(false);
    expect(p.state.held).toBe(1);
  });

  it('weights by cost: cost 3 takes 3 slots, and its release frees 3', () => {
    const p = pool({ capacity: 5, ttlMs: 1000 });
    const big = p.acquire(3);
    expect(big.allowed).toBe(true);
    expect(big.remaining).toBe(2);
    expect(p.acquire(3).allowed).toBe(false);
    expect(p.acquire(2).remaining).toBe(0);
    p.release(big.id);
    expect(p.state.held).toBe(2);
    expect(p.acquire(3).allowed).toBe(true);
  });

  it('a cost above capacity is never allowed: retryAfterMs is Infinity', () => {
    const p = pool();
    const v = p.acquire(4);
    expect(v.allowed).toBe(false);
    expect(v.retryAfterMs).toBe(Infinity);
    expect(v.remaining).toBe(3);
    expect(p.state.held).toBe(0);
  });

  it('reclaims permits once their ttl has passed (not 1 ms before)', () => {
    const p = pool();
    p.acquire(3);
    p.now = START + 999;
    expect(p.acquire().allowed).toBe(false);
    p.now = START + 1000;
    const v = p.acquire();
    expect(v.allowed).toBe(true);
    expect(v.remaining).toBe(2);
    expect(p.state.held).toBe(1);
    expect(p.state.permits).toHaveLength(1);
  });

  it('reclaimExpired drops only expired permits, in expiry order', () => {
    const state: ConcurrencyState = { held: 0, permits: [] };
    holdPermit(state, 0, 'a', 1, P);
    holdPermit(state, 10, 'b', 2, P);
    holdPermit(state, 20, 'c', 1, P);
    reclaimExpired(state, 1010);
    expect(state.permits.map((x) => x.id)).toEqual(['c']);
    expect(state.held).toBe(1);
  });

  it('retry_after is when enough permits will have expired for the cost to fit', () => {
    const p = pool();
    p.now = START;
    p.acquire();
    p.now = START + 10;
    p.acquire();
    p.now = START + 20;
    p.acquire();
    p.now = START + 30;
    // Cost 2 needs two slots: the second-oldest permit expires at START + 1010.
    const denied = p.acquire(2);
    expect(denied.allowed).toBe(false);
    expect(denied.retryAfterMs).toBe(980);
    // The last permit expires at START + 1020.
    expect(denied.resetAfterMs).toBe(990);
    // Cost 1 only needs the oldest to go.
    expect(p.acquire(1).retryAfterMs).toBe(970);
    const t = p.now;
    p.now = t + denied.retryAfterMs - 1;
    expect(p.acquire(2).allowed).toBe(false);
    p.now = t + denied.retryAfterMs;
    expect(p.acquire(2).allowed).toBe(true);
  });

  it('a release before expiry lets a waiter in earlier than its retry_after', () => {
    const p = pool();
    const a = p.acquire(3);
    p.now += 100;
    expect(p.acquire().retryAfterMs).toBe(900);
    p.release(a.id);
    expect(p.acquire().allowed).toBe(true);
  });

  it('keeps permits in expiry order when the ttl changes (a reloaded policy), so reclaiming reads the front only', () => {
    const state: ConcurrencyState = { held: 0, permits: [] };
    holdPermit(state, 0, 'long', 1, { capacity: 3, ttlMs: 1000 });
    holdPermit(state, 10, 'short', 1, { capacity: 3, ttlMs: 100 });
    holdPermit(state, 20, 'same', 1, { capacity: 3, ttlMs: 90 });
    expect(state.permits.map((x) => x.id)).toEqual(['short', 'same', 'long']);
    reclaimExpired(state, 110);
    expect(state.permits.map((x) => x.id)).toEqual(['long']);
    expect(state.held).toBe(1);
  });

  it('retry_after over permits of mixed costs: the soonest permits whose units make room', () => {
    const p = pool({ capacity: 5, ttlMs: 1000 });
    p.acquire(1);
    p.now += 10;
    p.acquire(3);
    p.now += 10;
    p.acquire(1);
    // One unit lacking: the oldest permit; three lacking: the oldest two (1 + 3 units); five: all.
    expect(p.acquire(1).retryAfterMs).toBe(980);
    expect(p.acquire(3).retryAfterMs).toBe(990);
    expect(p.acquire(5).retryAfterMs).toBe(1000);
  });
});

