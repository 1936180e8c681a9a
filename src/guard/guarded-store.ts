// Every store call behind a circuit breaker. The deadline itself is kept by the store's transport
// (it alone sees when a command was written and when Redis last answered); here failures are
// judged: only evidence about the store (silence, lost connections, Redis refusing work, failed
// probes) counts towards opening the circuit, never one call's script error. While the circuit
// is open no decision is sent to the store at all, until a background probe gets an answer.
// Failures surface as StoreUnavailable, for the failure policy. What is not a store failure (a bug
// in sluice) passes through untouched: it is neither met by on_store_failure nor counted.
import type { Resource } from '../config/policy.js';
import {
  ScriptError,
  StoreError,
  StoreTimeout,
  type Grant,
  type LineEvents,
  type LineVerdict,
  type ScopeLook,
  type Store,
  type StoreVerdict,
  type TakeVerdict,
  type Ticket,
} from '../store/store.js';
import { Breaker } from './breaker.js';
import { StoreUnavailable } from './store-unavailable.js';

export interface GuardOptions {
  /** Failures in a row that open the circuit. */
  failuresToOpen: number;
  /** How often the probe asks the store while the circuit is open. */
  probeEveryMs: number;
  /** Told about every failure (for throttled logs and counters). */
  onFailure?: (err: StoreUnavailable) => void;
  /** Told when the circuit opens (true) or closes (false). */
  onCircuit?: (open: boolean) => void;
}

export interface StoreHealth {
  up: boolean;
  /** What the check found: that the script answered, or why not, in the store's own words. */
  text: string;
}

const CIRCUIT_OPEN = new StoreUnavailable('circuit_open', 'store unavailable: circuit open after repeated failures');

export class GuardedStore implements Store {
  readonly breaker: Breaker;
  private probe: NodeJS.Timeout | undefined;
  /** The silence last counted: the commands it failed are one failure, not many. */
  private lastSilence: unknown = null;

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

  /**
   * Asks the store now, through the decision script (whatever the circuit says), and reports.
   * For /storez: proves the decision path works, not only that a connection is open.
   */
  async check(): Promise<StoreHealth> {
    try {
      await this.inner.ping();
      this.succeeded();
      return { up: true, text: 'store up: the decision script answers' };
    } catch (cause) {
      const err = this.judge(cause);
      this.failed(err);
      return { up: false, text: `${err.message}; deciding by on_store_failure` };
    }
  }

  acquire(resource: Resource, scope: string, cost: number, permitId: string, usable?: number, priority?: number): Promise<StoreVerdict> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.acquire(resource, scope, cost, permitId, usable, priority).then(this.passed, this.caught);
  }

  join(resource: Resource, scope: string, ticket: Ticket, maxWaiters: number): Promise<LineVerdict> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.join(resource, scope, ticket, maxWaiters).then(this.passed, this.caught);
  }

  retry(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.retry(resource, scope, ticket).then(this.passed, this.caught);
  }

  leave(resource: Resource, scope: string, ticket: string): Promise<LineVerdict> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.leave(resource, scope, ticket).then(this.passed, this.caught);
  }

  inspect(resource: Resource, scope: string): Promise<ScopeLook> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.inspect(resource, scope).then(this.passed, this.caught);
  }

  listen(sidecarId: string, events: LineEvents): void {
    this.inner.listen(sidecarId, events);
  }

  take(resource: Resource, scope: string, cost: number, want: readonly number[], aheadMs: number, usable?: number): Promise<TakeVerdict> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.take(resource, scope, cost, want, aheadMs, usable).then(this.passed, this.caught);
  }

  release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.release(resource, scope, grant, delta).then(this.passed, this.caught);
  }

  refund(resource: Resource, scope: string, refundId: string, units: readonly number[], takenAt: number): Promise<boolean> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.refund(resource, scope, refundId, units, takenAt).then(this.passed, this.caught);
  }

  heartbeat(sidecarId: string, ttlMs: number): Promise<number> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.heartbeat(sidecarId, ttlMs).then(this.passed, this.caught);
  }

  ping(): Promise<void> {
    if (this.breaker.isOpen) return this.refuse();
    return this.inner.ping().then(this.passed, this.caught);
  }

  async close(): Promise<void> {
    clearInterval(this.probe);
    this.probe = undefined;
    await this.inner.close();
  }

  private refuse(): Promise<never> {
    this.options.onFailure?.(CIRCUIT_OPEN);
    return Promise.reject(CIRCUIT_OPEN);
  }

  private readonly passed = <T>(value: T): T => {
    this.succeeded();
    return value;
  };

  private readonly caught = (cause: unknown): never => {
    if (!(cause instanceof StoreError)) throw cause;
    const err = this.judge(cause);
    this.failed(err);
    throw err;
  };

  /** What the failure means, in the store's own words, once prefixed. */
  private judge(cause: unknown): StoreUnavailable {
    const detail = (cause as Error)?.message ?? String(cause);
    if (cause instanceof StoreTimeout) {
      // An answer after all is evidence that the store answers again.
      cause.late.then(() => this.succeeded(), () => undefined);
      return new StoreUnavailable('timeout', `store unavailable: ${detail}`, { cause }, cause.late, cause.silence);
    }
    const reason = cause instanceof ScriptError ? 'script' : 'error';
    return new StoreUnavailable(reason, `store unavailable: ${detail}`, { cause });
  }

  private succeeded(): void {
    if (!this.breaker.success()) return;
    clearInterval(this.probe);
    this.probe = undefined;
    this.options.onCircuit?.(false);
  }

  private failed(err: StoreUnavailable): void {
    this.options.onFailure?.(err);
    // One call's script error says nothing about the store: it never moves the breaker.
    if (err.reason === 'script') return;
    if (err.silence !== null) {
      if (err.silence === this.lastSilence) return;
      this.lastSilence = err.silence;
    }
    if (!this.breaker.failure()) return;
    this.options.onCircuit?.(true);
    // While open, only the probe talks to the store; its first answer closes the circuit.
    this.probe = setInterval(() => {
      this.inner.ping().then(
        () => this.succeeded(),
        () => undefined,
      );
    }, this.options.probeEveryMs);
    this.probe.unref();
  }
}
