// The deadline towards Redis keeps one timer per connection, whatever the number of calls: a
// command silent for store.timeout fails, its late answer is still awaited (to reconcile what was
// decided without it) and is given up on after 20 deadlines (at least 1 s), so that calls left on
// a frozen Redis do not pile up. Then on a real redis-server: the sidecar's store arms no timer
// per call, and calls on a frozen Redis fail, are given up on, and leave the store working.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { createStore } from '../../src/sidecar.js';
import { lateAnswer, Watchdog, type Outstanding } from '../../src/store/redis/watchdog.js';
import { StoreTimeout } from '../../src/store/store.js';
import { until } from '../support/load.js';
import { useRedis } from '../support/use-redis.js';

/** A command written now; `failed` settles with what the watchdog failed it with. */
function command(): { entry: Outstanding; failed: Promise<StoreTimeout> } {
  let entry!: Outstanding;
  const failed = new Promise<StoreTimeout>((resolve) => {
    entry = { sentAt: performance.now(), settled: false, late: null, reject: (err) => resolve(err as StoreTimeout) };
  });
  return { entry, failed };
}

function watchdog(giveUpMs: number): Watchdog {
  return new Watchdog({ timeoutMs: 30, patienceMs: 300, giveUpMs, fifo: true, explain: () => '' });
}

describe('the watchdog', () => {
  it('fails a silent command, passes on a late answer that comes, and gives up on one that does not', async () => {
    const dog = watchdog(200);
    const answered = command();
    const silent = command();
    dog.sent(answered.entry);
    dog.sent(silent.entry);
    const [first, second] = await Promise.all([answered.failed, silent.failed]);
    expect(first).toBeInstanceOf(StoreTimeout);
    expect(first.message).toBe('no answer within 30ms');
    // One judgement, one silence: one piece of evidence against the store.
    expect(second.silence).toBe(first.silence);
    lateAnswer(answered.entry, null, 'OK');
    await expect(first.late).resolves.toBe('OK');
    await expect(second.late).rejects.toThrow('no answer within 200ms: no longer waited for');
    // An answer after the give-up goes nowhere.
    lateAnswer(silent.entry, null, 'too late');
    expect(silent.entry.late).toBeNull();
  });

  it('a command written while the timer waits for a give-up still fails at its own deadline', async () => {
    const dog = watchdog(60_000);
    const first = command();
    dog.sent(first.entry);
    await first.failed;
    // The only thing left to watch is the give-up a minute away; the next command must not wait for it.
    const next = command();
    dog.sent(next.entry);
    const failedAt = await Promise.race([next.failed.then(() => 'failed'), new Promise((resolve) => setTimeout(resolve, 5_000, 'still waiting')).then(String)]);
    expect(failedAt).toBe('failed');
  });
});

describe('the sidecar store on a frozen Redis', () => {
  const world = useRedis();

  it('arms no timer per call, fails each call at the deadline, gives up on them, and answers again once Redis does', async () => {
    const policy = parsePolicy(
      `
store:
  redis: { url: ${world.redis.url} }
  timeout: 100ms
resources:
  - name: api
    keys: [tenant]
    limits: [{ name: rps, algorithm: token_bucket, rate: 1000/1s }]
`,
      'p.yaml',
    );
    const store = createStore(policy);
    const api = policy.resources.get('api')!;
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    try {
      await store.ping();
      const before = timers();
      world.redis.pause();
      const calls = Array.from({ length: 200 }, (_, i) => store.acquire(api, `api|t${i}`, 1, '').then(() => null, (err: unknown) => err));
      // The batch goes out on the next turn; once it is written, its calls are on the wire.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(timers() - before).toBeLessThanOrEqual(1);

      const failures = await Promise.all(calls);
      expect(failures.every((err) => err instanceof StoreTimeout)).toBe(true);
      // Given up after 20 deadlines (2 s) while Redis is still frozen: nothing waits on it any more.
      await expect((failures[0] as StoreTimeout).late).rejects.toThrow('no answer within 2000ms: no longer waited for');
      world.redis.resume();
      // It works through the backlog the freeze left on the wire, then answers within the deadline.
      await until(async () => (await store.acquire(api, 'api|after', 1, '').catch(() => null))?.granted === true, 5_000);
    } finally {
      world.redis.resume();
      await store.close();
    }
  });
});
