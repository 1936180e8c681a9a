// Cases derived from envoyproxy/ratelimit's test/limiter/base_limiter_test.go and
// test/redis/fixed_cache_impl_test.go: each `it` is named after the upstream test it comes from.
// Upstream sets a counter in a mocked Redis and reads the status back; here the budget is spent
// to that count first, through the built sidecar, on every backend (upstream.ts), and the request
// of the upstream case follows in the same window. Upstream's statistics (near_limit, over_limit,
// ...) are derived here only for its local cache (in stats.test.ts for the rest); its per-second
// Redis, jitter and tracing are not. A descriptor over its limit reports what is really left,
// where upstream says 0 (docs/envoy.md); so does a case named "differs from TestX".
//
// Upstream's local cache of keys over their limit is sluice's lease, standing denial: once the
// store denies a hot key, the requests after it are denied by the sidecar without a store call.
// Those cases run on a sidecar of their own whose lease ttl (30 s) outlasts their steps on a slow
// machine, in an hour's window rather than upstream's second for the same reason; on the memory
// store and with leases off, the same requests are answered by the store, with the same answers.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { commandCalls } from '../../bench/redis-stats.js';
import { secondsToWindowEnd, type Unit } from '../../src/envoy/units.js';
import { metric } from '../support/sidecar.js';
import { desc, type EnvoyClient, type WireDescriptor, type WireResponse, type WireStatus } from './client.js';
import { hits, inOneWindow, onEveryBackend, statusLine as line } from './upstream.js';

const limit = (key: string, value: string, rpu: number, unit: string, extra = '') => `  - { key: ${key}, value: ${value},${extra} rate_limit: { unit: ${unit}, requests_per_unit: ${rpu} } }`;

const FILES: Record<string, string> = {
  'domain.yaml': [
    'domain: domain',
    'descriptors:',
    limit('key', 'value', 10, 'second'),
    '  - key: key2',
    '    value: value2',
    '    descriptors:',
    `  ${limit('subkey2', 'subvalue2', 10, 'minute')}`,
    '  - key: key3',
    '    value: value3',
    '    rate_limit: { unit: hour, requests_per_unit: 10 }',
    '    descriptors:',
    `  ${limit('subkey3', 'subvalue3', 10, 'day')}`,
    limit('key4', 'value4', 15, 'hour'),
    limit('key5', 'value5', 20, 'second'),
    limit('key6', 'value6', 8, 'second'),
    limit('key7', 'value7', 20, 'second'),
    limit('key8', 'value8', 20, 'second'),
    limit('key9', 'value9', 20, 'second'),
    limit('key10', 'value10', 10, 'second'),
    '',
  ].join('\n'),
  'local-cache.yaml': ['domain: local-cache', 'descriptors:', limit('key4', 'value4', 15, 'hour'), ''].join('\n'),
  'local-cache-shadow.yaml': ['domain: local-cache-shadow', 'descriptors:', limit('key4', 'value4', 15, 'hour', ' shadow_mode: true,'), ''].join('\n'),
  'stop-increment.yaml': ['domain: stop-increment', 'descriptors:', limit('key4', 'value4', 15, 'hour'), limit('key5', 'value5', 14, 'hour'), ''].join('\n'),
  'status.yaml': [
    'domain: status',
    'descriptors:',
    limit('over', 'value', 5, 'second'),
    limit('over_shadow', 'value', 5, 'second', ' shadow_mode: true,'),
    limit('below', 'value', 10, 'second'),
    limit('below_shadow', 'value', 10, 'second', ' shadow_mode: true,'),
    '',
  ].join('\n'),
  'share.yaml': `
domain: share
descriptors:
  - { key: files, value: files/*, share_threshold: true, rate_limit: { unit: second, requests_per_unit: 10 } }
  - key: parent
    value: value1
    descriptors:
      - { key: files, value: nested/*, share_threshold: true, rate_limit: { unit: second, requests_per_unit: 10 } }
  - key: files
    value: top/*
    share_threshold: true
    descriptors:
      - { key: files, value: nested/*, share_threshold: true, rate_limit: { unit: second, requests_per_unit: 10 } }
`,
  'cache-keys.yaml': ['domain: cache-keys', 'descriptors:', limit('key', 'value', 10, 'hour'), ''].join('\n'),
  'local.yaml': [
    'domain: local',
    'descriptors:',
    '  - { key: cached, rate_limit: { unit: hour, requests_per_unit: 5 } }',
    '  - { key: not_cached, rate_limit: { unit: hour, requests_per_unit: 5 } }',
    limit('over', 'value', 5, 'hour'),
    limit('over_shadow', 'value', 5, 'hour', ' shadow_mode: true,'),
    '',
  ].join('\n'),
};


/** A request timed from both sides, so that its duration_until_reset can be checked against the window's end. */
async function timed(call: () => Promise<WireResponse>): Promise<WireResponse & { before: number; after: number }> {
  const before = Date.now();
  const res = await call();
  return { ...res, before, after: Date.now() };
}

/** duration_until_reset is upstream's CalculateReset: the seconds left in the window the request fell in. */
function expectWindowEnd(res: { before: number; after: number }, status: WireStatus, unit: Unit): void {
  const seconds = status.duration_until_reset!.seconds;
  expect(seconds).toBeLessThanOrEqual(secondsToWindowEnd(unit, res.before));
  expect(seconds).toBeGreaterThanOrEqual(secondsToWindowEnd(unit, res.after));
}

/** Upstream's statistics of a rule, as sluice's counters name them. */
const STATISTICS = {
  hits: 'sluice_envoy_hits_total',
  overLimit: 'sluice_envoy_over_limit_total',
  nearLimit: 'sluice_envoy_near_limit_total',
  withinLimit: 'sluice_envoy_within_limit_total',
  shadowMode: 'sluice_envoy_shadow_mode_total',
  overLimitWithLocalCache: 'sluice_envoy_over_limit_with_local_cache_total',
} as const;

/** What the lease must keep standing through a local-cache case: its denial lasts until the ttl. */
const LOCAL_CACHE_SIDECAR = { envoy: [], lease: 'ttl: 30s' };

onEveryBackend('upstream test/limiter and test/redis', FILES, { sidecar: [], 'local-cache': LOCAL_CACHE_SIDECAR }, (world) => {
  const client = (): EnvoyClient => world.served('sidecar').client;
  const ask = (domain: string, descriptors: WireDescriptor[], hitsAddend = 0) => client().shouldRateLimit(domain, descriptors, hitsAddend);
  /** Spends `n` units of each descriptor's budget, in one request that must be granted. */
  const spend = async (domain: string, descriptors: WireDescriptor[], n: number) => expect((await ask(domain, descriptors, n)).overall_code).toBe('OK');

  const cached = () => world.served('local-cache');
  const askCached = (descriptors: WireDescriptor[], hitsAddend: number) => cached().client.shouldRateLimit('local', descriptors, hitsAddend);
  /** The local-cache sidecar's denials of domain `local` decided by a lease, without a store call. */
  const leaseDenials = () => metric(cached().sidecar, 'sluice_decisions_total', 'resource="envoy:local"', 'outcome="denied"', 'decided_by="LEASE"');

  /**
   * What the local-cache sidecar has counted so far: upstream's statistics of `rule`, its lease
   * denials, and the budgets Redis has read (every decision, take or refund of a window reads its
   * state with HMGET; a heartbeat reads none).
   */
  async function figures(rule: string) {
    const read = (name: string) => metric(cached().sidecar, name, 'domain="local"', `rule="${rule}"`);
    return {
      hits: await read(STATISTICS.hits),
      overLimit: await read(STATISTICS.overLimit),
      nearLimit: await read(STATISTICS.nearLimit),
      withinLimit: await read(STATISTICS.withinLimit),
      shadowMode: await read(STATISTICS.shadowMode),
      overLimitWithLocalCache: await read(STATISTICS.overLimitWithLocalCache),
      leaseDenials: await leaseDenials(),
      budgetReads: world.redis ? ((await commandCalls(world.redis.client)).hmget ?? 0) : 0,
    };
  }
  type Figures = Awaited<ReturnType<typeof figures>>;
  const delta = (before: Figures, after: Figures) => Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof Figures]])) as Figures;

  /**
   * Spends a descriptor's 5 in one request, then asks for `hitsAddend` more, 60 requests at
   * once, until the key is hot enough to be leased and the store's denial stands in the lease;
   * once on a backend without leases. Every answer is the descriptor's `over` line.
   */
  async function overTheLimit(descriptor: WireDescriptor, hitsAddend: number, over: string): Promise<void> {
    expect((await askCached([descriptor], 5)).overall_code).toBe('OK');
    for (let burst = 0; burst < 10; burst++) {
      const answers = await Promise.all(Array.from({ length: 60 }, () => askCached([descriptor], hitsAddend)));
      expect(new Set(answers.map((a) => line(a.statuses[0]!)))).toEqual(new Set([over]));
      if (!world.backend.leases || (await leaseDenials()) > 0) return;
    }
    throw new Error('the key never became hot enough to lease');
  }

  /**
   * A local answer counts its retry from when the store's denial reached the sidecar, which is
   * later than when the store made it: rarely, that crosses a whole second of the window's end.
   */
  function expectLocalWindowEnd(res: { before: number; after: number }, status: WireStatus, unit: Unit): void {
    const seconds = status.duration_until_reset!.seconds;
    expect(seconds).toBeLessThanOrEqual(secondsToWindowEnd(unit, res.before) + 1);
    expect(seconds).toBeGreaterThanOrEqual(secondsToWindowEnd(unit, res.after));
  }

  describe('base_limiter_test.go', () => {
    it('TestGenerateCacheKeysWithShareThreshold', async () => {
      await inOneWindow('SECOND', 700);
      const remaining = async (...entries: string[]) => (await ask('share', [desc(...entries)])).statuses[0]!.limit_remaining;
      // Every value under files/* shares one budget.
      expect(await remaining('files', 'files/a.pdf')).toBe(9);
      expect(await remaining('files', 'files/b.csv')).toBe(8);
      for (const [i, value] of ['files/c.txt', 'files/d.json', 'files/e.xml', 'files/subdir/f.txt'].entries()) expect(await remaining('files', value)).toBe(7 - i);
      await inOneWindow('SECOND', 700);
      // Nested: the parent's value as sent, the shared entry under its pattern.
      expect(await remaining('parent', 'value1', 'files', 'nested/file1.txt')).toBe(9);
      expect(await remaining('parent', 'value1', 'files', 'nested/file2.csv')).toBe(8);
      // Two shared entries at two levels.
      expect(await remaining('files', 'top/file1.txt', 'files', 'nested/sub1.txt')).toBe(9);
      expect(await remaining('files', 'top/file2.pdf', 'files', 'nested/sub2.csv')).toBe(8);
    });

    it('TestGetResponseStatusEmptyKey', async () => {
      const res = await ask('status', [desc('nothing', 'here')]);
      expect(res.statuses).toEqual([expect.objectContaining({ code: 'OK', current_limit: null, limit_remaining: 0, duration_until_reset: null })]);
    });

    it('TestGetResponseStatusOverLimit', async () => {
      await inOneWindow('SECOND', 700);
      await spend('status', [desc('over', 'value')], 5);
      const res = await timed(() => ask('status', [desc('over', 'value')]));
      expect(res.statuses.map(line)).toEqual(['OVER_LIMIT 5/SECOND 0']);
      expectWindowEnd(res, res.statuses[0]!, 'SECOND');
    });

    it('TestGetResponseStatusOverLimitShadowMode', async () => {
      await inOneWindow('SECOND', 700);
      await spend('status', [desc('over_shadow', 'value')], 5);
      expect((await ask('status', [desc('over_shadow', 'value')])).statuses.map(line)).toEqual(['OK 5/SECOND 0']);
    });

    it('TestGetResponseStatusBelowLimit', async () => {
      await inOneWindow('SECOND', 700);
      await spend('status', [desc('below', 'value')], 5);
      const res = await timed(() => ask('status', [desc('below', 'value')]));
      expect(res.statuses.map(line)).toEqual(['OK 10/SECOND 4']);
      expectWindowEnd(res, res.statuses[0]!, 'SECOND');
    });

    it('TestGetResponseStatusBelowLimitShadowMode', async () => {
      await inOneWindow('SECOND', 700);
      await spend('status', [desc('below_shadow', 'value')], 5);
      expect((await ask('status', [desc('below_shadow', 'value')])).statuses.map(line)).toEqual(['OK 10/SECOND 4']);
    });

    it('TestOverLimitWithLocalCache', async () => {
      await inOneWindow('HOUR', 30_000);
      const key = desc('cached', randomUUID());
      await overTheLimit(key, 1, 'OVER_LIMIT 5/HOUR 0');
      const before = await figures('cached');
      for (let i = 0; i < 5; i++) expect((await askCached([key], 1)).statuses.map(line)).toEqual(['OVER_LIMIT 5/HOUR 0']);
      const local = delta(before, await figures('cached'));
      if (world.backend.leases) {
        // Over the limit in the local cache: denied by the lease, and Redis read no budget for it.
        expect(local).toMatchObject({ leaseDenials: 5, overLimitWithLocalCache: 5, budgetReads: 0 });
      } else {
        expect(local).toMatchObject({ leaseDenials: 0, overLimitWithLocalCache: 0 });
      }
      expect(local).toMatchObject({ hits: 5, overLimit: 5 });
    });

    it('TestNoOverLimitWithLocalCache', async () => {
      await inOneWindow('HOUR', 30_000);
      const over = desc('not_cached', randomUUID());
      await overTheLimit(over, 1, 'OVER_LIMIT 5/HOUR 0');
      if (!world.backend.leases) {
        // No local cache: the store answers every request over the limit.
        const before = await figures('not_cached');
        for (let i = 0; i < 5; i++) expect((await askCached([over], 1)).statuses.map(line)).toEqual(['OVER_LIMIT 5/HOUR 0']);
        const local = delta(before, await figures('not_cached'));
        expect(local).toMatchObject({ leaseDenials: 0, overLimitWithLocalCache: 0, overLimit: 5 });
        if (world.redis) expect(local.budgetReads).toBeGreaterThanOrEqual(5);
      }
      // A key not over its limit is not in the cache: the store answers it, whatever its neighbour's state.
      const before = await figures('not_cached');
      expect((await askCached([desc('not_cached', randomUUID())], 1)).statuses.map(line)).toEqual(['OK 5/HOUR 4']);
      const fresh = delta(before, await figures('not_cached'));
      expect(fresh).toMatchObject({ leaseDenials: 0, overLimitWithLocalCache: 0, withinLimit: 1 });
      if (world.redis) expect(fresh.budgetReads).toBeGreaterThanOrEqual(1);
    });

    for (const [name, rule, code] of [
      ['TestGetResponseStatusOverLimitWithLocalCache', 'over', 'OVER_LIMIT'],
      ['TestGetResponseStatusOverLimitWithLocalCacheShadowMode', 'over_shadow', 'OK'],
    ] as const) {
      it(name, async () => {
        await inOneWindow('HOUR', 30_000);
        const descriptor = desc(rule, 'value');
        await overTheLimit(descriptor, 2, `${code} 5/HOUR 0`);
        const before = await figures(`${rule}_value`);
        const res = await timed(() => askCached([descriptor], 2));
        // As upstream answers from its local cache: the limit, nothing left, the window's end.
        expect(res.overall_code).toBe(code);
        expect(res.statuses.map(line)).toEqual([`${code} 5/HOUR 0`]);
        expectLocalWindowEnd(res, res.statuses[0]!, 'HOUR');
        const counted = delta(before, await figures(`${rule}_value`));
        // Every hit over the limit, none near it; in shadow_mode too for a shadow rule.
        expect(counted).toMatchObject({ hits: 2, overLimit: 2, nearLimit: 0, withinLimit: 0, shadowMode: code === 'OK' ? 2 : 0 });
        if (world.backend.leases) expect(counted).toMatchObject({ overLimitWithLocalCache: 2, leaseDenials: 1, budgetReads: 0 });
        else expect(counted.overLimitWithLocalCache).toBe(0);
      });
    }

    it('differs from TestGenerateCacheKeys: the budget is kept under sluice’s own key (domain, entries, limit), with a TTL', async () => {
      expect((await ask('cache-keys', [desc('key', 'value')])).statuses.map(line)).toEqual(['OK 10/HOUR 9']);
      if (!world.redis) return; // the memory store keeps no keys
      const key = 'sluice:{envoy=cache-keys|key|value|~fw_hour}:fw_hour|fw';
      expect(await world.redis.client.exists(key)).toBe(1);
      const ttl = await world.redis.client.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(3_600_000);
    });
  });

  describe('fixed_cache_impl_test.go', () => {
    it('TestRedis/WithoutPerSecondRedis', async () => {
      await inOneWindow('SECOND', 700);
      await spend('domain', [desc('key', 'value')], 4);
      const first = await timed(() => ask('domain', [desc('key', 'value')], 1));
      expect(first.statuses.map(line)).toEqual(['OK 10/SECOND 5']);
      expectWindowEnd(first, first.statuses[0]!, 'SECOND');

      await inOneWindow('MINUTE', 10_000);
      await spend('domain', [desc('key2', 'value2', 'subkey2', 'subvalue2')], 10);
      const second = await timed(() => ask('domain', [hits(desc('key2', 'value2'), 0), hits(desc('key2', 'value2', 'subkey2', 'subvalue2'), 1)]));
      expect(second.overall_code).toBe('OVER_LIMIT');
      expect(second.statuses.map(line)).toEqual(['OK - 0', 'OVER_LIMIT 10/MINUTE 0']);
      expect(second.statuses[0]!.duration_until_reset).toBeNull();
      expectWindowEnd(second, second.statuses[1]!, 'MINUTE');

      await inOneWindow('HOUR', 10_000);
      await spend('domain', [desc('key3', 'value3'), desc('key3', 'value3', 'subkey3', 'subvalue3')], 10);
      const third = await timed(() => ask('domain', [hits(desc('key3', 'value3'), 0), hits(desc('key3', 'value3', 'subkey3', 'subvalue3'), 1)]));
      expect(third.statuses.map(line)).toEqual(['OVER_LIMIT 10/HOUR 0', 'OVER_LIMIT 10/DAY 0']);
      expectWindowEnd(third, third.statuses[0]!, 'HOUR');
      expectWindowEnd(third, third.statuses[1]!, 'DAY');
    });

    it('TestNearLimit', async () => {
      await inOneWindow('HOUR', 10_000);
      const key4 = [desc('key4', 'value4')];
      await spend('domain', key4, 10);
      expect((await ask('domain', key4)).statuses.map(line)).toEqual(['OK 15/HOUR 4']);
      await spend('domain', key4, 1);
      expect((await ask('domain', key4)).statuses.map(line)).toEqual(['OK 15/HOUR 2']);
      await spend('domain', key4, 2);
      expect((await ask('domain', key4)).statuses.map(line)).toEqual(['OVER_LIMIT 15/HOUR 0']);

      // hits_addend above 1: spent before, the request's hits_addend, what is left after.
      const steps: [string, number, number, string][] = [
        ['key5', 2, 3, 'OK 20/SECOND 15'],
        ['key6', 5, 2, 'OK 8/SECOND 1'],
        ['key7', 16, 3, 'OK 20/SECOND 1'],
        // Over the limit: upstream says 0 left; sluice says what is (the request took nothing).
        ['key8', 19, 3, 'OVER_LIMIT 20/SECOND 1'],
        ['key9', 15, 7, 'OVER_LIMIT 20/SECOND 5'],
        ['key10', 10, 3, 'OVER_LIMIT 10/SECOND 0'],
      ];
      for (const [key, spent, hitsAddend, status] of steps) {
        await inOneWindow('SECOND', 700);
        const descriptor = [desc(key, key.replace('key', 'value'))];
        await spend('domain', descriptor, spent);
        expect((await ask('domain', descriptor, hitsAddend)).statuses.map(line), key).toEqual([status]);
      }
    });

    it('TestOverLimitWithLocalCache', async () => {
      await inOneWindow('HOUR', 10_000);
      const key4 = [desc('key4', 'value4')];
      await spend('local-cache', key4, 10);
      expect((await ask('local-cache', key4)).statuses.map(line)).toEqual(['OK 15/HOUR 4']);
      await spend('local-cache', key4, 1);
      expect((await ask('local-cache', key4)).statuses.map(line)).toEqual(['OK 15/HOUR 2']);
      await spend('local-cache', key4, 2);
      expect((await ask('local-cache', key4)).statuses.map(line)).toEqual(['OVER_LIMIT 15/HOUR 0']);
      expect((await ask('local-cache', key4)).statuses.map(line)).toEqual(['OVER_LIMIT 15/HOUR 0']);
    });

    it('TestOverLimitWithLocalCacheShadowRule', async () => {
      await inOneWindow('HOUR', 10_000);
      const key4 = [desc('key4', 'value4')];
      await spend('local-cache-shadow', key4, 10);
      expect((await ask('local-cache-shadow', key4)).statuses.map(line)).toEqual(['OK 15/HOUR 4']);
      await spend('local-cache-shadow', key4, 1);
      expect((await ask('local-cache-shadow', key4)).statuses.map(line)).toEqual(['OK 15/HOUR 2']);
      await spend('local-cache-shadow', key4, 2);
      const over = await ask('local-cache-shadow', key4);
      expect(over.overall_code).toBe('OK');
      expect(over.statuses.map(line)).toEqual(['OK 15/HOUR 0']);
      expect((await ask('local-cache-shadow', key4)).statuses.map(line)).toEqual(['OK 15/HOUR 0']);
    });

    it('TestOverLimitWithStopCacheKeyIncrementWhenOverlimitConfig', async () => {
      await inOneWindow('HOUR', 10_000);
      const both = (a: number, b: number) => [hits(desc('key4', 'value4'), a), hits(desc('key5', 'value5'), b)];
      await spend('stop-increment', [desc('key4', 'value4'), desc('key5', 'value5')], 10);
      expect((await ask('stop-increment', both(1, 1))).statuses.map(line)).toEqual(['OK 15/HOUR 4', 'OK 14/HOUR 3']);
      expect((await ask('stop-increment', both(2, 2))).statuses.map(line)).toEqual(['OK 15/HOUR 2', 'OK 14/HOUR 1']);
      // key5 cannot take 2 more: the request is over the limit, and key4 is not charged either.
      const over = await ask('stop-increment', both(2, 2));
      expect(over.overall_code).toBe('OVER_LIMIT');
      expect(over.statuses.map(line)).toEqual(['OK 15/HOUR 2', 'OVER_LIMIT 14/HOUR 1']);
      expect((await ask('stop-increment', both(0, 0))).statuses.map(line)).toEqual(['OK 15/HOUR 2', 'OK 14/HOUR 1']);
    });
  });
});
