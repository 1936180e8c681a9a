// Every store call under a deadline and a circuit breaker. No caller waits on the store longer
// than `timeoutMs`; after repeated failures no decision is sent to the store at all until a
// background probe gets an answer. Failures surface as StoreUnavailable, for the failure policy.
import type { Resource } from '../config/policy.js';
import type { Grant, Store, StoreVerdict, TakeVerdict } from '../store/store.js';
import { Breaker } from './breaker.js';
import { StoreUnavailable } from './store-unavailable.js';

export interface GuardOptions {
  timeoutMs: number;
  /** Failures in a row that open the circuit. */
  failuresToOpen: number;
  /** How often the probe asks the store while the circuit is open. */
  probeEveryMs: number;
  /** Told about every failure (for throttled logs and counters). */
  onFailure?: (err: StoreUnavailable) => void;
  /** Told when the circuit opens (true) or closes (false). */
  onCircuit?: (open: boolean) => void;
}

const CIRCUIT_OPEN = new StoreUnavailable('circuit_open', 'store unavailable: circuit open after repeated failures');

export class GuardedStore implements Store {
  readonly breaker: Breaker;
  private probe: NodeJS.Timeout | undefined;

  constructor(
    private readonly inner: Store,
    private readonly options: GuardOptions,
  ) {
    this.breaker = new Breaker(options.failuresToOpen);
  }

  /** The store is answering (the circuit is closed). */
  get available(): boolean {
    return !this.breaker.isOpen;
  }

  /** A hint for callers denied because of the store: when the next probe may have closed the circuit. */
  get retryAfterMs(): number {
    return this.options.probeEveryMs;
  }

  acquire(resource: Resource, scope: string, cost: number, permitId: string): Promise<StoreVerdict> {
    return this.guard(() => this.inner.acquire(resource, scope, cost, permitId));
  }

  take(resource: Resource, scope: string, cost: number, want: readonly number[]): Promise<TakeVerdict> {
    return this.guard(() => this.inner.take(resource, scope, cost, want));
  }

  release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    return this.guard(() => this.inner.release(resource, scope, grant, delta));
  }

  refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    return this.guard(() => this.inner.refund(resource, scope, refundId, units, takenAt));
  }

  heartbeat(sidecarId: string, ttlMs: number): Promise<number> {
    return this.guard(() => this.inner.heartbeat(sidecarId, ttlMs));
  }

  ping(): Promise<void> {
    return this.guard(() => this.inner.ping());
  }

  async close(): Promise<void> {
    clearInterval(this.probe);
    this.probe = undefined;
    await this.inner.close();
  }

  private guard<T>(call: () => Promise<T>): Promise<T> {
    if (this.breaker.isOpen) {
      this.options.onFailure?.(CIRCUIT_OPEN);
      return Promise.reject(CIRCUIT_OPEN);
    }
    return this.withDeadline(call);
  }

  private withDeadline<T>(call: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        const err = new StoreUnavailable('timeout', `store unavailable: no answer within ${this.options.timeoutMs}ms`);
        this.failed(err);
        reject(err);
      }, this.options.timeoutMs);
      call().then(
        (value) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          this.succeeded();
          resolve(value);
        },
        (cause: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          const err = new StoreUnavailable('error', `store unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
          this.failed(err);
          reject(err);
        },
      );
    });
  }

  private succeeded(): void {
    if (!this.breaker.success()) return;
    clearInterval(this.probe);
    this.probe = undefined;
    this.options.onCircuit?.(false);
  }

  private failed(err: StoreUnavailable): void {
    this.options.onFailure?.(err);
    if (!this.breaker.failure()) return;
    this.options.onCircuit?.(true);
    // While open, only the probe talks to the store; its first answer closes the circuit.
    this.probe = setInterval(() => {
      this.withDeadline(() => this.inner.ping()).catch(() => undefined);
    }, this.options.probeEveryMs);
    this.probe.unref();
  }
}
