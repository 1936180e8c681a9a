// Upstream's per-rule statistics: the arithmetic (cases from upstream's base limiter and Redis
// cache tests, named after them), the rule label (never a value unless detailed_metric or
// value_to_metric asks for it), and the
// table's caps, read back as Prometheus exposes them.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { DecidedBy, Decision } from '../../src/decide/decision.js';
import { matchRule, type Entry } from '../../src/envoy/match.js';
import { countDecision, countHits, EnvoyStats, MAX_DETAILED_SERIES, MAX_SERIES, OTHER_RULE, OVERRIDE_RULE, statLabel, type HitCounts } from '../../src/envoy/stats.js';
import { domainOf } from './support.js';

const counts = (c: Partial<HitCounts>): HitCounts => ({ totalHits: 0, overLimit: 0, nearLimit: 0, withinLimit: 0, shadowMode: 0, overLimitWithLocalCache: 0, ...c });

describe('countHits: upstream’s arithmetic', () => {
  // [upstream case, limit, used before, used after, hits, expected]
  const cases: [string, number, number, number, number, boolean, HitCounts][] = [
    ['TestGetResponseStatusBelowLimit', 10, 2, 6, 1, false, counts({ totalHits: 1, withinLimit: 1 })],
    ['TestGetResponseStatusOverLimit', 5, 2, 7, 1, false, counts({ totalHits: 1, overLimit: 2, nearLimit: 1 })],
    ['TestGetResponseStatusOverLimitShadowMode', 5, 2, 7, 1, true, counts({ totalHits: 1, overLimit: 2, nearLimit: 1, shadowMode: 2 })],
    ['TestGetResponseStatusBelowLimitShadowMode', 10, 2, 6, 1, true, counts({ totalHits: 1, withinLimit: 1 })],
    ['TestNearLimit: 11 of 15', 15, 10, 11, 1, false, counts({ totalHits: 1, withinLimit: 1 })],
    ['TestNearLimit: 13 of 15', 15, 12, 13, 1, false, counts({ totalHits: 1, nearLimit: 1, withinLimit: 1 })],
    ['TestNearLimit: 16 of 15', 15, 15, 16, 1, false, counts({ totalHits: 1, overLimit: 1 })],
    ['TestNearLimit: 3 more to 5 of 20', 20, 2, 5, 3, false, counts({ totalHits: 3, withinLimit: 3 })],
    ['TestNearLimit: 2 more to 7 of 8', 8, 5, 7, 2, false, counts({ totalHits: 2, nearLimit: 1, withinLimit: 2 })],
    ['TestNearLimit: 3 more to 19 of 20', 20, 16, 19, 3, false, counts({ totalHits: 3, nearLimit: 3, withinLimit: 3 })],
    ['TestNearLimit: 3 more to 22 of 20', 20, 19, 22, 3, false, counts({ totalHits: 3, overLimit: 2, nearLimit: 1 })],
    ['TestNearLimit: 7 more to 22 of 20', 20, 15, 22, 7, false, counts({ totalHits: 7, overLimit: 2, nearLimit: 4 })],
    ['TestNearLimit: 3 more to 30 of 10', 10, 27, 30, 3, false, counts({ totalHits: 3, overLimit: 3 })],
  ];
  it.each(cases)('%s', (_name, limit, before, after, hits, shadow, expected) => {
    expect(countHits({ limit, before, after, hits, over: after > limit, shadow, local: false }, 0.8)).toEqual(expected);
  });

  // Upstream's local cache answers without the count: every hit is over the limit, and counted as answered locally.
  it.each([
    ['TestGetResponseStatusOverLimitWithLocalCache', false, counts({ totalHits: 2, overLimit: 2, overLimitWithLocalCache: 2 })],
    ['TestGetResponseStatusOverLimitWithLocalCacheShadowMode', true, counts({ totalHits: 2, overLimit: 2, overLimitWithLocalCache: 2, shadowMode: 2 })],
  ] as const)('%s', (_name, shadow, expected) => {
    expect(countHits({ limit: 5, before: 2, after: 6, hits: 2, over: true, shadow, local: true }, 0.8)).toEqual(expected);
  });

  it('the near threshold is floor(limit × ratio) in float32, as upstream computes it', () => {
    // 100 × 0.29 is 28.999999999999996 in float64 but 29 in float32: the 29th hit is not near yet.
    expect(countHits({ limit: 100, before: 28, after: 29, hits: 1, over: false, shadow: false, local: false }, 0.29).nearLimit).toBe(0);
    expect(countHits({ limit: 100, before: 29, after: 30, hits: 1, over: false, shadow: false, local: false }, 0.29).nearLimit).toBe(1);
    expect(countHits({ limit: 10, before: 7, after: 8, hits: 1, over: false, shadow: false, local: false }, 1).nearLimit).toBe(0);
    expect(countHits({ limit: 10, before: 0, after: 1, hits: 1, over: false, shadow: false, local: false }, 0).nearLimit).toBe(1);
  });
});

describe('countDecision: what sluice decided, in upstream’s figures', () => {
  const decision = (granted: boolean, remaining: number, limit = 10, decidedBy: DecidedBy = 'STORE'): Decision => ({
    granted,
    permitId: '',
    retryAfterMs: granted ? 0 : 1_000,
    remaining,
    limit,
    resetAfterMs: 1_000,
    limitName: 'fw_minute',
    decidedBy,
    reason: '',
    decidedAt: 0,
    waitedMs: 0,
  });

  it('a grant: its remaining is after it', () => {
    expect(countDecision(decision(true, 1), 1, false, 0.8)).toEqual(counts({ totalHits: 1, nearLimit: 1, withinLimit: 1 }));
    expect(countDecision(decision(true, 5), 2, false, 0.8)).toEqual(counts({ totalHits: 2, withinLimit: 2 }));
  });

  it('a denial took nothing: its remaining is before it', () => {
    // 9 of 10 used, 3 asked: the 10th would have fit (near the limit), the other 2 are over it.
    expect(countDecision(decision(false, 1), 3, false, 0.8)).toEqual(counts({ totalHits: 3, overLimit: 2, nearLimit: 1 }));
    expect(countDecision(decision(false, 0), 1, true, 0.8)).toEqual(counts({ totalHits: 1, overLimit: 1, shadowMode: 1 }));
  });

  it('a denial from a lease’s standing denial, without a store call, is upstream’s local cache: every hit over the limit', () => {
    expect(countDecision(decision(false, 1, 10, 'LEASE'), 3, false, 0.8)).toEqual(counts({ totalHits: 3, overLimit: 3, overLimitWithLocalCache: 3 }));
    expect(countDecision(decision(false, 0, 10, 'LEASE'), 2, true, 0.8)).toEqual(counts({ totalHits: 2, overLimit: 2, overLimitWithLocalCache: 2, shadowMode: 2 }));
    // A lease's grant is counted as any grant.
    expect(countDecision(decision(true, 5, 10, 'LEASE'), 2, false, 0.8)).toEqual(counts({ totalHits: 2, withinLimit: 2 }));
  });

  it('a check (hits_addend 0) counts nothing', () => {
    expect(countDecision(decision(false, 0, 10, 'LEASE'), 0, false, 0.8)).toEqual(counts({}));
    expect(countDecision(decision(true, 3), 0, false, 0.8)).toEqual(counts({}));
    expect(countDecision(decision(false, 0), 0, false, 0.8)).toEqual(counts({}));
  });
});

describe('statLabel', () => {
  const domain = domainOf(`
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: { unit: day, requests_per_unit: 5 }
  - key: user
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: files
    value: files/*
    share_threshold: true
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        value: GET
        value_to_metric: true
        rate_limit: { unit: minute, requests_per_unit: 5 }
      - key: method
        value_to_metric: true
        rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: path
    value: /api/*
    value_to_metric: true
    rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: any
    value: "*"
    value_to_metric: true
    rate_limit: { unit: minute, requests_per_unit: 5 }
`);
  const label = (entries: [string, string][], override = false, from = domain) => {
    const es = entries.map(([key, value]) => ({ key, value }));
    const match = matchRule(from, es)!;
    return statLabel(from.name, match, es, override);
  };

  it('is upstream’s stat key without the domain, and without the request’s values', () => {
    expect(label([['message_type', 'marketing'], ['to_number', '+15550100']])).toEqual({
      domain: 'messaging',
      rule: 'message_type_marketing.to_number',
      detailed: false,
      coarse: 'message_type_marketing.to_number',
    });
  });

  it('detailed_metric: the request’s values, and a share_threshold wildcard as its pattern', () => {
    expect(label([['user', 'ann']])).toEqual({ domain: 'messaging', rule: 'user_ann', detailed: true, coarse: 'user' });
    expect(label([['files', 'files/a.pdf']])).toEqual({ domain: 'messaging', rule: 'files_files/*', detailed: true, coarse: 'files_files/*' });
  });

  it('a limit override: the request’s keys, no values', () => {
    expect(label([['user', 'ann']], true)).toEqual({ domain: 'messaging', rule: 'user', detailed: true, coarse: OVERRIDE_RULE });
  });

  it('value_to_metric: the request’s value at each level that sets it and is matched by its key alone or a wildcard, folding into the rule’s own label', () => {
    expect(label([['route', 'draw'], ['method', 'GET']])).toEqual({ domain: 'messaging', rule: 'route_draw.method_GET', detailed: true, coarse: 'route.method_GET' });
    expect(label([['route', 'draw'], ['method', 'PUT']])).toEqual({ domain: 'messaging', rule: 'route_draw.method_PUT', detailed: true, coarse: 'route.method' });
    expect(label([['path', '/api/v1']])).toEqual({ domain: 'messaging', rule: 'path_/api/v1', detailed: true, coarse: 'path_/api/*' });
  });

  it('value_to_metric and an empty value: the level is named by its key alone', () => {
    expect(label([['route', ''], ['method', '']])).toEqual({ domain: 'messaging', rule: 'route.method', detailed: false, coarse: 'route.method' });
    // `*` matches the empty value too; upstream then names the level by its key, not its pattern.
    expect(label([['any', '']])).toEqual({ domain: 'messaging', rule: 'any', detailed: true, coarse: 'any_*' });
  });

  it('a domain with dots is not part of the label', () => {
    const dotted = domainOf('domain: shop.eu.prod\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 5 }\n');
    expect(label([['user', 'ann']], false, dotted)).toEqual({ domain: 'shop.eu.prod', rule: 'user', detailed: false, coarse: 'user' });
  });
});

describe('EnvoyStats', () => {
  /** Each series of a metric as "domain rule value". */
  async function read(registry: Registry, name: string): Promise<string[]> {
    const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name)!;
    return (metric.values as { labels: Record<string, string>; value: number }[]).map((v) => `${v.labels.domain ?? ''} ${v.labels.rule ?? ''} ${v.value}`.trim());
  }
  const grant = (remaining: number): Decision => ({ granted: true, permitId: '', retryAfterMs: 0, remaining, limit: 10, resetAfterMs: 0, limitName: 'l', decidedBy: 'STORE', reason: '', decidedAt: 0, waitedMs: 0 });

  it('exports each statistic by domain and rule, at 0 too once the rule is hit, with global shadow mode', async () => {
    const registry = new Registry();
    const stats = new EnvoyStats(registry, 0.8);
    const label = { domain: 'd', rule: 'user', detailed: false, coarse: 'user' };
    stats.decided(label, grant(1), 1, false);
    stats.decided(label, { ...grant(0), granted: false, retryAfterMs: 1_000, decidedBy: 'LEASE' }, 2, false);
    stats.blocked({ domain: 'd', rule: 'ip_10.0.0.1', detailed: false, coarse: 'ip_10.0.0.1' }, 2, true);
    stats.shadowed();
    expect(await read(registry, 'sluice_envoy_hits_total')).toEqual(['d user 3', 'd ip_10.0.0.1 2']);
    expect(await read(registry, 'sluice_envoy_near_limit_total')).toEqual(['d user 1', 'd ip_10.0.0.1 0']);
    expect(await read(registry, 'sluice_envoy_within_limit_total')).toEqual(['d user 1', 'd ip_10.0.0.1 0']);
    expect(await read(registry, 'sluice_envoy_over_limit_total')).toEqual(['d user 2', 'd ip_10.0.0.1 2']);
    expect(await read(registry, 'sluice_envoy_shadow_mode_total')).toEqual(['d user 0', 'd ip_10.0.0.1 2']);
    expect(await read(registry, 'sluice_envoy_over_limit_with_local_cache_total')).toEqual(['d user 2', 'd ip_10.0.0.1 0']);
    expect(await read(registry, 'sluice_envoy_global_shadow_mode_total')).toEqual(['1']);
  });

  it(`at most ${MAX_DETAILED_SERIES} detailed series: past it, values fold into the rule’s own label, and are counted`, async () => {
    const registry = new Registry();
    const stats = new EnvoyStats(registry, 0.8);
    for (let i = 0; i < MAX_DETAILED_SERIES + 50; i++) stats.decided({ domain: 'd', rule: `user_${i}`, detailed: true, coarse: 'user' }, grant(9), 1, false);
    const hits = await read(registry, 'sluice_envoy_hits_total');
    expect(hits).toHaveLength(MAX_DETAILED_SERIES + 1);
    expect(hits).toContain('d user 50');
    expect(hits).toContain(`d user_${MAX_DETAILED_SERIES - 1} 1`);
    expect(await read(registry, 'sluice_envoy_stats_folded_total')).toEqual(['50']);
    // A series that exists keeps counting.
    stats.decided({ domain: 'd', rule: 'user_0', detailed: true, coarse: 'user' }, grant(9), 1, false);
    expect(await read(registry, 'sluice_envoy_hits_total')).toContain('d user_0 2');
  });

  it('values sent to a value_to_metric rule share the detailed cap with detailed_metric: past it, they fold into the rule’s own label, and are counted', async () => {
    const registry = new Registry();
    const stats = new EnvoyStats(registry, 0.8);
    const domain = domainOf(`
domain: d
descriptors:
  - key: user
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: { unit: minute, requests_per_unit: 10 }
`);
    const count = (...entries: Entry[]) => stats.decided(statLabel('d', matchRule(domain, entries)!, entries, false), grant(9), 1, false);
    const users = 400;
    for (let i = 0; i < users; i++) count({ key: 'user', value: `u${i}` });
    for (let i = 0; i < MAX_DETAILED_SERIES; i++) count({ key: 'route', value: `r${i}` }, { key: 'method', value: 'GET' });
    const hits = await read(registry, 'sluice_envoy_hits_total');
    expect(hits).toHaveLength(MAX_DETAILED_SERIES + 1);
    expect(hits).toContain(`d route_r${MAX_DETAILED_SERIES - users - 1}.method 1`);
    expect(hits).not.toContain(`d route_r${MAX_DETAILED_SERIES - users}.method 1`);
    expect(hits).toContain(`d route.method ${users}`);
    expect(await read(registry, 'sluice_envoy_stats_folded_total')).toEqual([`${users}`]);
  });

  it(`at most ${MAX_SERIES} series in all: past it, hits count under ${OTHER_RULE}`, async () => {
    const registry = new Registry();
    const stats = new EnvoyStats(registry, 0.8);
    for (let i = 0; i < MAX_SERIES + 10; i++) stats.decided({ domain: 'd', rule: `r${i}`, detailed: false, coarse: `r${i}` }, grant(9), 1, false);
    const hits = await read(registry, 'sluice_envoy_hits_total');
    expect(hits).toHaveLength(MAX_SERIES + 1);
    expect(hits).toContain(`d ${OTHER_RULE} 10`);
  });

  it('forgets the series of a domain the config no longer has, and frees their room', async () => {
    const registry = new Registry();
    const stats = new EnvoyStats(registry, 0.8);
    for (let i = 0; i < MAX_DETAILED_SERIES; i++) stats.decided({ domain: 'gone', rule: `user_${i}`, detailed: true, coarse: 'user' }, grant(9), 1, false);
    stats.decided({ domain: 'kept', rule: 'user', detailed: false, coarse: 'user' }, grant(9), 1, false);
    stats.retain(new Map([['kept', null]]));
    expect(await read(registry, 'sluice_envoy_hits_total')).toEqual(['kept user 1']);
    stats.decided({ domain: 'kept', rule: 'user_ann', detailed: true, coarse: 'user' }, grant(9), 1, false);
    expect(await read(registry, 'sluice_envoy_hits_total')).toContain('kept user_ann 1');
  });
});
