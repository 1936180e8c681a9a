// Cases derived from envoyproxy/ratelimit's test/config/config_test.go that check the key its
// statistics are counted under (rl.Stats.Key): each `it` is named after the upstream test it
// comes from. Upstream's key is DOMAIN.KEY_VALUE; sluice counts under the labels domain and rule
// (src/envoy/stats.ts), and rule is the key after `DOMAIN.`. value_to_metric changes nothing in
// sluice (values reach a label only through detailed_metric), so the subtests that set it are
// not derived, except where upstream's key does not depend on it.
import { describe, expect, it } from 'vitest';
import { matchRule, type Entry } from '../../src/envoy/match.js';
import { statLabel } from '../../src/envoy/stats.js';
import { domainOf } from './support.js';

/** Upstream's stats key for a descriptor of `entries`: `domain.` and the rule label. */
function statsKey(yaml: string, entries: [string, string][]): string {
  const domain = domainOf(yaml);
  const es: Entry[] = entries.map(([key, value]) => ({ key, value }));
  const match = matchRule(domain, es);
  if (!match) throw new Error('no rule matches');
  const label = statLabel(domain.name, match.rule, es, match.shared, false);
  return `${label.domain}.${label.rule}`;
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

  it('TestWildcardStatsBehavior/share_threshold - uses wildcard pattern with *', () => {
    expect(statsKey(wild('foo*', '    share_threshold: true\n'), [['wild', 'foo1']])).toBe('test-domain.wild_foo*');
  });

  it('TestWildcardStatsBehavior/share_threshold with value_to_metric - share_threshold takes priority', () => {
    expect(statsKey(wild('foo*', '    share_threshold: true\n    value_to_metric: true\n'), [['wild', 'foo1']])).toBe('test-domain.wild_foo*');
  });

  it('TestWildcardStatsBehavior/middle+trailing wildcard - no flags - preserves wildcard pattern in stats key', () => {
    const yaml = wild('foo*bar*');
    expect(statsKey(yaml, [['wild', 'foo123bar456']])).toBe('test-domain.wild_foo*bar*');
    expect(statsKey(yaml, [['wild', 'fooXbarY']])).toBe('test-domain.wild_foo*bar*');
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
    const yaml = `
domain: domain
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value_to_metric: true
        descriptors:
          - key: subject_id
            detailed_metric: true
            rate_limit: { unit: minute, requests_per_unit: 60 }
`;
    expect(statsKey(yaml, [['route', 'draw'], ['http_method', 'GET'], ['subject_id', '123']])).toBe('domain.route_draw.http_method_GET.subject_id_123');
  });

  it('differs from TestValueToMetric_UsesRuntimeValuesInStats: value_to_metric puts no value in a label', () => {
    const yaml = `
domain: domain
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: { unit: minute, requests_per_unit: 60 }
`;
    // Upstream: domain.route_draw.http_method_GET.subject_id
    expect(statsKey(yaml, [['route', 'draw'], ['http_method', 'GET'], ['subject_id', '123']])).toBe('domain.route.http_method.subject_id');
  });
});
