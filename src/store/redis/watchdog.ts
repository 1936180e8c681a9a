// The deadline towards Redis, measured where it can be measured honestly: from the moment a
// command is written, and against Redis's silence rather than against this process's own delays.
//
// A command fails with StoreTimeout only when Redis has said nothing for `timeoutMs` since it was
// sent. On one connection (`fifo`), replies come back in the order commands went out, so a reply
// to anything is progress for everything behind it: a long pipeline that Redis is working
// through is not a stalled Redis. Every command still fails after `patienceMs`, progress or not.
// Before judging, the watchdog lets the event loop read what has already arrived: a timer that
// fires late because this process was busy must not blame Redis for a reply sitting unread in
// the socket. And the time this process itself was stalled (how late the timer fired) is
// credited to Redis once per command: its deadline moves by that much before it is judged.
// All commands failed by one judgement share one silence: one piece of evidence, not many.
import { Fifo } from '../../fifo.js';
import { Silence, StoreTimeout } from '../store.js';

export interface Outstanding {
  /** performance.now() when written. */
  sentAt: number;
  /** Set once answered or failed; a late reply then goes to `late`. */
  settled: boolean;
  /** Present once the command has been failed for silence: its eventual reply settles this. */
  late: { resolve: (value: unknown) => void; reject: (err: unknown) => void } | null;
  reject: (err: unknown) => void;
}

export interface WatchdogOptions {
  timeoutMs: number;
  patienceMs: number;
  /** Commands share one connection and are answered in order. */
  fifo: boolean;
  /** Why Redis may be silent (the last connection error), for the timeout's message. */
  explain: () => string;
}

export class Watchdog {
  /** Oldest first; settled entries are dropped lazily from the front. */
  private readonly queue = new Fifo<Outstanding>();
  private lastReplyAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private armedFor = 0;
  private judging = false;
  /** How late the last timer fired, and the command it may still be credited to. */
  private lag = 0;
  private credited: Outstanding | null = null;

  constructor(private readonly options: WatchdogOptions) {}

  /** Starts the clock for a command written now. */
  sent(entry: Outstanding): void {
    this.queue.push(entry);
    if (!this.timer && !this.judging) this.arm(entry.sentAt + this.options.timeoutMs);
  }

  /** Redis answered (a reply or an error reply): progress, whichever command it was for. */
  replied(now: number): void {
    this.lastReplyAt = now;
  }

  /** The deadline of the oldest command still waiting, or -1 when none waits. */
  private nextDeadline(): number {
    this.dropSettled();
    const oldest = this.queue.peek();
    if (!oldest) return -1;
    const { timeoutMs, patienceMs, fifo } = this.options;
    const quietSince = fifo ? Math.max(oldest.sentAt, this.lastReplyAt) : oldest.sentAt;
    return Math.min(quietSince + timeoutMs, oldest.sentAt + patienceMs);
  }

  private arm(at: number): void {
    this.armedFor = at;
    this.timer = setTimeout(this.fire, Math.max(0, at - performance.now()));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = null;
    this.lag = Math.max(0, performance.now() - this.armedFor);
    // Judge after the poll phase: replies already in the socket are read before then.
    this.judging = true;
    setImmediate(this.judge);
  };

  private readonly judge = (): void => {
    this.judging = false;
    const now = performance.now();
    let deadline = this.nextDeadline();
    const oldest = this.queue.peek();
    if (deadline !== -1 && deadline <= now && this.lag > 0 && this.credited !== oldest) {
      // This process was stalled: give Redis that time back, once.
      this.credited = oldest!;
      deadline = Math.max(deadline + this.lag, now + 1);
    }
    this.lag = 0;
    while (deadline !== -1 && deadline <= now) {
      // On one connection everything behind a silent command waits on the same silence.
      const expiring = this.options.fifo ? this.queue.size : 1;
      const silence = new Silence(`no answer within ${this.options.timeoutMs}ms${this.options.explain()}`);
      for (let i = 0; i < expiring; i++) expire(this.queue.at(i)!, silence);
      deadline = this.nextDeadline();
    }
    if (deadline !== -1) this.arm(deadline);
  };

  private dropSettled(): void {
    while (this.queue.peek()?.settled) this.queue.shift();
  }
}

function expire(entry: Outstanding, silence: Silence): void {
  if (entry.settled) return;
  entry.settled = true;
  const late = new Promise<unknown>((resolve, reject) => {
    entry.late = { resolve, reject };
  });
  entry.reject(new StoreTimeout(silence.message, late, silence));
}
