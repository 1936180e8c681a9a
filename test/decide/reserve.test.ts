// The decider passes the request's priority to the store as the part of each limit it may use,
// and a denial by the reserve says so.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { Decider } from '../../src/decide/decider.js';
import { scopeOf } from '../../src/decide/scope.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';

function setUp() {
  const policy = parsePolicy(
    `resources:
  - name: r
    keys: [k]
    reserve: [{ fraction: 0.2, min_priority: 5 }, { fraction: 0.1, min_priority: 9 }]
    limits: [{ name: daily, algorithm: fixed_window, rate: 10/1d }]
`,
    'p.yaml',
  );
  const resource = policy.resources.get('r')!;
  const decider = new Decider(new MemoryStore({ maxKeys: 100, sweepEveryMs: 0 }), { maxPermits: 100 });
  const input = (priority: number, cost = 1) => ({ resource, scope: scopeOf(resource, ['a']), cost, priority });
  return { decider, input };
}

describe('decisions with a reserve', () => {
  it('each priority band uses its part: 7 for priority < 5, 9 for 5..8, all 10 from 9', async () => {
    const { decider, input } = setUp();
    expect(await decider.acquire(input(0, 7))).toMatchObject({ granted: true, remaining: 0 });
    const low = await decider.acquire(input(4));
    expect(low).toMatchObject({ granted: false, limitName: 'daily' });
    expect(low.reason).toBe('priority 4 has 0 of limit "daily" left; the rest of limit "daily" is reserved for priorities above 4');
    expect(await decider.acquire(input(5, 2))).toMatchObject({ granted: true, remaining: 0 });
    expect((await decider.acquire(input(8))).reason).toMatch(/reserved for priorities above 8/);
    expect(await decider.acquire(input(9))).toMatchObject({ granted: true, remaining: 0 });
    // Out for everyone: the limit's own reason.
    expect((await decider.acquire(input(100))).reason).toBe('limit "daily" has 0 of 10 left');
  });

  it('a cost only the reserve keeps from fitting is never for that priority, and the reason names the reserve', async () => {
    const { decider, input } = setUp();
    const d = await decider.acquire(input(0, 8));
    expect(d).toMatchObject({ granted: false, retryAfterMs: Infinity });
    expect(d.reason).toBe('cost 8 exceeds what priority 0 may use of limit "daily" (capacity 10): the rest of limit "daily" is reserved for priorities above 0');
    expect(await decider.acquire(input(9, 10))).toMatchObject({ granted: true });
  });
});
