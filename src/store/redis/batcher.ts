// Script calls go out as pipelines: one write, one read on the Redis side, across keys. Unlike
// ioredis's auto-pipelining, a batch does not wait for the one before it to come back, so with
// Redis across a network a decision waits one round trip, not up to two.
//
// At most WINDOW calls are on the wire at once; the rest wait here and go out as answers come
// back. Redis answers a pipeline only once it has run what it read, so an unbounded batch makes
// the first answer wait for the whole batch: a thousand scripts at once would look like a silent
// Redis to the deadline. The deadline of each call starts when it is written (time spent queued
// here is this process's, not Redis's) and is kept by the watchdog.
import type { Redis } from 'ioredis';
import { Fifo } from '../../fifo.js';
import { lateAnswer, Watchdog, type Outstanding } from './watchdog.js';

type Args = (string | number)[];

/** Script calls on the wire at once, per connection. */
export const WINDOW = 64;

interface Pending extends Outstanding {
  command: string;
  args: Args;
  resolve: (value: unknown) => void;
  /** The caller's reject; `reject` is the watchdog's, which also frees the place on the wire. */
  fail: (err: unknown) => void;
}

export class ScriptBatcher {
  private readonly queue = new Fifo<Pending>();
  /** Calls written and neither answered nor failed for silence. */
  private onWire = 0;
  private scheduled = false;

  /** `client` has the commands defined with defineCommand. */
  constructor(
    private readonly client: Redis,
    private readonly watchdog: Watchdog,
  ) {}

  call<T>(command: string, args: Args): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = {
        command,
        args,
        resolve: resolve as (value: unknown) => void,
        fail: reject,
        reject: (err) => {
          this.freed();
          reject(err);
        },
        sentAt: 0,
        settled: false,
        late: null,
      };
      this.queue.push(pending);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.queue.size === 0 || this.onWire >= WINDOW) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const count = Math.min(this.queue.size, WINDOW - this.onWire);
    if (count <= 0) return;
    const pipeline = this.client.pipeline() as unknown as Record<string, (...args: unknown[]) => unknown> & { exec(): Promise<unknown> };
    const sentAt = performance.now();
    for (let i = 0; i < count; i++) {
      const pending = this.queue.shift()!;
      pending.sentAt = sentAt;
      pipeline[pending.command]!(...pending.args, (err: Error | null, value: unknown) => this.answered(pending, err, value));
      this.watchdog.sent(pending);
    }
    this.onWire += count;
    // Every command's own callback has its outcome; exec's promise adds nothing.
    pipeline.exec().catch(() => undefined);
  };

  private answered(pending: Pending, err: Error | null, value: unknown): void {
    // An error reply is an answer too; a lost connection is not.
    if (!err || err.name === 'ReplyError') this.watchdog.replied(performance.now());
    if (pending.settled) {
      lateAnswer(pending, err, value);
      return;
    }
    pending.settled = true;
    this.freed();
    if (err) pending.fail(err);
    else pending.resolve(value);
  }

  private freed(): void {
    this.onWire--;
    this.schedule();
  }
}
