// Upstream's deployment settings that change answers, as envoy: settings, through the real
// Decider on the memory store with a fake clock: shadow_mode (SHADOW_MODE), the response header
// names (LIMIT_*_HEADER), and the statistics near_limit_ratio (NEAR_LIMIT_RATIO) feeds.
import { Registry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import { Decider } from '../../src/decide/decider.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import type { EnvoyOptions } from '../../src/config/policy.js';
import type { EnvoyConfig } from '../../src/envoy/config.js';
import { shouldRateLimit, type EnvoyDescriptor, type EnvoyRequest } from '../../src/envoy/limiter.js';
import { EnvoyStats } from '../../src/envoy/stats.js';
import { configOf } from './support.js';

const FILE = `
domain: api
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 10, name: per-user }
  - key: path
    value: /expensive
    rate_limit: { unit: hour, requests_per_unit: 1 }
  - key: soft
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: ip
    detailed_metric: true
    rate_limit: { unit: second, requests_per_unit: 0 }
`;

// 15 s into a minute.
const T0 = Date.UTC(2030, 0, 1, 0, 0, 15);

let decider: Decider;
let registry: Registry;

beforeEach(() => {
  const store = new MemoryStore({ maxKeys: 1000, now: () => T0, sweepEveryMs: 0 });
  decider = new Decider(store, { maxPermits: 100, now: () => T0 });
  registry = new Registry();
});

const d = (key: string, value: string, extra: Partial<EnvoyDescriptor> = {}): EnvoyDescriptor => ({ entries: [{ key, value }], override: null, hits: null, ...extra });

/** A limiter on FILE with these settings, counting into `into` (the test's registry). */
function limiter(settings: Partial<EnvoyOptions> = {}, into = registry) {
  const config: EnvoyConfig = configOf({ 'api.yaml': FILE }, settings);
  const stats = new EnvoyStats(into, config.options.nearLimitRatio);
  return (descriptors: EnvoyDescriptor[], more: Partial<EnvoyRequest> = {}) =>
    shouldRateLimit(decider, config, { domain: 'api', descriptors, hits: 1, ...more }, { now: () => T0, stats });
}

/** A metric's series as "rule value". */
async function series(name: string): Promise<string[]> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name)!;
  return (metric.values as { labels: Record<string, string>; value: number }[]).map((v) => (v.labels.rule === undefined ? `${v.value}` : `${v.labels.rule} ${v.value}`));
}

describe('shadow_mode (upstream’s SHADOW_MODE)', () => {
  it('answers OK where the answer would be OVER_LIMIT; the descriptor’s own status still says OVER_LIMIT, as upstream’s does', async () => {
    const ask = limiter({ shadowMode: true });
    await ask([d('path', '/expensive')]);
    const answer = await ask([d('user', 'ann'), d('path', '/expensive')]);
    expect(answer.overall).toBe('OK');
    expect(answer.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT']);
    expect(await series('sluice_envoy_global_shadow_mode_total')).toEqual(['1']);
    expect(await series('sluice_envoy_over_limit_total')).toEqual(['path_/expensive 1', 'user 0']);
  });

  it('the request goes ahead, so its other descriptors stay charged (without shadow_mode they are given back)', async () => {
    const shadowed = limiter({ shadowMode: true });
    await shadowed([d('path', '/expensive')]);
    expect((await shadowed([d('user', 'bob'), d('path', '/expensive')])).statuses[0]!.remaining).toBe(9);
    expect((await shadowed([d('user', 'bob')])).statuses[0]!.remaining).toBe(8);

    const enforced = limiter({}, new Registry());
    expect((await enforced([d('user', 'cat'), d('path', '/expensive')])).overall).toBe('OVER_LIMIT');
    expect((await enforced([d('user', 'cat')])).statuses[0]!.remaining).toBe(9);
  });

  it('a request within its limits is not counted as shadowed', async () => {
    const ask = limiter({ shadowMode: true });
    expect((await ask([d('user', 'dan')])).overall).toBe('OK');
    expect(await series('sluice_envoy_global_shadow_mode_total')).toEqual(['0']);
  });
});

describe('response header names (upstream’s LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER)', () => {
  it('names the three headers, with upstream’s values: the limit, what remains, seconds to the window’s end', async () => {
    const ask = limiter({ responseHeaders: true, responseHeaderNames: { limit: 'A-Ratelimit-Limit', remaining: 'A-Ratelimit-Remaining', reset: 'A-Ratelimit-Reset' } });
    expect((await ask([d('user', 'eve')], { hits: 3 })).responseHeaders).toEqual([
      { key: 'A-Ratelimit-Limit', value: '10' },
      { key: 'A-Ratelimit-Remaining', value: '7' },
      { key: 'A-Ratelimit-Reset', value: '45' },
    ]);
  });

  it('an over-limit descriptor is the one reported, also in shadow mode', async () => {
    const ask = limiter({ responseHeaders: true, shadowMode: true });
    await ask([d('path', '/expensive')]);
    expect((await ask([d('user', 'fay'), d('path', '/expensive')])).responseHeaders).toEqual([
      { key: 'RateLimit-Limit', value: '1' },
      { key: 'RateLimit-Remaining', value: '0' },
      { key: 'RateLimit-Reset', value: String(3600 - 15) },
    ]);
  });
});

describe('statistics (upstream’s total_hits, over_limit, near_limit, within_limit, shadow_mode)', () => {
  it('near_limit counts the hits past near_limit_ratio of the limit; over_limit those past it', async () => {
    const ask = limiter({ nearLimitRatio: 0.5 });
    for (let i = 0; i < 10; i++) expect((await ask([d('user', 'gus')])).overall).toBe('OK');
    expect((await ask([d('user', 'gus')], { hits: 2 })).overall).toBe('OVER_LIMIT');
    expect(await series('sluice_envoy_hits_total')).toEqual(['user 12']);
    expect(await series('sluice_envoy_within_limit_total')).toEqual(['user 10']);
    // Hits 6 to 10 are past 5 (half of 10) and within the limit.
    expect(await series('sluice_envoy_near_limit_total')).toEqual(['user 5']);
    expect(await series('sluice_envoy_over_limit_total')).toEqual(['user 2']);
  });

  it('the default ratio is upstream’s 0.8', async () => {
    const ask = limiter();
    for (let i = 0; i < 10; i++) await ask([d('user', 'hal')]);
    expect(await series('sluice_envoy_near_limit_total')).toEqual(['user 2']);
  });

  it('a shadow_mode rule counts its hits past the limit as shadow_mode, and answers OK', async () => {
    const ask = limiter();
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await ask([d('soft', 'x')])).overall);
    expect(codes).toEqual(['OK', 'OK', 'OK', 'OK']);
    expect(await series('sluice_envoy_shadow_mode_total')).toEqual(['soft 2']);
    expect(await series('sluice_envoy_over_limit_total')).toEqual(['soft 2']);
  });

  it('values only where detailed_metric asks for them; a check (hits_addend 0) adds nothing', async () => {
    const ask = limiter();
    await ask([d('user', 'ivy'), d('ip', '10.0.0.1')]);
    await ask([d('user', 'jon', { hits: 0 })]);
    expect((await series('sluice_envoy_hits_total')).sort()).toEqual(['ip_10.0.0.1 1', 'user 1']);
  });

  it('an unknown domain, an unmatched descriptor and an unlimited one count nothing', async () => {
    const ask = limiter();
    await ask([d('nothing', 'x')]);
    await ask([d('user', 'x')], { domain: 'elsewhere' });
    expect(await series('sluice_envoy_hits_total')).toEqual([]);
  });
});
