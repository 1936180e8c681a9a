// A hot key at twice its limit, leased as slices of its schedule by two real sidecars, while its
// Redis is frozen (SIGSTOP) for two seconds in the middle: what the sidecars already hold is still
// served on its schedule, the takes that Redis cannot answer are denied by on_store_failure
// closed, and across the whole run the grants never pass burst + rate x elapsed by Redis TIME.
import { describe, expect, it } from 'vitest';
import { hotKeyPhase, runPhase } from '../../bench/accuracy-phase.js';
import { useHotKey } from '../support/hot-key.js';

const RATE_PER_S = 1000;
const BURST = 100;
const DEMAND_S = 6;

describe('slices of a hot key while Redis is frozen', () => {
  const world = useHotKey({ sidecars: 2, ratePerS: RATE_PER_S, burst: BURST, storeTimeout: '50ms' });

  it('answers every request, by closed while no take can be made, and never grants past the limit', async () => {
    const phase = hotKeyPhase({
      round: 0,
      resource: 'hot',
      tenantPrefix: 'paused-',
      ratePerS: RATE_PER_S,
      burst: BURST,
      demandPerS: 2 * RATE_PER_S,
      weights: [1, 1],
    });
    const freeze = setTimeout(() => world.redis.pause(), 2_000);
    const thaw = setTimeout(() => world.redis.resume(), 4_000);
    let r;
    try {
      r = await runPhase(phase, world.clients, world.redis.client, DEMAND_S);
    } finally {
      clearTimeout(freeze);
      clearTimeout(thaw);
      world.redis.resume();
    }
    console.log(`frozen Redis, 2 sidecars: granted ${r.granted} of ${r.allowed} allowed, ${r.denied} denied, ${r.failed} failed; decided_by ${JSON.stringify(r.decidedBy)}`);
    expect(r.failed).toBe(0);
    expect(r.granted + r.denied).toBe(r.sent);
    expect(r.decidedBy.FAIL_CLOSED ?? 0).toBeGreaterThan(0); // the freeze was felt
    expect(r.overshoot).toBe(0);
    expect(r.granted).toBeLessThanOrEqual(BURST + RATE_PER_S * r.elapsedS);
  }, 120_000);
});
