// sluice.v1.RateLimiter: wire messages in, decisions out. No decision logic lives here.
import { status, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Resource } from '../config/policy.js';
import { Fifo } from '../fifo.js';
import type { Decider } from '../decide/decider.js';
import type { AcquireInput, Decision, WaitTerms } from '../decide/decision.js';
import type { Metrics } from '../admin/metrics.js';
import { Overloaded, type Admission } from '../guard/admission.js';
import { isStoreFailure, StoreUnavailable } from '../guard/store-unavailable.js';
import { WaitRefused } from '../wait/waiters.js';
import { internal, RequestError } from './request-error.js';
import { Undecodable } from './undecodable.js';
import type { ScopeLook } from '../store/store.js';
import type { Tracing } from '../trace/tracing.js';
import { parseAcquire, parseInspect, parseRelease, type WireAcquireRequest, type WireDuration, type WireInspectRequest, type WireReleaseRequest } from './validate.js';

/** Requests of one AcquireStream decided at once; past this the stream stops reading. */
export const STREAM_WINDOW = 256;

interface Grant {
  input: AcquireInput;
  decision: Decision;
}

export interface ServiceContext {
  decider: Decider;
  /** AcquireStreams open at once across the sidecar; past it a new one is refused. */
  maxStreams: number;
  /** Read per request, so a policy reload takes effect without restarting. */
  resources: () => ReadonlyMap<string, Resource>;
  metrics: Metrics;
  /** Decisions under way, bounded: past it requests are shed. */
  admission: Admission;
  /** Throttled: a dead store fails every request, and the log must not grow at that rate. */
  warn: (obj: object, msg: string) => void;
  /** Spans of Envoy's calls and of their store calls; null when tracing is off. */
  tracing: Tracing | null;
}

export function sluiceService(ctx: ServiceContext): UntypedServiceImplementation {
  // A request holds a place in the admission from before it is decided until it is: whoever
  // gets the outcome gives the place back, through one of these two. A request that may wait
  // holds none (it may wait for minutes): the waiting line has caps of its own.
  const decided = (input: AcquireInput, decision: Decision): Decision => {
    if (!input.wait) ctx.admission.leave();
    ctx.metrics.decided(input.resource.name, decision);
    return decision;
  };
  const undecided = (input: AcquireInput, err: unknown): unknown => {
    if (!input.wait) ctx.admission.leave();
    return err;
  };
  /**
   * The decider's outcome, with a place in the admission already taken: a decision known at once
   * (a lease hit) comes back as it is, and nothing on the way to the caller awaits it. A promise
   * is not chained here: its caller's one continuation counts it and answers, so that a decision
   * that waits costs one promise in this layer, not one per step.
   */
  const decide = (input: AcquireInput): Decision | Promise<Decision> => {
    try {
      return ctx.decider.decideNow(input);
    } catch (err) {
      throw undecided(input, err);
    }
  };
  /** Takes a place in the admission, unless the request may wait (see decided). */
  const admitted = (input: AcquireInput): boolean => input.wait !== undefined || ctx.admission.tryEnter();

  return {
    Acquire(call: ServerUnaryCall<WireAcquireRequest, unknown>, callback: sendUnaryData<unknown>) {
      let input: AcquireInput;
      let outcome: Decision | Promise<Decision>;
      try {
        input = parseAcquire(call.request, ctx.resources());
        if (input.wait) waitUntilGone(input.wait, call);
        if (!admitted(input)) throw ctx.admission.refuse();
        outcome = decide(input);
      } catch (err) {
        callback(toStatus(err, ctx));
        return;
      }
      if (!(outcome instanceof Promise)) {
        callback(null, toResponse(decided(input, outcome), call.request.request_id));
        return;
      }
      outcome.then(
        (decision) => callback(null, toResponse(decided(input, decision), call.request.request_id)),
        (err) => callback(toStatus(undecided(input, err), ctx)),
      );
    },

    Release(call: ServerUnaryCall<WireReleaseRequest, unknown>, callback: sendUnaryData<unknown>) {
      let parsed;
      try {
        parsed = parseRelease(call.request);
      } catch (err) {
        callback(toStatus(err, ctx));
        return;
      }
      ctx.decider.release(parsed.permitId, parsed.actualCost).then(
        (released) => callback(null, { released }),
        (err) => callback(toStatus(err, ctx)),
      );
    },

    Inspect(call: ServerUnaryCall<WireInspectRequest, unknown>, callback: sendUnaryData<unknown>) {
      let resource: Resource;
      let scope: string;
      try {
        ({ resource, scope } = parseInspect(call.request, ctx.resources()));
        // A look costs a store call like a decision: it holds a place in the admission too.
        if (!ctx.admission.tryEnter()) throw ctx.admission.refuse();
      } catch (err) {
        callback(toStatus(err, ctx));
        return;
      }
      ctx.decider.inspect(resource, scope).then(
        (look) => {
          ctx.admission.leave();
          callback(null, toInspectResponse(resource, look));
        },
        (err) => {
          ctx.admission.leave();
          callback(toStatus(err, ctx));
        },
      );
    },

    AcquireStream(call: ServerDuplexStream<WireAcquireRequest, unknown>) {
      if (ctx.metrics.openStreams >= ctx.maxStreams) {
        ctx.metrics.streamRefused();
        ctx.metrics.rejected(status.RESOURCE_EXHAUSTED);
        call.emit('error', { code: status.RESOURCE_EXHAUSTED, details: `sidecar stream limit reached: ${ctx.maxStreams} AcquireStreams are open` });
        return;
      }
      let pending = 0;
      /** Requests of this stream waiting for room in the admission. */
      let waiting = 0;
      /** The client is not reading its answers: the HTTP/2 stream holds more than it should. */
      let backedUp = false;
      // The stream reads a request only while none of the reasons to stop holds.
      const readIfAllowed = () => {
        if (pending < STREAM_WINDOW && waiting === 0 && !backedUp && failure === undefined) call.resume();
      };
      // A client that sends and never reads must not grow this process: past the stream's own
      // buffer, stop reading its requests until it has taken its answers.
      const send = (response: object, written?: () => void) => {
        if (call.write(response, written) || backedUp) return;
        backedUp = true;
        call.pause();
        call.once('drain', () => {
          backedUp = false;
          readIfAllowed();
        });
      };
      let ended = false;
      let failure: { code: status; details: string } | undefined;
      const open = () => !call.cancelled && !call.writableEnded && !call.destroyed;
      // Grants written that the HTTP/2 stream has not taken yet, oldest first. grpc-js calls a
      // write back once the stream took the message, in the order written; when the client resets
      // the stream first (its reset is read before 'cancelled' is emitted), the message is dropped
      // and the write never called back.
      const unsent = new Fifo<Grant>();
      const handedOver = () => void unsent.shift();
      const giveBack = (input: AcquireInput, decision: Decision) => {
        if (decision.granted) ctx.metrics.grantRevoked();
        return ctx.decider.revoke(input, decision).catch((err) => ctx.warn({ err }, 'could not revoke a grant of a cancelled stream'));
      };
      const finish = () => {
        if (pending > 0 || call.cancelled || call.writableEnded) return;
        if (failure) call.emit('error', failure);
        else if (ended) call.end();
      };
      // One bad request ends the stream with its status, once the others are answered.
      const fail = (err: unknown, requestId: string) => {
        const s = toStatus(err, ctx);
        failure ??= { code: s.code, details: requestId ? `request ${requestId}: ${s.details}` : s.details };
        call.pause();
      };
      const answer = (input: AcquireInput, requestId: string, decision: Decision) => {
        // Nobody will see this grant: give it back rather than strand it.
        if (!open()) {
          void giveBack(input, decision);
          return;
        }
        const response = toResponse(decision, requestId);
        if (!decision.granted) {
          send(response);
          return;
        }
        unsent.push({ input, decision });
        send(response, handedOver);
      };
      /** A request is answered or has failed: room for another. */
      const settled = () => {
        pending--;
        readIfAllowed();
        finish();
      };
      /** Room for the next request whatever answering this one meets. */
      const answered = (input: AcquireInput, requestId: string, decision: Decision) => {
        try {
          answer(input, requestId, decided(input, decision));
        } finally {
          settled();
        }
      };
      const decideFor = (input: AcquireInput, requestId: string) => {
        let outcome: Decision | Promise<Decision>;
        try {
          outcome = decide(input);
        } catch (err) {
          fail(err, requestId);
          settled();
          return;
        }
        if (!(outcome instanceof Promise)) {
          answered(input, requestId, outcome);
          return;
        }
        outcome.then(
          (decision) => answered(input, requestId, decision),
          (err) => {
            fail(undecided(input, err), requestId);
            settled();
          },
        );
      };
      // Requests of the stream that wait leave their lines when it is cancelled.
      let gone: AbortController | null = null;
      // Its messages are decoded with decodedInHandler (see grpc-server.ts).
      call.on('data', (req: WireAcquireRequest | Undecodable) => {
        if (failure) return;
        if (req instanceof Undecodable) {
          fail(req.error, '');
          finish();
          return;
        }
        let input: AcquireInput;
        try {
          input = parseAcquire(req, ctx.resources());
        } catch (err) {
          fail(err, req.request_id);
          finish();
          return;
        }
        if (++pending >= STREAM_WINDOW) call.pause();
        if (input.wait) {
          gone ??= new AbortController();
          input.wait.signal = gone.signal;
        }
        if (admitted(input)) {
          decideFor(input, req.request_id);
          return;
        }
        // No room: stop reading this stream until there is (backpressure), shed if none comes.
        if (waiting++ === 0) call.pause();
        ctx.admission
          .enter()
          .finally(() => {
            waiting--;
            readIfAllowed();
          })
          .then(
            () => decideFor(input, req.request_id),
            (err) => {
              fail(err, req.request_id);
              settled();
            },
          );
      });
      ctx.metrics.openStreams++;
      let closed = false;
      const close = () => {
        if (!closed) ctx.metrics.openStreams--;
        closed = true;
      };
      call.on('cancelled', () => {
        close();
        gone?.abort();
        for (let grant = unsent.shift(); grant; grant = unsent.shift()) void giveBack(grant.input, grant.decision);
      });
      call.on('finish', close);
      call.on('end', () => {
        ended = true;
        finish();
      });
      // A cancelled or broken stream: decisions under way complete and are revoked above.
      call.on('error', () => undefined);
    },
  };
}

function toStatus(err: unknown, ctx: ServiceContext): { code: status; details: string } {
  if (err instanceof RequestError) {
    ctx.metrics.rejected(err.code);
    return { code: err.code, details: err.message };
  }
  if (err instanceof WaitRefused) {
    ctx.metrics.rejected(status.RESOURCE_EXHAUSTED);
    return { code: status.RESOURCE_EXHAUSTED, details: err.message };
  }
  if (err instanceof Overloaded) {
    ctx.metrics.rejected(status.RESOURCE_EXHAUSTED);
    ctx.warn({ reason: err.message }, 'sidecar overloaded: shedding requests (Redis is not the cause)');
    return { code: status.RESOURCE_EXHAUSTED, details: err.message };
  }
  if (!isStoreFailure(err)) return internal(err, ctx);
  ctx.metrics.rejected(status.UNAVAILABLE);
  ctx.warn({ err }, 'store call failed');
  const message = (err as Error).message;
  return { code: status.UNAVAILABLE, details: err instanceof StoreUnavailable ? message : `store unavailable: ${message}` };
}

function toResponse(d: Decision, requestId: string) {
  return {
    granted: d.granted,
    permit_id: d.permitId,
    retry_after: d.granted || d.retryAfterMs === Number.POSITIVE_INFINITY ? null : duration(d.retryAfterMs),
    remaining: d.remaining,
    limit: d.limit,
    reset_after: duration(d.resetAfterMs),
    limit_name: d.limitName,
    decided_by: d.decidedBy,
    waited: d.waitedMs > 0 ? duration(d.waitedMs) : null,
    request_id: requestId,
    reason: d.reason,
  };
}

function toInspectResponse(resource: Resource, look: ScopeLook) {
  return {
    limits: resource.limits.map((limit, i) => ({
      name: limit.name,
      algorithm: limit.algorithm,
      remaining: look.limits[i]!.remaining,
      limit: limit.capacity,
      reset_after: duration(look.limits[i]!.resetAfterMs),
    })),
    waiters: look.waiting,
  };
}

/** Answers no later than the call's deadline, and leaves the line when the call is cancelled. */
function waitUntilGone(terms: WaitTerms, call: ServerUnaryCall<WireAcquireRequest, unknown>): void {
  const deadline = call.getDeadline();
  const left = (deadline instanceof Date ? deadline.getTime() : deadline) - Date.now();
  // A little before the deadline, so that the caller is told it waited instead of only DEADLINE_EXCEEDED.
  if (Number.isFinite(left)) terms.maxWaitMs = Math.max(1, Math.min(terms.maxWaitMs, left - DEADLINE_MARGIN_MS));
  const gone = new AbortController();
  terms.signal = gone.signal;
  call.once('cancelled', () => gone.abort());
}

/**
 * How long before a caller's deadline its wait ends. The deadline here counts from when the call
 * arrived, later than the caller's own by the call's way in, and the answer still has its way out:
 * on a busy node each can take tens of milliseconds (5 ms left most answers too late).
 */
const DEADLINE_MARGIN_MS = 50;

function duration(ms: number): WireDuration {
  const whole = Math.ceil(ms);
  return { seconds: Math.floor(whole / 1000), nanos: (whole % 1000) * 1_000_000 };
}
