// A store whose calls are each run through `around`, named by what they do: tracing.ts puts a
// span around those a traced call makes. sluice sends the store calls of many requests in one
// Redis pipeline, so a span is one request's call within it, not the pipeline itself.
import type { Resource } from '../config/policy.js';
import type { Grant, LineEvents, LineVerdict, ScopeLook, Store, StoreVerdict, TakeVerdict, Ticket } from '../store/store.js';

export type AroundCall = <T>(operation: string, work: () => Promise<T>) => Promise<T>;

export class TracedStore implements Store {
  constructor(
    private readonly inner: Store,
    private readonly around: AroundCall,
  ) {}

  acquire(resource: Resource, scope: string, cost: number, permitId: string, usable?: number, priority?: number): Promise<StoreVerdict> {
    return this.around('acquire', () => this.inner.acquire(resource, scope, cost, permitId, usable, priority));
  }

  take(resource: Resource, scope: string, cost: number, want: readonly number[], aheadMs: number, usable?: number): Promise<TakeVerdict> {
    return this.around('take', () => this.inner.take(resource, scope, cost, want, aheadMs, usable));
  }

  release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    return this.around('release', () => this.inner.release(resource, scope, grant, delta));
  }

  refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    return this.around('refund', () => this.inner.refund(resource, scope, refundId, units, takenAt));
  }

  join(resource: Resource, scope: string, ticket: Ticket, maxWaiters: number): Promise<LineVerdict> {
    return this.around('join', () => this.inner.join(resource, scope, ticket, maxWaiters));
  }

  retry(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return this.around('retry', () => this.inner.retry(resource, scope, ticket));
  }

  leave(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    return this.around('leave', () => this.inner.leave(resource, scope, ticket));
  }

  inspect(resource: Resource, scope: string): Promise<ScopeLook> {
    return this.around('inspect', () => this.inner.inspect(resource, scope));
  }

  // The sidecar's own upkeep: never a request's.
  listen(sidecarId: string, events: LineEvents): void {
    this.inner.listen(sidecarId, events);
  }

  heartbeat(sidecarId: string, ttlMs: number): Promise<number> {
    return this.inner.heartbeat(sidecarId, ttlMs);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
