// A client of the sluice sidecar: acquire permits (waiting in the sidecar with maxWait), release
// and settle them, and decide what an unreachable sidecar means.
import { status, type CallOptions, type ClientOptions as GrpcClientOptions, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { Denied, SluiceError, Unavailable } from './errors.js';
import { Permit, type DecidedBy, type ReleaseFn } from './permit.js';
import { connectStub, durationOf, isServiceError, msOf, type AcquireResponse, type RateLimiterStub, type ReleaseRequest, type ReleaseResponse } from './wire.js';

export const DEFAULT_TARGET = '127.0.0.1:50051';
const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * What acquire does when the sidecar cannot be reached or does not answer in time: 'open'
 * resolves a permit decided by CLIENT_OPEN, 'closed' rejects with Denied decided by
 * CLIENT_CLOSED, 'raise' rejects with Unavailable.
 */
export type OnUnavailable = 'open' | 'closed' | 'raise';
const ON_UNAVAILABLE: readonly string[] = ['open', 'closed', 'raise'] satisfies OnUnavailable[];

export interface ClientOptions {
  /** Default 'raise'. */
  onUnavailable?: OnUnavailable;
  /** Milliseconds a call may take before it counts as unavailable; an acquire gets its maxWait on top. Default 5000. */
  timeout?: number;
  /** @grpc/grpc-js client options: channel options (`grpc.*`) and interceptors. */
  grpc?: GrpcClientOptions;
}

export interface AcquireOptions {
  /** A resource name from the sidecar's policy. */
  resource: string;
  /** The scope: a value for every key the resource lists (tenant, user, model, ...). */
  descriptors?: Record<string, string>;
  /** Units to take. Default 1. */
  cost?: number;
  /** Milliseconds to wait in the sidecar's line for budget (at most 300 000). Default 0: answer at once. */
  maxWait?: number;
  /** Higher is served first among waiting requests. Default 0. */
  priority?: number;
  /** One of the resource's lanes. Default: its first. */
  lane?: string;
  /** Aborting cancels the call: it rejects with the signal's reason, and a waiting request leaves the line. */
  signal?: AbortSignal;
}

type UnaryStart<Res> = (options: CallOptions, done: (err: ServiceError | null, response?: Res) => void) => ClientUnaryCall;

export class Client {
  /** The sidecar's address: the constructor's argument, else env SLUICE_ADDR, else 127.0.0.1:50051. */
  readonly target: string;
  readonly onUnavailable: OnUnavailable;
  /** Milliseconds, as ClientOptions.timeout. */
  readonly timeout: number;
  readonly #stub: RateLimiterStub;

  constructor(target?: string, options: ClientOptions = {}) {
    this.target = target || process.env.SLUICE_ADDR || DEFAULT_TARGET;
    this.onUnavailable = options.onUnavailable ?? 'raise';
    if (!ON_UNAVAILABLE.includes(this.onUnavailable)) throw new TypeError(`onUnavailable: expected 'open', 'closed' or 'raise', got ${JSON.stringify(this.onUnavailable)}`);
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    if (!(this.timeout > 0 && Number.isFinite(this.timeout))) throw new RangeError(`timeout: expected milliseconds above 0, got ${this.timeout}`);
    this.#stub = connectStub(this.target, options.grpc ?? {});
  }

  /** Resolves to a permit, or rejects with Denied (nothing was charged), SluiceError or Unavailable. */
  async acquire(options: AcquireOptions): Promise<Permit> {
    const { resource, descriptors = {}, cost = 1, maxWait = 0, priority = 0, lane = '', signal } = options;
    if (!(maxWait >= 0 && Number.isFinite(maxWait))) throw new RangeError(`maxWait: expected milliseconds, 0 or more, got ${maxWait}`);
    signal?.throwIfAborted();
    const request = { resource, descriptors, cost, max_wait: maxWait > 0 ? durationOf(maxWait) : null, priority, lane };
    let answer: AcquireResponse;
    try {
      answer = await this.#unary<AcquireResponse>((callOptions, done) => this.#stub.Acquire(request, callOptions, done), maxWait, signal);
    } catch (err) {
      return this.#unanswered(this.#errorOf(err));
    }
    if (signal?.aborted) {
      // The grant arrived as the caller gave up: give it back rather than leave it held.
      if (answer.granted && answer.permit_id) this.#release(answer.permit_id, undefined).catch(() => {});
      throw signal.reason;
    }
    if (!answer.granted) {
      throw new Denied({
        retryAfterMs: msOf(answer.retry_after),
        limitName: answer.limit_name,
        reason: answer.reason,
        decidedBy: answer.decided_by as DecidedBy,
        remaining: answer.remaining,
        limit: answer.limit,
        waitedMs: msOf(answer.waited) ?? 0,
      });
    }
    return new Permit(
      {
        permitId: answer.permit_id || undefined,
        remaining: answer.remaining,
        limit: answer.limit,
        limitName: answer.limit_name,
        decidedBy: answer.decided_by as DecidedBy,
        resetAfterMs: msOf(answer.reset_after) ?? 0,
        waitedMs: msOf(answer.waited) ?? 0,
      },
      this.#release,
    );
  }

  /**
   * Acquires, runs fn with the permit, and releases it when fn settles (unless fn released it
   * itself, as with permit.release(actualCost)). Resolves to fn's result.
   */
  async withPermit<T>(options: AcquireOptions, fn: (permit: Permit) => T | PromiseLike<T>): Promise<T> {
    await using permit = await this.acquire(options);
    return await fn(permit);
  }

  /** Closes the connection; calls under way are cancelled. */
  close(): void {
    this.#stub.close();
  }

  /** An acquire that got no answer: onUnavailable decides when the sidecar was unreachable. */
  #unanswered(error: unknown): Permit {
    if (!(error instanceof Unavailable) || this.onUnavailable === 'raise') throw error;
    if (this.onUnavailable === 'closed') {
      throw new Denied(
        { retryAfterMs: undefined, limitName: '', reason: `${error.message}; the client fails closed`, decidedBy: 'CLIENT_CLOSED', remaining: 0, limit: 0, waitedMs: 0 },
        { cause: error },
      );
    }
    return new Permit({ permitId: undefined, remaining: 0, limit: 0, limitName: '', decidedBy: 'CLIENT_OPEN', resetAfterMs: 0, waitedMs: 0 }, this.#release);
  }

  readonly #release: ReleaseFn = async (permitId, actualCost) => {
    const request: ReleaseRequest = actualCost === undefined ? { permit_id: permitId } : { permit_id: permitId, actual_cost: actualCost };
    try {
      return (await this.#unary<ReleaseResponse>((callOptions, done) => this.#stub.Release(request, callOptions, done), 0)).released;
    } catch (err) {
      const error = this.#errorOf(err);
      // The permit is freed at its ttl; a client told not to raise on an unreachable sidecar does not raise here either.
      if (error instanceof Unavailable && this.onUnavailable !== 'raise') return false;
      throw error;
    }
  };

  /** One call with the client's timeout (plus extraMs) as its deadline, cancelled when signal aborts. */
  #unary<Res>(start: UnaryStart<Res>, extraMs: number, signal?: AbortSignal): Promise<Res> {
    return new Promise((resolve, reject) => {
      const cancel = () => call.cancel();
      const call = start({ deadline: new Date(Date.now() + this.timeout + extraMs) }, (err, response) => {
        signal?.removeEventListener('abort', cancel);
        if (err) reject(signal?.aborted ? signal.reason : err);
        else resolve(response!);
      });
      signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  #errorOf(err: unknown): unknown {
    if (!isServiceError(err)) return err;
    if (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED) return new Unavailable(this.target, err.code, err.details, { cause: err });
    return new SluiceError(err.code, err.details, { cause: err });
  }
}
