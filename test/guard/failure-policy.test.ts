// What each on_store_failure answers, and the local share's arithmetic, on the memory store.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import type { AcquireInput } from '../../src/decide/decision.js';
import { scopeOf } from '../../src/decide/scope.js';
import { FailurePolicy } from '../../src/guard/failure-policy.js';
import { StoreUnavailable } from '../../src/guard/store-unavailable.js';

const policy = parsePolicy(
  `
resources:
  - name: open
    on_store_failure: open
    limits: [{ name: l, algorithm: fixed_window, rate: 10/1m }]
  - name: closed
    on_store_failure: closed
    limits: [{ name: l, algorithm: fixed_window, rate: 10/1m }]
  - name: local
    keys: [tenant]
    on_store_failure: local
    limits:
      - { name: bucket, algorithm: token_bucket, rate: 100/1s, burst: 40 }
      - { name: window, algorithm: fixed_window, rate: 90/1h }
      - { name: slots, algorithm: concurrency, max: 2, ttl: 1m }
`,
  'p.yaml',
);
const DOWN = new StoreUnavailable('timeout', 'store unavailable: no answer within 20ms');

function input(name: string, cost = 1, tenant = 't'): AcquireInput {
  const resource = policy.resources.get(name)!;
  return { resource, scope: scopeOf(resource, resource.keys.map(() => tenant)), cost, priority: 0 };
}

describe('failure policy', () => {
  const now = Date.UTC(2026, 0, 1, 12);

  it('open grants, with no permit to settle against a budget nothing was charged to', async () => {
    const failures = new FailurePolicy({ maxKeys: 100, now: () => now, retryAfterMs: () => 500 });
    const d = await failures.decide(input('open'), 'permit', DOWN);
    expect(d).toMatchObject({ granted: true, decidedBy: 'FAIL_OPEN', permitId: '', limitName: 'l', limit: 10 });
  });

  it('closed denies, saying why and when to try again', async () => {
    const failures = new FailurePolicy({ maxKeys: 100, now: () => now, retryAfterMs: () => 500 });
    const d = await failures.decide(input('closed'), '', DOWN);
    expect(d).toMatchObject({ granted: false, decidedBy: 'FAIL_CLOSED', retryAfterMs: 500 });
    expect(d.reason).toMatch(/store unavailable/);
  });

  it('local divides every limit by the sidecars last seen', () => {
    const failures = new FailurePolicy({ maxKeys: 100, now: () => now, retryAfterMs: () => 500 });
    failures.sidecars = 4;
    const [bucket, window, slots] = failures.shareOf(policy.resources.get('local')!).limits;
    expect(bucket).toMatchObject({ capacity: 10, intervalMs: 40 }); // 25/s, burst 10
    expect(window).toMatchObject({ capacity: 22 });
    expect(slots).toMatchObject({ capacity: 1 }); // never below one unit
  });

  it('local enforces that share, and follows the sidecar count', async () => {
    const failures = new FailurePolicy({ maxKeys: 100, now: () => now, retryAfterMs: () => 500 });
    failures.sidecars = 20;
    // 20 sidecars: burst 2, window 4, slots 1.
    const first = await failures.decide(input('local'), 'p1', DOWN);
    expect(first).toMatchObject({ granted: true, decidedBy: 'LOCAL_FALLBACK', permitId: 'p1' });
    const second = await failures.decide(input('local'), 'p2', DOWN);
    expect(second).toMatchObject({ granted: false, decidedBy: 'LOCAL_FALLBACK', limitName: 'slots' });
    expect(second.reason).toMatch(/share of limit "slots"/);
    failures.sidecars = 1;
    const alone = await failures.decide(input('local', 1, 'other'), 'p3', DOWN);
    expect(alone).toMatchObject({ granted: true, limit: 2 });
  });
});
