// A grant, and giving it back: once, by release(actualCost?) or by leaving an `await using` block.

/**
 * Who decided. The sidecar's names (sluice.v1 DecidedBy): LEASE (budget this sidecar had taken
 * ahead), STORE (Redis or the embedded store), FAIL_OPEN, FAIL_CLOSED and LOCAL_FALLBACK (the
 * store could not answer in time; the resource's on_store_failure decided). The client's own:
 * CLIENT_OPEN and CLIENT_CLOSED (the sidecar could not be reached; the client's onUnavailable
 * 'open' granted, or 'closed' denied).
 */
export type DecidedBy = 'LEASE' | 'STORE' | 'FAIL_OPEN' | 'FAIL_CLOSED' | 'LOCAL_FALLBACK' | 'CLIENT_OPEN' | 'CLIENT_CLOSED';

export interface Grant {
  /** Set when there is something to give back: a concurrency slot, or a cost to settle. */
  permitId: string | undefined;
  /** Units left in the deciding limit after this grant. */
  remaining: number;
  /** The deciding limit's capacity. */
  limit: number;
  /** The limit with the least left. */
  limitName: string;
  decidedBy: DecidedBy;
  /** Time until the deciding limit is full again if nothing more is taken. */
  resetAfterMs: number;
  /** Time spent waiting in line (maxWait); 0 when the request did not wait. */
  waitedMs: number;
}

/** Sends a Release: true when the sidecar released the permit. */
export type ReleaseFn = (permitId: string, actualCost: number | undefined) => Promise<boolean>;

export class Permit implements Grant, AsyncDisposable {
  readonly permitId: string | undefined;
  readonly remaining: number;
  readonly limit: number;
  readonly limitName: string;
  readonly decidedBy: DecidedBy;
  readonly resetAfterMs: number;
  readonly waitedMs: number;
  readonly #send: ReleaseFn;
  #releasing: Promise<boolean> | undefined;

  /** Permits come from Client.acquire. */
  constructor(grant: Grant, send: ReleaseFn) {
    this.permitId = grant.permitId;
    this.remaining = grant.remaining;
    this.limit = grant.limit;
    this.limitName = grant.limitName;
    this.decidedBy = grant.decidedBy;
    this.resetAfterMs = grant.resetAfterMs;
    this.waitedMs = grant.waitedMs;
    this.#send = send;
  }

  /** Whether release has been called (or the permit disposed). */
  get released(): boolean {
    return this.#releasing !== undefined;
  }

  /**
   * Gives the permit back, settling the real cost when `actualCost` is given (the difference from
   * the acquired cost is refunded or charged). Only the first call counts: it resolves to the
   * sidecar's answer (false for an unknown, expired or already released permit), and to false
   * without calling the sidecar when there is no permitId. Later calls wait for the first and
   * resolve to false.
   */
  release(actualCost?: number): Promise<boolean> {
    if (this.#releasing) {
      const nothing = () => false;
      return this.#releasing.then(nothing, nothing);
    }
    this.#releasing = this.permitId === undefined ? Promise.resolve(false) : this.#send(this.permitId, actualCost);
    return this.#releasing;
  }

  /** Leaving an `await using` block releases the permit, unless it was released already. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
