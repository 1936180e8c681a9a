// Script calls made in the same turn of the event loop go out as one pipeline: one write, one
// read on the Redis side, across keys. Unlike ioredis's auto-pipelining, a batch does not wait
// for the one before it to come back, so with Redis across a network a decision waits one round
// trip, not up to two. The deadline of each call starts when its batch is written (time spent
// queued here is this process's, not Redis's), and is kept by the watchdog.
import type { Redis } from 'ioredis';
import { Watchdog, type Outstanding } from './watchdog.js';

type Args = (string | number)[];

interface Pending extends Outstanding {
  command: string;
  args: Args;
  resolve: (value: unknown) => void;
}

export class ScriptBatcher {
  private queue: Pending[] = [];
  private scheduled = false;

  /** `client` has the commands defined with defineCommand. */
  constructor(
    private readonly client: Redis,
    private readonly watchdog: Watchdog,
  ) {}

  call<T>(command: string, args: Args): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ command, args, resolve: resolve as (value: unknown) => void, reject, sentAt: 0, settled: false, late: null });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    const batch = this.queue;
    this.queue = [];
    this.scheduled = false;
    const pipeline = this.client.pipeline() as unknown as Record<string, (...args: unknown[]) => unknown> & { exec(): Promise<unknown> };
    const sentAt = performance.now();
    for (const pending of batch) {
      pending.sentAt = sentAt;
      pipeline[pending.command]!(...pending.args, (err: Error | null, value: unknown) => this.answered(pending, err, value));
      this.watchdog.sent(pending);
    }
    // Every command's own callback has its outcome; exec's promise adds nothing.
    pipeline.exec().catch(() => undefined);
  };

  private answered(pending: Pending, err: Error | null, value: unknown): void {
    // An error reply is an answer too; a lost connection is not.
    if (!err || err.name === 'ReplyError') this.watchdog.replied(performance.now());
    if (pending.settled) {
      if (err) pending.late?.reject(err);
      else pending.late?.resolve(value);
      return;
    }
    pending.settled = true;
    if (err) pending.reject(err);
    else pending.resolve(value);
  }
}
