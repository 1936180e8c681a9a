// The waiting line through a sidecar's Waiters over the embedded store, on a fake clock: the
// store, the waiters' max_wait timers and the store's turns all read vitest's clock, so every
// figure below is exact (no real time passes). The same line in Redis is covered by the semantic
// suite (test/store/semantics.test.ts), which runs against both stores.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { usableFraction } from '../../src/config/policy.js';
import type { AcquireInput } from '../../src/decide/decision.js';
import { scopeOf } from '../../src/decide/scope.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import { Waiters, WaitRefused, type Waited } from '../../src/wait/waiters.js';

const START = Date.UTC(2026, 0, 1, 12, 0, 0);
/** 10 units a second: one every 100 ms, a burst of 10. */
const TEN_PER_SECOND = '      - { name: rate, algorithm: token_bucket, rate: 10/1s }\n';
/** 10 a day: nothing comes back during a test. */
const TEN_PER_DAY = '      - { name: daily, algorithm: fixed_window, rate: 10/1d }\n';

interface WaitOptions {
  cost?: number;
  priority?: number;
  lane?: number;
  maxWaitMs?: number;
  signal?: AbortSignal | null;
}

/** A request that waits, and what became of it (at: ms from START when its wait ended). */
interface Tracked {
  label: string;
  permitId: string;
  waited: Waited | undefined;
  refused: WaitRefused | undefined;
  at: number | undefined;
}

/**
 * One sidecar's Waiters over a memory store, both on vitest's fake clock, with one resource `r`.
 * `extra`: more fields of the resource, each line indented by four spaces.
 */
function line(limits: string, extra = '', sidecarMaxWaiters = 10_000) {
  vi.useFakeTimers({ now: START });
  const now = () => Date.now();
  const policy = parsePolicy(`resources:\n  - name: r\n    keys: [k]\n${extra}    limits:\n${limits}`, 'p.yaml');
  const resource = policy.resources.get('r')!;
  const scope = scopeOf(resource, ['a']);
  const store = new MemoryStore({ maxKeys: 1000, now, sweepEveryMs: 0 });
  const givenBack: string[] = [];
  const waiters = new Waiters(store, { sidecarId: 's', maxWaiters: sidecarMaxWaiters, now, giveBack: (_input, _permit, _verdict, id) => givenBack.push(id) });
  /** Labels of the waits granted, in the order they were. */
  const granted: string[] = [];
  let permits = 0;

  function wait(label: string, options: WaitOptions = {}): Tracked {
    const { cost = 1, priority = 0, lane = 1, maxWaitMs = 60_000, signal = null } = options;
    const terms = { maxWaitMs, lane, signal };
    const input: AcquireInput = { resource, scope, cost, priority, wait: terms };
    const tracked: Tracked = { label, permitId: `w${++permits}`, waited: undefined, refused: undefined, at: undefined };
    waiters.wait({ input, terms, permitId: tracked.permitId, usable: usableFraction(resource, priority) }).then(
      (waited) => {
        tracked.waited = waited;
        tracked.at = now() - START;
        if (waited.end === 'granted') granted.push(label);
      },
      (err: unknown) => {
        if (!(err instanceof WaitRefused)) throw err;
        tracked.refused = err;
      },
    );
    return tracked;
  }

  return {
    resource,
    store,
    waiters,
    granted,
    givenBack,
    wait,
    /** A request that does not wait, straight to the store. */
    acquire: (cost: number, priority = 0, permitId = '') => store.acquire(resource, scope, cost, permitId, usableFraction(resource, priority), priority),
    release: (permitId: string) => store.release(resource, scope, { permitId, cost: 1, grantedAt: now() }, 0),
    /** Moves the clock to `ms` after START, running every timer and what it sets off on the way. */
    at: async (ms: number) => {
      await vi.advanceTimersByTimeAsync(START + ms - now());
    },
  };
}

afterEach(() => {
  vi.useRealTimers();
});

/** What each label's wait came to, for a compact assertion. */
const ends = (...all: Tracked[]) => Object.fromEntries(all.map((t) => [t.label, t.waited ? `${t.waited.end}@${t.at}` : 'waiting']));

describe('the waiting line, on a fake clock', () => {
  it('first come, first served: each is granted when the next unit falls due', async () => {
    const t = line(TEN_PER_SECOND);
    expect((await t.acquire(10)).granted).toBe(true);
    const a = t.wait('a');
    const b = t.wait('b');
    const c = t.wait('c');
    await t.at(99);
    expect(ends(a, b, c)).toEqual({ a: 'waiting', b: 'waiting', c: 'waiting' });
    await t.at(300);
    expect(ends(a, b, c)).toEqual({ a: 'granted@100', b: 'granted@200', c: 'granted@300' });
    expect(a.waited).toMatchObject({ waitedMs: 100, verdict: { granted: true } });
    expect(t.waiters.size).toBe(0);
  });

  it('a higher priority goes first, whenever it arrives', async () => {
    const t = line(TEN_PER_SECOND);
    expect((await t.acquire(10)).granted).toBe(true);
    const low1 = t.wait('low1');
    const low2 = t.wait('low2');
    await t.at(50);
    const high = t.wait('high', { priority: 3 });
    const mid = t.wait('mid', { priority: 1 });
    await t.at(400);
    expect(t.granted).toEqual(['high', 'mid', 'low1', 'low2']);
    expect(ends(high, mid, low1, low2)).toEqual({ high: 'granted@100', mid: 'granted@200', low1: 'granted@300', low2: 'granted@400' });
  });

  it('priority is strict: a steady stream of higher priority keeps a low one waiting until its max_wait, and it is charged nothing', async () => {
    const t = line(TEN_PER_SECOND);
    expect((await t.acquire(10)).granted).toBe(true);
    const low = t.wait('low', { maxWaitMs: 1_000 });
    const highs: Tracked[] = [];
    // One high priority request just before each unit falls due: every unit goes to one of them.
    for (let ms = 50; ms < 1_000; ms += 100) {
      await t.at(ms);
      highs.push(t.wait(`high@${ms}`, { priority: 5 }));
    }
    await t.at(999);
    expect(low.waited).toBeUndefined();
    await t.at(1_000);
    expect(low.waited).toMatchObject({ end: 'timeout', verdict: null, waitedMs: 1_000 });
    expect(t.granted).toEqual(highs.map((h) => h.label));
    expect(highs.map((h) => h.at)).toEqual([100, 200, 300, 400, 500, 600, 700, 800, 900, 1_000]);
    // The bucket is where the highs left it: the next unit falls due at 1100, not later.
    await t.at(1_099);
    expect((await t.acquire(1)).granted).toBe(false);
    await t.at(1_100);
    expect((await t.acquire(1)).granted).toBe(true);
  });

  it('a large request first in line is not starved by a stream of small ones behind it', async () => {
    const t = line(TEN_PER_SECOND);
    expect((await t.acquire(10)).granted).toBe(true);
    const big = t.wait('big', { cost: 5 });
    const smalls: Tracked[] = [];
    // A small one every 50 ms: each would fit as soon as one unit is due, if it could go around.
    for (let ms = 25; ms < 500; ms += 50) {
      await t.at(ms);
      smalls.push(t.wait(`small@${ms}`));
    }
    await t.at(499);
    expect(t.granted).toEqual([]);
    await t.at(500);
    expect(big.waited).toMatchObject({ end: 'granted', waitedMs: 500 });
    expect(t.granted).toEqual(['big']);
    // Then the small ones, in order, one unit each.
    await t.at(1_000);
    expect(t.granted).toEqual(['big', ...smalls.slice(0, 5).map((s) => s.label)]);
    expect(smalls.slice(0, 5).map((s) => s.at)).toEqual([600, 700, 800, 900, 1_000]);
  });

  it('reserve: a priority below min_priority never takes the reserved part while it waits; one at or above it is served from it at once', async () => {
    const t = line(TEN_PER_DAY, '    reserve: [{ fraction: 0.2, min_priority: 5 }]\n');
    // Priority 0 may use 8 of the 10: it takes them all; 2 are left, reserved.
    expect(await t.acquire(8)).toMatchObject({ granted: true, remaining: 0 });
    const low = t.wait('low', { maxWaitMs: 3_000 });
    await t.at(10);
    const high = t.wait('high', { priority: 5 });
    await t.at(20);
    expect(ends(low, high)).toEqual({ low: 'waiting', high: 'granted@10' });
    // The low one is asked about again (stall checks) all the while, and never served from the reserve.
    await t.at(3_000);
    expect(low.waited).toMatchObject({ end: 'timeout', waitedMs: 3_000 });
    // The last reserved unit is still there for a high priority; none for a low one.
    expect(await t.acquire(1)).toMatchObject({ granted: false, reserved: true });
    expect(await t.acquire(1, 5)).toMatchObject({ granted: true, remaining: 0 });
  });

  describe('lanes { interactive: 0.7, batch: 0.3 }', () => {
    const LANES = '    lanes: { interactive: 0.7, batch: 0.3 }\n';
    const INTERACTIVE = 1;
    const BATCH = 2;

    it('both lanes waiting share the units served 0.7 / 0.3', async () => {
      const t = line(TEN_PER_SECOND, LANES);
      expect((await t.acquire(10)).granted).toBe(true);
      for (let i = 0; i < 100; i++) t.wait(`i${i}`, { lane: INTERACTIVE });
      for (let i = 0; i < 100; i++) t.wait(`b${i}`, { lane: BATCH });
      await t.at(10_000);
      expect(t.granted).toHaveLength(100);
      expect(t.granted.filter((l) => l.startsWith('i'))).toHaveLength(70);
      expect(t.granted.filter((l) => l.startsWith('b'))).toHaveLength(30);
      // Each lane in its own order of arrival.
      expect(t.granted.filter((l) => l.startsWith('b'))).toEqual(Array.from({ length: 30 }, (_, i) => `b${i}`));
    });

    it('an idle lane\'s share is borrowed; a lane that returns gets its share back, with no credit for its idle time', async () => {
      const t = line(TEN_PER_SECOND, LANES);
      expect((await t.acquire(10)).granted).toBe(true);
      for (let i = 0; i < 40; i++) t.wait(`i${i}`, { lane: INTERACTIVE });
      // Batch idle: interactive takes every unit, not 0.7 of them.
      await t.at(1_000);
      expect(t.granted).toEqual(Array.from({ length: 10 }, (_, i) => `i${i}`));
      for (let i = 0; i < 40; i++) t.wait(`b${i}`, { lane: BATCH });
      await t.at(2_000);
      // Batch is back: 3 of the next 10 units, not all of them to make up for the second it was away.
      const next = t.granted.slice(10);
      expect(next).toHaveLength(10);
      expect(next.filter((l) => l.startsWith('b'))).toEqual(['b0', 'b1', 'b2']);
      await t.at(4_000);
      expect(t.granted.slice(10).filter((l) => l.startsWith('b'))).toHaveLength(9);
    });

    it('a lane left alone takes every unit, whichever it is', async () => {
      const t = line(TEN_PER_SECOND, LANES);
      expect((await t.acquire(10)).granted).toBe(true);
      for (let i = 0; i < 10; i++) t.wait(`b${i}`, { lane: BATCH });
      await t.at(1_000);
      expect(t.granted).toHaveLength(10);
    });
  });

  it('cancellation: the caller goes away, it leaves the line charged nothing, and the next in line moves up', async () => {
    const t = line(TEN_PER_SECOND);
    expect((await t.acquire(10)).granted).toBe(true);
    const caller = new AbortController();
    const a = t.wait('a', { signal: caller.signal });
    const b = t.wait('b');
    const c = t.wait('c');
    await t.at(50);
    caller.abort();
    await t.at(50);
    expect(a.waited).toEqual({ end: 'cancelled', verdict: null, waitedMs: 50, waiting: 1 });
    // b takes the unit a would have had, at 100; c the next one.
    await t.at(200);
    expect(ends(a, b, c)).toEqual({ a: 'cancelled@50', b: 'granted@100', c: 'granted@200' });
    expect(t.givenBack).toEqual([]);
    // A caller gone before its request could wait is answered at once.
    const gone = new AbortController();
    gone.abort();
    const d = t.wait('d', { signal: gone.signal });
    await t.at(200);
    expect(d.waited).toMatchObject({ end: 'cancelled', waitedMs: 0 });
    await t.at(300);
    expect((await t.acquire(1)).granted).toBe(true);
  });

  it('max_wait: denied after exactly max_wait, charged nothing', async () => {
    const t = line(TEN_PER_SECOND);
    expect((await t.acquire(10)).granted).toBe(true);
    const a = t.wait('a', { cost: 5, maxWaitMs: 300 });
    await t.at(299);
    expect(a.waited).toBeUndefined();
    await t.at(300);
    expect(a.waited).toMatchObject({ end: 'timeout', verdict: null, waitedMs: 300 });
    expect(t.waiters.size).toBe(0);
    // Its 5 units fall due at 500 as if it had never waited.
    await t.at(499);
    expect((await t.acquire(5)).granted).toBe(false);
    await t.at(500);
    expect(await t.acquire(5)).toMatchObject({ granted: true, remaining: 0 });
  });

  it('wait.max_waiters: past it a request is refused for the scope; a place that frees up is taken again', async () => {
    const t = line(TEN_PER_DAY, '    wait: { max_waiters: 2 }\n');
    expect((await t.acquire(10)).granted).toBe(true);
    const caller = new AbortController();
    const a = t.wait('a', { signal: caller.signal });
    const b = t.wait('b');
    const c = t.wait('c');
    await t.at(0);
    expect(c.refused?.which).toBe('scope');
    expect(c.refused?.message).toContain('wait.max_waiters');
    expect(t.waiters.size).toBe(2);
    caller.abort();
    const d = t.wait('d');
    await t.at(0);
    expect(ends(a, b, d)).toEqual({ a: 'cancelled@0', b: 'waiting', d: 'waiting' });
    expect(d.refused).toBeUndefined();
  });

  it('server.max_waiters: past it a request is refused for the sidecar, whatever its scope\'s line holds', async () => {
    const t = line(TEN_PER_DAY, '', 2);
    expect((await t.acquire(10)).granted).toBe(true);
    const a = t.wait('a');
    const b = t.wait('b');
    const c = t.wait('c');
    await t.at(0);
    expect(c.refused?.which).toBe('sidecar');
    expect(c.refused?.message).toContain('server.max_waiters');
    expect(ends(a, b)).toEqual({ a: 'waiting', b: 'waiting' });
  });

  it('a cost that can never fit is denied at once (never), charged nothing', async () => {
    const t = line(TEN_PER_SECOND);
    const a = t.wait('a', { cost: 11 });
    await t.at(0);
    expect(a.waited).toMatchObject({ end: 'never', waitedMs: 0, verdict: { granted: false, retryAfterMs: Infinity } });
    expect(await t.acquire(10)).toMatchObject({ granted: true, remaining: 0 });
  });

  it('concurrency: waiters are served as permits are released, with no time passing', async () => {
    const t = line('      - { name: inflight, algorithm: concurrency, max: 2, ttl: 1h }\n');
    expect((await t.acquire(1, 0, 'p1')).granted).toBe(true);
    expect((await t.acquire(1, 0, 'p2')).granted).toBe(true);
    const a = t.wait('a');
    const b = t.wait('b');
    await t.at(0);
    expect(ends(a, b)).toEqual({ a: 'waiting', b: 'waiting' });
    await t.release('p1');
    await t.at(0);
    expect(ends(a, b)).toEqual({ a: 'granted@0', b: 'waiting' });
    await t.release('p2');
    await t.at(0);
    expect(ends(a, b)).toEqual({ a: 'granted@0', b: 'granted@0' });
    // Each holds the slot it was served with: released, it lets a third one in.
    expect((await t.acquire(1)).granted).toBe(false);
    await t.release(a.permitId);
    expect((await t.acquire(1)).granted).toBe(true);
  });
});
