// Load for fault tests: callers that keep asking through a sidecar and record every answer and
// how long it took, so a test can check what happened while it broke something.
import { readFileSync } from 'node:fs';
import type { AcquireResponse, SluiceClient } from './client.js';

/** store.timeout in the fault tests: tight, as in production. */
export const FAULT_BUDGET_MS = 50;
/** What an answer may take beyond it: the machines are small and shared, and a gRPC round trip alone can take tens of milliseconds. */
export const FAULT_MARGIN_MS = 450;

/** Two resources of a policy's `resources:` list that the load below asks: one fails open, one closed. */
export const OPEN_AND_CLOSED = `  - name: open
    keys: [tenant]
    on_store_failure: open
    limits: [{ name: daily, algorithm: fixed_window, rate: 1000000/1d }]
  - name: closed
    keys: [tenant]
    on_store_failure: closed
    limits: [{ name: daily, algorithm: fixed_window, rate: 1000000/1d }]
`;

export interface Answer {
  resource: string;
  ms: number;
  res: AcquireResponse;
}

/** Callers that keep asking until stopped, recording every answer and how long it took. */
export function load(client: SluiceClient, resources: string[], callersEach: number, tenant = 'load') {
  const answers: Answer[] = [];
  const errors: unknown[] = [];
  let running = true;
  const loops = resources.flatMap((resource) =>
    Array.from({ length: callersEach }, async () => {
      while (running) {
        const started = performance.now();
        try {
          const res = await client.acquire({ resource, descriptors: { tenant } });
          answers.push({ resource, ms: performance.now() - started, res });
        } catch (err) {
          errors.push(err);
          // Never spin: a call that fails at once must still let the event loop turn.
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
    }),
  );
  return {
    answers,
    errors,
    /** Answers from now on. */
    mark: () => answers.length,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Polls until the check holds; resolves with how long that took. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - started;
}

/** The resident memory of a process, in MB. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/** Decided by the store itself (directly or from a lease), not by a failure policy. */
export function byStore(res: AcquireResponse): boolean {
  return res.decided_by === 'STORE' || res.decided_by === 'LEASE';
}

/** The last few answers all came from the store again. */
export function storeDecidesAgain(answers: readonly Answer[], last = 8): boolean {
  const tail = answers.slice(-last);
  return tail.length === last && tail.every((a) => byStore(a.res));
}

/**
 * Callers on `resources` (4 each) while Redis is frozen with SIGSTOP, its connections open: the
 * answers given meanwhile (past the calls already under way), once the store decides again.
 */
export async function answersWhileFrozen(client: SluiceClient, redis: { pause(): void; resume(): void }, resources: string[], tenant: string) {
  const traffic = load(client, resources, 4, tenant);
  await until(() => traffic.answers.length > 100);
  redis.pause();
  const from = traffic.mark();
  await until(() => traffic.answers.length > from + 200);
  redis.resume();
  const during = traffic.answers.slice(from + 20, from + 200);
  await until(() => storeDecidesAgain(traffic.answers));
  await traffic.stop();
  return { during, errors: traffic.errors };
}
