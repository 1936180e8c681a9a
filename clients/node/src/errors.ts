// What acquire and release reject with: a denial, or an error the sidecar (or the way to it) gave.
import { status } from '@grpc/grpc-js';
import type { DecidedBy } from './permit.js';

export interface Denial {
  /** When the same request could be granted; undefined when it never can (see reason). */
  retryAfterMs: number | undefined;
  /** The limit that denied. */
  limitName: string;
  /** Why, in words. */
  reason: string;
  decidedBy: DecidedBy;
  /** Units left in the deciding limit. */
  remaining: number;
  /** The deciding limit's capacity. */
  limit: number;
  /** Time spent waiting in line (maxWait) before the denial; 0 when the request did not wait. */
  waitedMs: number;
}

/** The request was denied: nothing was charged. */
export class Denied extends Error implements Denial {
  override readonly name = 'Denied';
  readonly retryAfterMs: number | undefined;
  readonly limitName: string;
  readonly reason: string;
  readonly decidedBy: DecidedBy;
  readonly remaining: number;
  readonly limit: number;
  readonly waitedMs: number;

  constructor(denial: Denial, options?: ErrorOptions) {
    const after = denial.retryAfterMs === undefined ? '' : `; retry after ${Math.ceil(denial.retryAfterMs)} ms`;
    super(`denied${denial.limitName ? ` by ${denial.limitName}` : ''}: ${denial.reason}${after}`, options);
    this.retryAfterMs = denial.retryAfterMs;
    this.limitName = denial.limitName;
    this.reason = denial.reason;
    this.decidedBy = denial.decidedBy;
    this.remaining = denial.remaining;
    this.limit = denial.limit;
    this.waitedMs = denial.waitedMs;
  }
}

/**
 * A gRPC error: the sidecar's status code and message. INVALID_ARGUMENT (the message names the
 * field), NOT_FOUND (a resource the policy does not have), RESOURCE_EXHAUSTED (a waiting line's
 * cap, or the sidecar overloaded), INTERNAL; none of them charged anything.
 */
export class SluiceError extends Error {
  override readonly name: string = 'SluiceError';
  /** The gRPC status code (a number of @grpc/grpc-js's `status`). */
  readonly code: status;
  /** The code's name, as INVALID_ARGUMENT. */
  readonly codeName: string;
  /** The sidecar's message. */
  readonly details: string;

  constructor(code: status, details: string, options?: ErrorOptions) {
    const codeName = status[code] ?? String(code);
    super(`${codeName}: ${details}`, options);
    this.code = code;
    this.codeName = codeName;
    this.details = details;
  }
}

/**
 * The sidecar could not be reached or could not answer in time (UNAVAILABLE, or
 * DEADLINE_EXCEEDED: no answer within the client's timeout, plus maxWait). What a client made
 * with onUnavailable 'raise' (the default) rejects with.
 */
export class Unavailable extends SluiceError {
  override readonly name = 'Unavailable';
  /** The sidecar's address, as the client was given it. */
  readonly target: string;

  constructor(target: string, code: status, details: string, options?: ErrorOptions) {
    super(code, details, options);
    this.message = `sluice sidecar at ${target} unavailable: ${this.message}`;
    this.target = target;
  }
}
