// The store semantics that matter on every Redis topology, as vitest cases: acquire to the limit
// then deny, all-or-nothing over two limits, releasing a concurrency permit, and a refund applied
// once. Each case uses its own resource, so its own keys; windows are long, so nothing refills.
import { expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import type { Resource } from '../../src/config/policy.js';
import { scopeOf } from '../../src/decide/scope.js';
import { MAX_COST } from '../../src/grpc/validate.js';
import type { Grant, Store, StoreVerdict } from '../../src/store/store.js';

let resourceSeq = 0;
let permitSeq = 0;

/** A resource of its own, compiled from YAML as a policy file would be. */
export function testResource(limits: string[], keys: string[] = ['tenant']): Resource {
  const name = `topo${++resourceSeq}`;
  const yaml = ['resources:', `  - name: ${name}`, `    keys: [${keys.join(', ')}]`, '    limits:', ...limits.map((l) => `      - ${l}`), ''].join('\n');
  return parsePolicy(yaml, `${name}.yaml`).resources.get(name)!;
}

export interface Taken extends StoreVerdict {
  limitName: string | undefined;
  grant: Grant;
}

export async function take(store: Store, res: Resource, scope: string, cost = 1): Promise<Taken> {
  const permitId = `p${++permitSeq}-${process.pid}`;
  const v = await store.acquire(res, scope, cost, permitId);
  return { ...v, limitName: res.limits[v.decider]?.name, grant: { permitId, cost, grantedAt: v.now } };
}

/** Acquire to the limit then deny, on a scope built from these descriptor values. */
export async function checkLimit(store: Store, value = 't'): Promise<void> {
  const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }', '{ name: rpm, algorithm: token_bucket, rate: 5/1h }']);
  const scope = scopeOf(res, [value]);
  for (let i = 1; i <= 3; i++) {
    const v = await take(store, res, scope);
    expect(v.granted).toBe(true);
    expect(v.remaining).toBe(3 - i);
  }
  const denied = await take(store, res, scope);
  expect(denied.granted).toBe(false);
  expect(denied.limitName).toBe('daily');
  expect(denied.retryAfterMs).toBeGreaterThan(0);
  // Another scope of the same resource is untouched.
  expect((await take(store, res, scopeOf(res, [`${value}-other`]))).remaining).toBe(2);
}

export async function checkAllOrNothing(store: Store, value = 't'): Promise<void> {
  const res = testResource([
    '{ name: daily, algorithm: fixed_window, rate: 10/1d }',
    '{ name: inflight, algorithm: concurrency, max: 1, ttl: 1h, counts: requests }',
  ]);
  const scope = scopeOf(res, [value]);
  const first = await take(store, res, scope, 3);
  expect(first.granted).toBe(true);
  const denied = await take(store, res, scope, 5);
  expect(denied.granted).toBe(false);
  expect(denied.limitName).toBe('inflight');
  await store.release(res, scope, first.grant, 0);
  // The denial charged daily nothing: 7 left, so 8 is denied by daily and 7 is granted.
  const over = await take(store, res, scope, 8);
  expect(over.granted).toBe(false);
  expect(over.limitName).toBe('daily');
  expect(over.remaining).toBe(7);
  const rest = await take(store, res, scope, 7);
  expect(rest.granted).toBe(true);
  expect(rest.remaining).toBe(0);
}

export async function checkRelease(store: Store, value = 't'): Promise<void> {
  const res = testResource(['{ name: inflight, algorithm: concurrency, max: 2, ttl: 1h }']);
  const scope = scopeOf(res, [value]);
  const a = await take(store, res, scope);
  const b = await take(store, res, scope);
  expect(a.granted && b.granted).toBe(true);
  expect((await take(store, res, scope)).granted).toBe(false);
  await store.release(res, scope, a.grant, 0);
  await store.release(res, scope, a.grant, 0); // a second release of the same permit frees nothing more
  const c = await take(store, res, scope);
  expect(c.granted).toBe(true);
  expect(c.remaining).toBe(0);
  expect((await take(store, res, scope)).granted).toBe(false);
}

export async function checkRefundOnce(store: Store, value = 't'): Promise<void> {
  const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 5/1d }']);
  const scope = scopeOf(res, [value]);
  const all = await take(store, res, scope, 5);
  expect(all.granted).toBe(true);
  expect((await take(store, res, scope)).granted).toBe(false);
  const refundId = `r${++permitSeq}-${process.pid}`;
  expect(await store.refund(res, scope, refundId, [2], all.now)).toBe(true);
  expect(await store.refund(res, scope, refundId, [2], all.now)).toBe(false); // applied once
  const back = await take(store, res, scope, 2);
  expect(back.granted).toBe(true);
  expect(back.remaining).toBe(0);
  expect((await take(store, res, scope)).granted).toBe(false);
}

/**
 * The three rate algorithms at capacity 5, with how long a drained one denies a cost of 1 at most:
 * a token bucket one interval; a window until it closes (and a sliding one a fifth into the next,
 * when a full window's weight has slid down to 4 of 5).
 */
export const RATE_ALGORITHMS = [
  { algorithm: 'token_bucket', limit: '{ name: rate, algorithm: token_bucket, rate: 5/1h }', horizonMs: 3_600_000 / 5 },
  { algorithm: 'fixed_window', limit: '{ name: rate, algorithm: fixed_window, rate: 5/1d }', horizonMs: 86_400_000 },
  { algorithm: 'sliding_window', limit: '{ name: rate, algorithm: sliding_window, rate: 5/1d }', horizonMs: 1.2 * 86_400_000 },
] as const;

/**
 * Settlements at the edge's bound: an actual cost of MAX_COST drains the limit and no more (the
 * key stays usable: denied until its own horizon at most), a retry of it changes nothing, and a
 * refund of MAX_COST fills the limit to full and no more. The same outcomes on every store.
 */
export async function checkSettleExtremes(store: Store, limit: string, horizonMs: number, value = 't'): Promise<void> {
  const res = testResource([limit]);
  const scope = scopeOf(res, [value]);
  const first = await take(store, res, scope, 1);
  expect(first.granted).toBe(true);
  await store.release(res, scope, first.grant, MAX_COST - 1); // actual_cost = MAX_COST
  const drained = await take(store, res, scope, 1);
  expect(drained.granted).toBe(false);
  expect(drained.remaining).toBe(0);
  expect(drained.retryAfterMs).toBeGreaterThan(0);
  expect(drained.retryAfterMs).toBeLessThanOrEqual(horizonMs + 1);
  // The retried settlement finds it applied: still drained, nothing more.
  await store.release(res, scope, first.grant, MAX_COST - 1);
  const still = await take(store, res, scope, 1);
  expect(still.granted).toBe(false);
  expect(still.retryAfterMs).toBeLessThanOrEqual(drained.retryAfterMs);
  // Drained means empty, not in debt: a refund of 2 makes 2 available.
  expect(await store.refund(res, scope, `r${++permitSeq}-${process.pid}`, [2], first.now)).toBe(true);
  const two = await take(store, res, scope, 2);
  expect(two.granted).toBe(true);
  expect(two.remaining).toBe(0);
  // A refund of the bound gives back at most a full budget.
  const refundId = `r${++permitSeq}-${process.pid}`;
  expect(await store.refund(res, scope, refundId, [MAX_COST], first.now)).toBe(true);
  expect(await store.refund(res, scope, refundId, [MAX_COST], first.now)).toBe(false);
  const full = await take(store, res, scope, 5);
  expect(full.granted).toBe(true);
  expect(full.remaining).toBe(0);
  // actual_cost 0 on a grant of the whole budget refunds it all; then it can be spent once more.
  await store.release(res, scope, full.grant, -5);
  const again = await take(store, res, scope, 5);
  expect(again.granted).toBe(true);
  expect(again.remaining).toBe(0);
  expect((await take(store, res, scope, 1)).granted).toBe(false);
}

/** A cost of MAX_COST: never granted by a rate limit, and held and freed exactly by a concurrency limit as large. */
export async function checkCostAtBound(store: Store, value = 't'): Promise<void> {
  for (const { limit } of RATE_ALGORITHMS) {
    const res = testResource([limit]);
    const v = await take(store, res, scopeOf(res, [value]), MAX_COST);
    expect(v.granted).toBe(false);
    expect(v.retryAfterMs).toBe(Infinity);
    expect(v.remaining).toBe(5);
  }
  const res = testResource([`{ name: bytes, algorithm: concurrency, max: ${MAX_COST}, ttl: 1h }`, '{ name: rate, algorithm: token_bucket, rate: 5/1h, counts: requests }']);
  const scope = scopeOf(res, [value]);
  const held = await take(store, res, scope, MAX_COST);
  expect(held.granted).toBe(true);
  expect((await take(store, res, scope, 1)).granted).toBe(false);
  await store.release(res, scope, held.grant, 0);
  const freed = await take(store, res, scope, MAX_COST);
  expect(freed.granted).toBe(true);
  expect(freed.limitName).toBe('bytes');
  expect(freed.remaining).toBe(0);
}

/** The cases, registered in the calling describe block against the store `get` returns. */
export function storeSemantics(get: () => Store): void {
  it('acquires to the limit, then denies', () => checkLimit(get()));
  it('is all-or-nothing over two limits', () => checkAllOrNothing(get()));
  it('a released concurrency permit frees its slot, once', () => checkRelease(get()));
  it('a refund is applied once', () => checkRefundOnce(get()));
  it.each(RATE_ALGORITHMS)('$algorithm: settling at the cost bound drains the limit, never more', ({ limit, horizonMs }) =>
    checkSettleExtremes(get(), limit, horizonMs),
  );
  it('a cost at the bound is denied by rate limits and held exactly by a concurrency limit', () => checkCostAtBound(get()));
}

/** Rejects if `promise` neither resolves nor rejects within ms (a hang is a failure too). */
export function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hung: neither an answer nor an error within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The resource probes decide on: a limit that never runs out. */
export const PROBE_RESOURCE = testResource(['{ name: lots, algorithm: fixed_window, rate: 100000000/1d }']);

export interface ProbeRecord {
  /** ms since the probe started. */
  at: number;
  tookMs: number;
  ok: boolean;
  error?: string;
}

export interface Prober {
  /** Stops probing and resolves with every probe's outcome, in order. */
  stop(): Promise<ProbeRecord[]>;
  /** When the probe started (Date.now()). */
  startedAt: number;
  /** Probes answered so far. */
  succeeded(): number;
  /** The latest probe to finish was answered. */
  lastOk(): boolean;
}

/**
 * Decisions every `everyMs` on a limit that never runs out, one after the other (each waits for
 * the last), recording how long each took and how it ended: what a failover looks like to callers.
 * Every call must settle within `hangMs`, or the probe records a hang and moves on.
 */
export function probeDecisions(store: Store, options: { scope?: (res: Resource) => string; everyMs?: number; hangMs?: number } = {}): Prober {
  const { everyMs = 25, hangMs = 15_000 } = options;
  const res = PROBE_RESOURCE;
  const scope = options.scope?.(res) ?? `${res.name}|probe`;
  const records: ProbeRecord[] = [];
  const startedAt = Date.now();
  let running = true;
  const loop = (async () => {
    let n = 0;
    while (running) {
      const begin = Date.now();
      try {
        await within(hangMs, store.acquire(res, scope, 1, `probe${n++}`));
        records.push({ at: begin - startedAt, tookMs: Date.now() - begin, ok: true });
      } catch (err) {
        records.push({ at: begin - startedAt, tookMs: Date.now() - begin, ok: false, error: (err as Error).message });
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    startedAt,
    succeeded: () => records.filter((r) => r.ok).length,
    lastOk: () => records.at(-1)?.ok === true,
    async stop() {
      running = false;
      await loop;
      return records;
    },
  };
}

/** A summary of probe records around an event at `eventAt` (ms since the probe started). */
export function outageSummary(records: ProbeRecord[], eventAt: number) {
  const after = records.filter((r) => r.at + r.tookMs >= eventAt);
  const failures = after.filter((r) => !r.ok);
  const lastFailure = failures.at(-1);
  const firstOkAfterFailures = lastFailure ? after.find((r) => r.ok && r.at > lastFailure.at) : after.find((r) => r.ok);
  const errors: Record<string, number> = {};
  for (const f of failures) {
    const key = (f.error ?? '').replace(/\d+\.\d+\.\d+\.\d+:\d+/g, 'HOST:PORT').slice(0, 160);
    errors[key] = (errors[key] ?? 0) + 1;
  }
  return {
    calls: after.length,
    failed: failures.length,
    hung: failures.filter((f) => (f.error ?? '').startsWith('hung:')).length,
    /** From the event to the first failure / the last failure's end / the first success after them. */
    firstFailureMs: failures[0] ? failures[0].at - eventAt : null,
    lastFailureEndMs: lastFailure ? lastFailure.at + lastFailure.tookMs - eventAt : null,
    recoveredMs: firstOkAfterFailures ? firstOkAfterFailures.at + firstOkAfterFailures.tookMs - eventAt : null,
    slowestCallMs: Math.max(0, ...after.map((r) => r.tookMs)),
    slowestFailureMs: Math.max(0, ...failures.map((r) => r.tookMs)),
    errors,
  };
}
