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
// A command failed for silence may still be answered (its `late` answer reconciles what was
// decided without it); after `giveUpMs` nothing waits for it any more, so that calls left on a
// frozen Redis do not pile up. One timer per connection keeps every deadline, whatever the
// number of commands: ioredis's own command timeout would arm one per command.
import { Fifo } from '../../fifo.js';
import { Silence, StoreError, StoreTimeout } from '../store.js';

export interface Outstanding {
  /** performance.now() when written. */
  sentAt: number;
  /** Set once answered or failed; a late reply then goes to `late`. */
  settled: boolean;
  /** Present once the command has been failed for silence, until its late answer came or was given up on. */
  late: { resolve: (value: unknown) => void; reject: (err: unknown) => void } | null;
  reject: (err: unknown) => void;
}

export interface WatchdogOptions {
  timeoutMs: number;
  patienceMs: number;
  /** How long after it was written a command's late answer is still waited for. */
  giveUpMs: number;
  /** Commands share one connection and are answered in order. */
  fifo: boolean;
  /** Why Redis may be silent (the last connection error), for the timeout's message. */
  explain: () => string;
}

export class Watchdog {
  /** Oldest first; settled entries are dropped lazily from the front. */
  private readonly queue = new Fifo<Outstanding>();
  /** Commands failed for silence whose late answer is still awaited, oldest first. */
  private readonly awaitingLate = new Fifo<Outstanding>();
  private readonly givenUp: StoreError;
  private lastReplyAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private armedFor = 0;
  private judging = false;
  /** How late the last timer fired, and the command it may still be credited to. */
  private lag = 0;
  private credited: Outstanding | null = null;

  constructor(private readonly options: WatchdogOptions) {
    this.givenUp = new StoreError(`no answer within ${options.giveUpMs}ms: no longer waited for`);
  }

  /** Starts the clock for a command written now. */
  sent(entry: Outstanding): void {
    this.queue.push(entry);
    // The timer may be set for a give-up, later than this command's deadline.
    const deadline = entry.sentAt + this.options.timeoutMs;
    if (!this.judging && (!this.timer || deadline < this.armedFor)) this.arm(deadline);
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
    if (this.timer) clearTimeout(this.timer);
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
      for (let i = 0; i < expiring; i++) this.expire(this.queue.at(i)!, silence);
      deadline = this.nextDeadline();
    }
    let giveUpAt = this.nextGiveUp();
    while (giveUpAt !== -1 && giveUpAt <= now) {
      lateAnswer(this.awaitingLate.shift()!, this.givenUp, undefined);
      giveUpAt = this.nextGiveUp();
    }
    if (deadline === -1 || (giveUpAt !== -1 && giveUpAt < deadline)) deadline = giveUpAt;
    if (deadline !== -1) this.arm(deadline);
  };

  private expire(entry: Outstanding, silence: Silence): void {
    if (entry.settled) return;
    entry.settled = true;
    const late = new Promise<unknown>((resolve, reject) => {
      entry.late = { resolve, reject };
    });
    this.awaitingLate.push(entry);
    entry.reject(new StoreTimeout(silence.message, late, silence));
  }

  /** When the oldest command still awaiting its late answer is given up on, or -1 when none is. */
  private nextGiveUp(): number {
    while (this.awaitingLate.size > 0 && this.awaitingLate.peek()!.late === null) this.awaitingLate.shift();
    const oldest = this.awaitingLate.peek();
    return oldest ? oldest.sentAt + this.options.giveUpMs : -1;
  }

  private dropSettled(): void {
    while (this.queue.peek()?.settled) this.queue.shift();
  }
}

/** Redis answered (or failed) a command already failed for silence: whoever awaits its late answer gets it, once. */
export function lateAnswer(entry: Outstanding, err: unknown, value: unknown): void {
  const late = entry.late;
  if (!late) return;
  entry.late = null;
  if (err) late.reject(err);
  else late.resolve(value);
}
