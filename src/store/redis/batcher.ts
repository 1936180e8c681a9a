// Script calls made in the same turn of the event loop go out as one pipeline: one write, one
// read on the Redis side, across keys. Unlike ioredis's auto-pipelining, a batch does not wait
// for the one before it to come back, so with Redis across a network a decision waits one round
// trip, not up to two.
import type { Redis } from 'ioredis';

type Args = (string | number)[];

interface Pending {
  command: string;
  args: Args;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class ScriptBatcher {
  private queue: Pending[] = [];
  private scheduled = false;

  /** `client` has the commands defined with defineCommand. */
  constructor(private readonly client: Redis) {}

  call<T>(command: string, args: Args): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ command, args, resolve: resolve as (value: unknown) => void, reject });
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
    const pipeline = this.client.pipeline() as unknown as Record<string, (...args: Args) => unknown> & { exec(): Promise<[Error | null, unknown][] | null> };
    for (const pending of batch) pipeline[pending.command]!(...pending.args);
    pipeline.exec().then(
      (results) => {
        for (let i = 0; i < batch.length; i++) {
          const [err, value] = results?.[i] ?? [new Error('no reply from Redis'), undefined];
          if (err) batch[i]!.reject(err);
          else batch[i]!.resolve(value);
        }
      },
      (err) => {
        for (const pending of batch) pending.reject(err);
      },
    );
  };
}
