// Leases on a fake clock over the memory store (the same semantics as Redis): one store, as many
// sidecars' Leases as a test makes, and demand driven as the decider drives it.
import { parsePolicy } from '../../src/config/load.js';
import type { Resource } from '../../src/config/policy.js';
import type { AcquireInput, Decision } from '../../src/decide/decision.js';
import { scopeOf } from '../../src/decide/scope.js';
import { Leases } from '../../src/lease/leases.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import type { Store } from '../../src/store/store.js';

const START = Date.UTC(2026, 0, 1, 12, 0, 0);

/** `extra`: more fields of the resource, each line indented by four spaces. */
export function leaseClock(limitsYaml: string, lease = '{ enabled: true, max_fraction: 0.1, ttl: 1s }', extra = '') {
  let now = START;
  const clock = () => now;
  const policy = parsePolicy(`resources:\n  - name: r\n    keys: [k]\n    lease: ${lease}\n${extra}    limits:\n${limitsYaml}`, 'p.yaml');
  const resource = policy.resources.get('r')!;
  const store = new MemoryStore({ maxKeys: 1000, now: clock, sweepEveryMs: 0 });
  const takes = countTakes(store);
  const sidecar = () => new Leases(store, { maxLeasedKeys: 1000, maxTrackedKeys: 1000, now: clock });
  const input = (key = 'a', cost = 1, priority = 0): AcquireInput => ({ resource, scope: scopeOf(resource, [key]), cost, priority });
  return {
    resource,
    store,
    takes,
    sidecar,
    input,
    advance: (ms: number) => (now += ms),
    get now() {
      return now;
    },
  };
}

function countTakes(store: Store): { count: number } {
  const counter = { count: 0 };
  const take = store.take.bind(store);
  store.take = (...args) => {
    counter.count++;
    return take(...args);
  };
  return counter;
}

/** What the store alone would say now, for a request of `cost`: its remaining in the deciding limit. */
export async function storeRemaining(store: Store, resource: Resource, scope: string): Promise<number> {
  const v = await store.take(resource, scope, 1, resource.limits.map(() => 0), 0);
  if (v.granted) await store.refund(resource, scope, `probe-${Math.random()}`, v.taken, v.now);
  return v.granted ? Math.min(...v.left.map((left, i) => left + v.taken[i]!)) : v.remaining;
}

export interface Outcome {
  granted: boolean;
  /** Undefined when the store decided directly (the lease passed the request on). */
  leased?: Decision;
}

/** Demand of `perSecond` requests, spread evenly over `ms`, through one sidecar, as the decider drives it. */
export async function demand(t: LeaseClock, leases: Leases, perSecond: number, ms: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const gap = 1000 / perSecond;
  for (let elapsed = 0; elapsed < ms; elapsed += gap) {
    const leased = await leases.acquire(t.input());
    outcomes.push(leased ? { granted: leased.granted, leased } : { granted: (await directAcquire(t)).granted });
    t.advance(gap);
    await leases.tick();
  }
  return outcomes;
}

export type LeaseClock = ReturnType<typeof leaseClock>;

export async function directAcquire(t: LeaseClock, cost = 1) {
  const input = t.input('a', cost);
  return t.store.acquire(input.resource, input.scope, cost, '');
}
