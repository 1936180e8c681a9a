// Cases derived from envoyproxy/ratelimit's test/config/config_test.go that check the key its
// statistics are counted under (rl.Stats.Key): each `it` is named after the upstream test it
// comes from. Upstream's key is DOMAIN.KEY_VALUE; sluice counts under the labels domain and rule
// (src/envoy/stats.ts), and rule is the key after `DOMAIN.`. Where upstream's test also
// increments the counters under its key and reads them back, the hit is counted by EnvoyStats and
// read back from Prometheus.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { Decision } from '../../src/decide/decision.js';
import { matchRule, type Entry } from '../../src/envoy/match.js';
import { EnvoyStats, statLabel, type StatLabel } from '../../src/envoy/stats.js';
import { domainOf } from './support.js';

function labelOf(yaml: string, entries: [string, string][]): StatLabel {
  const domain = domainOf(yaml);
  const es: Entry[] = entries.map(([key, value]) => ({ key, value }));
  const match = matchRule(domain, es);
  if (!match) throw new Error('no rule matches');
  return statLabel(domain.name, match, es, false);
}

/** Upstream's stats key for a descriptor of `entries`: `domain.` and the rule label. */
function statsKey(yaml: string, entries: [string, string][]): string {
  const label = labelOf(yaml, entries);
  return `${label.domain}.${label.rule}`;
}

/**
 * Counts one hit of `entries`, within its limit, as upstream's test increments total_hits and
 * within_limit; answers the series of both as `domain.rule value`.
 */
async function countOne(yaml: string, entries: [string, string][]): Promise<{ totalHits: string[]; withinLimit: string[] }> {
  const registry = new Registry();
  const stats = new EnvoyStats(registry, 0.8);
  const grant: Decision = { granted: true, permitId: '', retryAfterMs: 0, remaining: 59, limit: 60, resetAfterMs: 0, limitName: 'fw_minute', decidedBy: 'STORE', reason: '', decidedAt: 0, waitedMs: 0 };
  stats.decided(labelOf(yaml, entries), grant, 1, false);
  const read = async (name: string) => (await registry.getSingleMetric(name)!.get()).values.map((v) => `${v.labels.domain}.${v.labels.rule} ${v.value}`);
  return { totalHits: await read('sluice_envoy_hits_total'), withinLimit: await read('sluice_envoy_within_limit_total') };
}

const NESTED = (outer: boolean, inner: boolean) => `
domain: nested
descriptors:
  - key: key-1
    detailed_metric: ${outer}
    rate_limit: { unit: minute, requests_per_unit: 100 }
    descriptors:
      - key: key-2
        detailed_metric: ${inner}
        rate_limit: { unit: minute, requests_per_unit: 5 }
`;

const REALISTIC = `
domain: nested
descriptors:
  - key: key_1
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 500 }
  - key: key_1
    value: some-value-for-key-1
    rate_limit: { unit: minute, requests_per_unit: 500 }
  - key: key_2
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 5000 }
    descriptors:
      - key: key_3
        detailed_metric: true
      - key: key_3
        value: requested-key3-value
        detailed_metric: true
        rate_limit: { unit: minute, requests_per_unit: 5 }
  - key: key_2
    value: specific-id
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 50000 }
    descriptors:
      - key: key_3
        detailed_metric: true
      - key: key_3
        value: requested-key3-value
        detailed_metric: true
        rate_limit: { unit: minute, requests_per_unit: 100 }
`;

describe('upstream test/config/config_test.go, statistics keys', () => {
  it('TestDetailedMetric/nested with no values but request only top-level key', () => {
    expect(statsKey(NESTED(true, false), [['key-1', 'value-1']])).toBe('nested.key-1_value-1');
  });

  it('TestDetailedMetric/nested with no values but request only top-level key with no detailed metric', () => {
    expect(statsKey(NESTED(false, false), [['key-1', 'value-1']])).toBe('nested.key-1');
  });

  it('TestDetailedMetric/nested with no values and request fully nested descriptors', () => {
    expect(statsKey(NESTED(true, true), [['key-1', 'value-1'], ['key-2', 'value-2']])).toBe('nested.key-1_value-1.key-2_value-2');
  });

  it('TestDetailedMetric/nested with no values and request fully nested descriptors with no detailed metric', () => {
    expect(statsKey(NESTED(false, false), [['key-1', 'value-1'], ['key-2', 'value-2']])).toBe('nested.key-1.key-2');
  });

  it('TestDetailedMetric/test nested descriptors with simple request', () => {
    expect(statsKey(REALISTIC, [['key_1', 'value-for-key-1']])).toBe('nested.key_1_value-for-key-1');
  });

  it('TestDetailedMetric/test nested only second descriptor request not nested', () => {
    expect(statsKey(REALISTIC, [['key_2', 'key-2-value']])).toBe('nested.key_2_key-2-value');
  });

  it('TestDetailedMetric/test nested descriptors with nested request', () => {
    expect(statsKey(REALISTIC, [['key_2', 'key-2-value'], ['key_3', 'requested-key3-value']])).toBe('nested.key_2_key-2-value.key_3_requested-key3-value');
  });

  const wild = (value: string, extra = '') => `
domain: test-domain
descriptors:
  - key: wild
    value: "${value}"
${extra}    rate_limit: { unit: minute, requests_per_unit: 20 }
`;

  it('TestWildcardStatsBehavior/No flags - preserves original behavior with wildcard pattern', () => {
    expect(statsKey(wild('foo*'), [['wild', 'foo1']])).toBe('test-domain.wild_foo*');
  });

  it('TestWildcardStatsBehavior/value_to_metric - uses runtime value', () => {
    expect(statsKey(wild('foo*', '    value_to_metric: true\n'), [['wild', 'foo1']])).toBe('test-domain.wild_foo1');
  });

  it('TestWildcardStatsBehavior/share_threshold - uses wildcard pattern with *', () => {
    expect(statsKey(wild('foo*', '    share_threshold: true\n'), [['wild', 'foo1']])).toBe('test-domain.wild_foo*');
  });

  it('TestWildcardStatsBehavior/share_threshold with value_to_metric - share_threshold takes priority', () => {
    expect(statsKey(wild('foo*', '    share_threshold: true\n    value_to_metric: true\n'), [['wild', 'foo1']])).toBe('test-domain.wild_foo*');
  });

  it('TestWildcardStatsBehavior/value_to_metric in other descriptor - wildcard pattern preserved', () => {
    const yaml = `
domain: test-domain
descriptors:
  - key: wild
    value: foo*
    descriptors:
      - key: other
        value_to_metric: true
        descriptors:
          - key: limit
            rate_limit: { unit: minute, requests_per_unit: 20 }
`;
    expect(statsKey(yaml, [['wild', 'foo1'], ['other', 'bar'], ['limit', 'X']])).toBe('test-domain.wild_foo*.other_bar.limit');
  });

  it('TestWildcardStatsBehavior/middle+trailing wildcard - no flags - preserves wildcard pattern in stats key', () => {
    const yaml = wild('foo*bar*');
    expect(statsKey(yaml, [['wild', 'foo123bar456']])).toBe('test-domain.wild_foo*bar*');
    expect(statsKey(yaml, [['wild', 'fooXbarY']])).toBe('test-domain.wild_foo*bar*');
  });

  it('TestWildcardStatsBehavior/middle+trailing wildcard - value_to_metric - uses runtime value', () => {
    expect(statsKey(wild('foo*bar*', '    value_to_metric: true\n'), [['wild', 'foo123bar456']])).toBe('test-domain.wild_foo123bar456');
  });

  /** route > http_method > subject_id, as several TestValueToMetric_* configure it. */
  const ROUTE = (domain: string, { valueToMetric = true, detailed = false } = {}) => `
domain: ${domain}
descriptors:
  - key: route
    value_to_metric: ${valueToMetric}
    descriptors:
      - key: http_method
        value_to_metric: ${valueToMetric}
        descriptors:
          - key: subject_id
            detailed_metric: ${detailed}
            rate_limit: { unit: minute, requests_per_unit: 60 }
`;

  it('TestValueToMetric_UsesRuntimeValuesInStats', async () => {
    const entries: [string, string][] = [['route', 'draw'], ['http_method', 'GET'], ['subject_id', '123']];
    expect(statsKey(ROUTE('domain'), entries)).toBe('domain.route_draw.http_method_GET.subject_id');
    expect(await countOne(ROUTE('domain'), entries)).toEqual({
      totalHits: ['domain.route_draw.http_method_GET.subject_id 1'],
      withinLimit: ['domain.route_draw.http_method_GET.subject_id 1'],
    });
  });

  it('TestValueToMetric_DefaultKeyIncludesValueAtThatLevel', () => {
    const yaml = `
domain: d
descriptors:
  - key: k1
    value_to_metric: true
    descriptors:
      - key: k2
        rate_limit: { unit: second, requests_per_unit: 1 }
`;
    expect(statsKey(yaml, [['k1', 'A'], ['k2', 'foo']])).toBe('d.k1_A.k2');
  });

  it('TestValueToMetric_MidLevelOnly', () => {
    const yaml = `
domain: d
descriptors:
  - key: k1
    descriptors:
      - key: k2
        value_to_metric: true
        descriptors:
          - key: k3
            rate_limit: { unit: second, requests_per_unit: 1 }
`;
    expect(statsKey(yaml, [['k1', 'X'], ['k2', 'Y'], ['k3', 'Z']])).toBe('d.k1.k2_Y.k3');
  });

  it('TestValueToMetric_NoFlag_Unchanged', () => {
    const yaml = `
domain: d
descriptors:
  - key: k1
    descriptors:
      - key: k2
        rate_limit: { unit: second, requests_per_unit: 1 }
`;
    expect(statsKey(yaml, [['k1', 'X'], ['k2', 'Y']])).toBe('d.k1.k2');
  });

  it('TestValueToMetric_DoesNotOverrideDetailedMetric', () => {
    expect(statsKey(ROUTE('domain', { detailed: true }), [['route', 'draw'], ['http_method', 'GET'], ['subject_id', '123']])).toBe('domain.route_draw.http_method_GET.subject_id_123');
  });

  it('TestValueToMetric_WithConfiguredValues', async () => {
    const yaml = `
domain: test-domain
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value: GET
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: { unit: minute, requests_per_unit: 60 }
      - key: http_method
        value: POST
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: { unit: minute, requests_per_unit: 30 }
`;
    const get: [string, string][] = [['route', 'api'], ['http_method', 'GET'], ['subject_id', 'user123']];
    const post: [string, string][] = [['route', 'api'], ['http_method', 'POST'], ['subject_id', 'user456']];
    const domain = domainOf(yaml);
    expect(matchRule(domain, get.map(([key, value]) => ({ key, value })))!.rule.main!.requestsPerUnit).toBe(60);
    expect(matchRule(domain, post.map(([key, value]) => ({ key, value })))!.rule.main!.requestsPerUnit).toBe(30);
    expect(statsKey(yaml, get)).toBe('test-domain.route_api.http_method_GET.subject_id');
    expect(statsKey(yaml, post)).toBe('test-domain.route_api.http_method_POST.subject_id');
    expect((await countOne(yaml, post)).totalHits).toEqual(['test-domain.route_api.http_method_POST.subject_id 1']);
  });

  it('TestValueToMetric_WithWildcard', async () => {
    const yaml = `
domain: domain
descriptors:
  - key: user
    value_to_metric: true
    descriptors:
      - key: action
        value: read*
        value_to_metric: true
        descriptors:
          - key: resource
            rate_limit: { unit: minute, requests_per_unit: 100 }
`;
    const alice: [string, string][] = [['user', 'alice'], ['action', 'readfile'], ['resource', 'documents']];
    const bob: [string, string][] = [['user', 'bob'], ['action', 'readdata'], ['resource', 'database']];
    expect(matchRule(domainOf(yaml), alice.map(([key, value]) => ({ key, value })))!.rule.main!.requestsPerUnit).toBe(100);
    expect(statsKey(yaml, alice)).toBe('domain.user_alice.action_readfile.resource');
    expect(statsKey(yaml, bob)).toBe('domain.user_bob.action_readdata.resource');
    expect((await countOne(yaml, bob)).totalHits).toEqual(['domain.user_bob.action_readdata.resource 1']);
  });

  it('TestValueToMetric_WithEmptyValue', async () => {
    const yaml = ROUTE('domain');
    expect(statsKey(yaml, [['route', ''], ['http_method', 'GET'], ['subject_id', '123']])).toBe('domain.route.http_method_GET.subject_id');
    expect(statsKey(yaml, [['route', 'draw'], ['http_method', ''], ['subject_id', '123']])).toBe('domain.route_draw.http_method.subject_id');
    const both: [string, string][] = [['route', ''], ['http_method', ''], ['subject_id', '123']];
    expect(statsKey(yaml, both)).toBe('domain.route.http_method.subject_id');
    expect(await countOne(yaml, both)).toEqual({ totalHits: ['domain.route.http_method.subject_id 1'], withinLimit: ['domain.route.http_method.subject_id 1'] });
  });

  // sluice keeps one key per descriptor (its rule label), so upstream's FullKey and Stats.Key
  // cannot differ: what is checked is that key, for each of the test's three configs.
  it('TestValueToMetric_FullKeyMatchesStatsKey', () => {
    const entries: [string, string][] = [['route', 'api'], ['http_method', 'GET'], ['subject_id', 'user123']];
    expect(statsKey(ROUTE('test-domain'), entries)).toBe('test-domain.route_api.http_method_GET.subject_id');
    expect(statsKey(ROUTE('test-domain-2', { valueToMetric: false }), entries)).toBe('test-domain-2.route.http_method.subject_id');
    expect(statsKey(ROUTE('test-domain-3', { valueToMetric: false, detailed: true }), entries)).toBe('test-domain-3.route_api.http_method_GET.subject_id_user123');
  });
});
