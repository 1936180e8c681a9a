// How many decisions this sidecar works on at once. Past the limit, work is shed honestly
// (RESOURCE_EXHAUSTED, "sidecar overloaded") instead of queueing without bound: a queue inside
// the process only adds latency until every caller times out, and it must never turn into
// answers by failure policy while Redis is answering. Streams get backpressure first: a stream
// request that finds no room waits for it (its stream stops reading meanwhile), and only one
// that waits longer than `maxWaitMs` is shed.
import { Fifo } from '../fifo.js';

/** A request shed because the sidecar is at its limit (gRPC: RESOURCE_EXHAUSTED). */
export class Overloaded extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Overloaded';
  }
}

interface Waiter {
  admit: () => void;
  timer: NodeJS.Timeout;
}

export class Admission {
  /** Decisions under way. */
  inFlight = 0;
  /** Requests shed, by why: at once (unary), or after waiting for room (streams). */
  readonly shed = { full: 0, waited: 0 };
  private readonly waiters = new Fifo<Waiter>();

  constructor(
    readonly limit: number,
    private readonly maxWaitMs: number,
  ) {}

  /** Takes a place if there is one; `leave()` gives it back. */
  tryEnter(): boolean {
    if (this.inFlight >= this.limit || this.waiters.size > 0) return false;
    this.inFlight++;
    return true;
  }

  /** The error for a request shed at once. */
  refuse(): Overloaded {
    this.shed.full++;
    return new Overloaded(`sidecar overloaded: ${this.limit} decisions in flight (server.max_in_flight); try again shortly`);
  }

  /** Resolves with a place taken, in the order asked, or rejects with Overloaded after maxWaitMs. */
  enter(): Promise<void> {
    if (this.tryEnter()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        admit: resolve,
        timer: setTimeout(() => {
          waiter.admit = noop;
          this.shed.waited++;
          reject(new Overloaded(`sidecar overloaded: no room for ${this.maxWaitMs}ms with ${this.limit} decisions in flight (server.max_in_flight)`));
        }, this.maxWaitMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Gives a place back: to the longest waiter, if any. */
  leave(): void {
    for (let waiter = this.waiters.shift(); waiter; waiter = this.waiters.shift()) {
      if (waiter.admit === noop) continue; // gave up
      clearTimeout(waiter.timer);
      waiter.admit();
      return; // the place passes on: inFlight stays
    }
    this.inFlight--;
  }
}

function noop(): void {}
