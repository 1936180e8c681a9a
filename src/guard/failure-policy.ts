// What a resource's `on_store_failure` says to do when the store cannot decide in time:
// open (grant), closed (deny), or local (enforce this sidecar's share of each limit in memory).
import { usableFraction, type Limit, type Resource } from '../config/policy.js';
import { denied, fromVerdict, granted, type AcquireInput, type Decision } from '../decide/decision.js';
import { algorithmOf } from '../limits/registry.js';
import { MemoryStore } from '../store/memory/memory-store.js';
import type { StoreUnavailable } from './store-unavailable.js';

export interface FailurePolicyOptions {
  maxKeys: number;
  now?: () => number;
  /** When a denied caller may try again: the next chance the store is back. */
  retryAfterMs: () => number;
}

export class FailurePolicy {
  /** Budgets for `local`: shares of the limits, kept while the store is away. */
  readonly local: MemoryStore;
  /** Sidecars sharing the store when it was last heard from; each enforces 1/n of a limit. */
  sidecars = 1;
  private readonly shares = new WeakMap<Resource, { sidecars: number; share: Resource }>();
  private readonly now: () => number;

  constructor(private readonly options: FailurePolicyOptions) {
    this.now = options.now ?? Date.now;
    this.local = new MemoryStore({ maxKeys: options.maxKeys, now: this.now });
  }

  async decide({ resource, scope, cost, priority }: AcquireInput, permitId: string, err: StoreUnavailable): Promise<Decision> {
    const first = resource.limits[0]!;
    switch (resource.onStoreFailure) {
      case 'open':
        return granted(first, 'FAIL_OPEN', { remaining: 0, resetAfterMs: 0, decidedAt: this.now() });
      case 'closed':
        return denied(first, 'FAIL_CLOSED', { remaining: 0, resetAfterMs: 0, retryAfterMs: this.options.retryAfterMs(), decidedAt: this.now() }, err.message);
      case 'local': {
        const share = this.shareOf(resource);
        // The share keeps the resource's reserve: each sidecar holds back its part of it.
        const verdict = await this.local.acquire(share, scope, cost, permitId, usableFraction(resource, priority));
        const decision = fromVerdict(
          share,
          verdict,
          'LOCAL_FALLBACK',
          (limit) => `${err.message}; ${verdict.reason ?? `this sidecar's share of limit "${limit.name}" has ${verdict.remaining} of ${limit.capacity} left`}`,
        );
        // Its slot in the local share is named by the permit.
        if (decision.granted) decision.permitId = permitId;
        return decision;
      }
    }
  }

  /** The resource with every limit divided by the number of sidecars (at least 1 unit each). */
  shareOf(resource: Resource): Resource {
    const cached = this.shares.get(resource);
    if (cached && cached.sidecars === this.sidecars) return cached.share;
    const share = { ...resource, limits: resource.limits.map((limit): Limit => algorithmOf(limit).share(limit, this.sidecars)) };
    this.shares.set(resource, { sidecars: this.sidecars, share });
    return share;
  }

  async close(): Promise<void> {
    await this.local.close();
  }
}
