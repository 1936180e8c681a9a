// Cases derived from envoyproxy/ratelimit's test/config/config_test.go, on its own config files
// (upstream-files.ts): each `it` is named after the upstream test it comes from, and asserts the
// facts that test asserts of the config loader (which limit a descriptor gets, what it shares,
// its metadata, which files are refused and why). The statistics those tests also check (stats
// keys, detailed_metric, value_to_metric) are not derived here. A case named "differs from
// TestX" asserts what sluice answers instead, for a difference that docs/envoy.md lists.
import { describe, expect, it } from 'vitest';
import { parseDomainFile, type Domain } from '../../src/envoy/config.js';
import { planDescriptors, type EnvoyDescriptor } from '../../src/envoy/limiter.js';
import { matchRule, scopeOf, type Entry } from '../../src/envoy/match.js';
import { loadEnvoyConfig } from '../../src/envoy/config.js';
import { configDir, configOf, options } from './support.js';
import { UPSTREAM_CONFIG_FILES } from './upstream-files.js';

type FileName = keyof typeof UPSTREAM_CONFIG_FILES;

function load(name: FileName): Domain {
  const parsed = parseDomainFile(UPSTREAM_CONFIG_FILES[name], name, options());
  if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
  return parsed.value;
}

function problemsOf(name: FileName): string[] {
  const parsed = parseDomainFile(UPSTREAM_CONFIG_FILES[name], name, options());
  return parsed.ok ? [] : parsed.problems;
}

const e = (...pairs: string[]): Entry[] => {
  const out: Entry[] = [];
  for (let i = 0; i < pairs.length; i += 2) out.push({ key: pairs[i]!, value: pairs[i + 1]! });
  return out;
};

/** What upstream's GetLimit answers for a descriptor, in sluice's terms: null when no limit applies. */
function limitOf(domain: Domain, entries: Entry[]) {
  const match = matchRule(domain, entries);
  if (!match) return null;
  const { rule } = match;
  return {
    requestsPerUnit: rule.main?.requestsPerUnit ?? null,
    unit: rule.main?.unit ?? null,
    name: rule.name,
    unlimited: rule.unlimited,
    shadow: rule.shadow,
    metadata: rule.metadata,
    /** Upstream's ShareThresholdKeyPattern: per entry, the pattern its budget is kept under, '' for none. */
    shared: match.shared?.map((pattern) => pattern ?? '') ?? null,
    scope: scopeOf(domain.name, entries, match),
  };
}

describe('upstream test/config/config_test.go', () => {
  it('TestBasicConfig', () => {
    const config = configOf({ 'basic_config.yaml': UPSTREAM_CONFIG_FILES['basic_config.yaml'] });
    expect(config.domains.has('foo_domain')).toBe(false);
    const domain = config.domains.get('test-domain')!;
    expect(limitOf(domain, [])).toBeNull();
    for (const entries of [e('key1', 'something'), e('key1', 'value1'), e('key2', 'value2', 'subkey', 'subvalue'), e('key5', 'value5', 'subkey5', 'subvalue'), e('key2', 'value3')]) {
      expect(limitOf(domain, entries)).toBeNull();
    }
    expect(limitOf(domain, e('key1', 'value1', 'subkey1', 'something'))).toMatchObject({ requestsPerUnit: 5, unit: 'SECOND' });
    expect(limitOf(domain, e('key1', 'value1', 'subkey1', 'subvalue1'))).toMatchObject({ requestsPerUnit: 10, unit: 'SECOND' });
    expect(limitOf(domain, e('key2', 'something'))).toMatchObject({ requestsPerUnit: 20, unit: 'MINUTE' });
    expect(limitOf(domain, e('key2', 'value2'))).toMatchObject({ requestsPerUnit: 30, unit: 'MINUTE' });
    expect(limitOf(domain, e('key3', 'foo'))).toMatchObject({ requestsPerUnit: 1, unit: 'HOUR', name: '' });
    expect(limitOf(domain, e('key4', 'foo'))).toMatchObject({ requestsPerUnit: 1, unit: 'DAY', name: 'key4_rate_limit' });
    expect(limitOf(domain, e('key6', 'foo'))).toMatchObject({ unlimited: true });
    expect(limitOf(domain, e('key7', 'unspecified_value'))).toMatchObject({ requestsPerUnit: 70, unit: 'MINUTE' });
    expect(limitOf(domain, e('key7', 'another_value'))).toMatchObject({ requestsPerUnit: 70, unit: 'MINUTE' });
  });

  it('TestConfigLimitOverride', () => {
    const config = configOf({ 'basic_config.yaml': UPSTREAM_CONFIG_FILES['basic_config.yaml'] });
    const override = (domain: string, entries: Entry[], requestsPerUnit: number, unit: 'DAY' | 'HOUR') => {
      const descriptor: EnvoyDescriptor = { entries, override: { requestsPerUnit, unit }, hits: null };
      return planDescriptors(config, { domain, descriptors: [descriptor], hits: 1 })[0]!;
    };
    // No matching domain: no limit, override or not.
    expect(override('foo_domain', e('key1', 'value1'), 10, 'DAY').kind).toBe('none');
    const first = override('test-domain', e('key1', 'value1', 'subkey1', 'something'), 10, 'DAY');
    expect(first.kind === 'limit' && first.rule).toMatchObject({ name: '', shadow: false, main: { requestsPerUnit: 10, unit: 'DAY' } });
    const second = override('test-domain', e('key1', 'value1', 'subkey1', 'something'), 42, 'HOUR');
    expect(second.kind === 'limit' && second.rule.main).toEqual({ requestsPerUnit: 42, unit: 'HOUR' });
    // A different value is a different budget.
    const other = override('test-domain', e('key1', 'value1', 'subkey1', 'something_else'), 42, 'HOUR');
    expect(other.kind === 'limit' && second.kind === 'limit' && other.input.scope !== second.input.scope).toBe(true);
  });

  const refusals: [string, FileName, RegExp][] = [
    ['TestEmptyDomain', 'empty_domain.yaml', /^empty_domain\.yaml: domain \(line 1\): config file cannot have empty domain$/],
    ['TestEmptyKey', 'empty_key.yaml', /^empty_key\.yaml: descriptors\[0\]\.key \(line 3\): descriptor has empty key$/],
    ['TestDuplicateKey', 'duplicate_key.yaml', /^duplicate_key\.yaml: descriptors\[1\] \(line 6\): duplicate descriptor composite key 'test-domain\.key1_value1'$/],
    ['TestBadLimitUnit', 'bad_limit_unit.yaml', /^bad_limit_unit\.yaml: descriptors\[0\]\.rate_limit\.unit \(line 6\): invalid rate limit unit 'foo'$/],
    ['TestReplacesSelf', 'replaces_self.yaml', /^replaces_self\.yaml: descriptors\[0\]\.descriptors\[0\]\.rate_limit\.replaces\[0\] \(line 10\): replaces should not contain name of same descriptor$/],
    ['TestReplacesEmpty', 'replaces_empty.yaml', /^replaces_empty\.yaml: descriptors\[0\]\.descriptors\[0\]\.rate_limit\.replaces\[0\] \(line 10\): should not have an empty replaces entry$/],
    ['TestBadYaml', 'bad_yaml.yaml', /^bad_yaml\.yaml: line \d+, column \d+: /],
    ['TestNonStringKey', 'non_string_key.yaml', /^non_string_key\.yaml: \(top level\) \(line 1\): config error, key is not of type string: 0\.25$/],
    ['TestNonMapList', 'non_map_list.yaml', /^non_map_list\.yaml: descriptors\[0\] \(line 3\): config error, yaml file contains list of type other than map: a /],
    ['TestUnlimitedWithRateLimitUnit', 'unlimited_with_unit.yaml', /^unlimited_with_unit\.yaml: descriptors\[0\]\.rate_limit\.unit \(line 6\): should not specify rate limit unit when unlimited$/],
  ];
  it.each(refusals)('%s', (_name, file, problem) => {
    expect(problemsOf(file)).toEqual(expect.arrayContaining([expect.stringMatching(problem)]));
  });

  it('TestMisspelledKey', () => {
    expect(problemsOf('misspelled_key.yaml')).toEqual(['misspelled_key.yaml: descriptors[0] (line 5): unknown key "ratelimit"']);
    expect(problemsOf('misspelled_key2.yaml')).toEqual(['misspelled_key2.yaml: descriptors[0].rate_limit (line 7): unknown key "requestsperunit"']);
  });

  it('TestDuplicateDomain', () => {
    const dir = configDir({ 'basic_config.yaml': UPSTREAM_CONFIG_FILES['basic_config.yaml'], 'duplicate_domain.yaml': UPSTREAM_CONFIG_FILES['duplicate_domain.yaml'] });
    const loaded = loadEnvoyConfig(options({ configDir: dir }));
    expect(loaded.ok ? [] : loaded.problems).toEqual([
      expect.stringMatching(/duplicate_domain\.yaml: domain \(line 1\): duplicate domain 'test-domain' \(also in .*basic_config\.yaml\)/),
    ]);
  });

  it('TestShadowModeConfig', () => {
    const domain = load('shadowmode_config.yaml');
    expect(limitOf(domain, e('key1', 'value1', 'subkey1', 'something'))).toMatchObject({ shadow: false, requestsPerUnit: 5, unit: 'SECOND' });
    expect(limitOf(domain, e('key1', 'value1', 'subkey1', 'subvalue1'))).toMatchObject({ shadow: true, requestsPerUnit: 10, unit: 'SECOND' });
    expect(limitOf(domain, e('key2', 'something'))).toMatchObject({ shadow: true, requestsPerUnit: 20, unit: 'MINUTE' });
    expect(limitOf(domain, e('key2', 'value2'))).toMatchObject({ shadow: false, requestsPerUnit: 30, unit: 'MINUTE' });
  });

  it('TestWildcardConfig', () => {
    const domain = load('wildcard.yaml');
    const same = (a: Entry[], b: Entry[]) => {
      const [x, y] = [matchRule(domain, a), matchRule(domain, b)];
      expect(x).not.toBeNull();
      expect(x!.rule).toBe(y!.rule);
    };
    // A key-only descriptor, and wildcards (trailing, in the middle, several): one rule for many values.
    same(e('noVal', 'foo1'), e('noVal', 'foo2'));
    same(e('wild', 'foo1'), e('wild', 'foo2'));
    expect(limitOf(domain, e('wild', 'foo1'))).toMatchObject({ requestsPerUnit: 20, unit: 'MINUTE' });
    expect(limitOf(domain, e('nestedWild', 'val1', 'wild', 'goo2'))).toMatchObject({ requestsPerUnit: 20, unit: 'MINUTE' });
    expect(limitOf(domain, e('wild', 'bar'))).toBeNull();
    expect(limitOf(domain, e('noWild', 'foo1'))).toBeNull();
    same(e('midWild', 'barab'), e('midWild', 'bar123b'));
    expect(limitOf(domain, e('midWild', 'barb'))).not.toBeNull();
    expect(limitOf(domain, e('midWild', 'bara'))).toBeNull();
    expect(limitOf(domain, e('midWild', 'xbarb'))).toBeNull();
    same(e('multiWild', 'foo123bar456baz'), e('multiWild', 'foobarbaz'));
    expect(limitOf(domain, e('multiWild', 'foobarbaz'))).toMatchObject({ requestsPerUnit: 10, unit: 'MINUTE' });
    expect(limitOf(domain, e('multiWild', 'foo123baz'))).toBeNull();
    expect(limitOf(domain, e('multiWild', 'bar456baz'))).toBeNull();
    // Without share_threshold, each value keeps its own budget (upstream's cache key holds the value).
    expect(limitOf(domain, e('wild', 'foo1'))!.scope).not.toBe(limitOf(domain, e('wild', 'foo2'))!.scope);
    expect(limitOf(domain, e('wild', 'foo1'))!.shared).toBeNull();
  });

  describe('TestShareThreshold', () => {
    const domain = load('share_threshold.yaml');
    const sharedOf = (...pairs: string[]) => limitOf(domain, e(...pairs));

    it('TestShareThreshold/Basic share_threshold', () => {
      const scopes = ['files/a.pdf', 'files/b.csv', 'files/c.txt'].map((value) => {
        const limit = sharedOf('files', value)!;
        expect(limit).toMatchObject({ shared: ['files/*'], requestsPerUnit: 100 });
        return limit.scope;
      });
      expect(new Set(scopes).size).toBe(1);
    });

    it('TestShareThreshold/share_threshold with metrics', () => {
      expect(sharedOf('route', 'api/v1', 'method', 'GET')).toMatchObject({ shared: ['api/*', ''], requestsPerUnit: 60 });
      expect(sharedOf('service', 'svc/user', 'endpoint', 'get')).toMatchObject({ shared: ['svc/*', ''], requestsPerUnit: 80 });
    });

    it('TestShareThreshold/Nested wildcards', () => {
      expect(sharedOf('nested', 'parent', 'files', 'nested/file1.txt')).toMatchObject({ shared: ['', 'nested/*'], requestsPerUnit: 200 });
      expect(sharedOf('files', 'top/file1.txt', 'files', 'nested/file1.txt')).toMatchObject({ shared: ['top/*', 'nested/*'], requestsPerUnit: 300 });
      expect(sharedOf('path', 'path/foo', 'file', 'file/doc1', 'type', 'pdf')).toMatchObject({ shared: ['path/*', '', ''], requestsPerUnit: 120 });
      expect(sharedOf('user', 'user/alice', 'resource', 'res/file1', 'action', 'read')).toMatchObject({ shared: ['user/*', 'res/*', ''], requestsPerUnit: 150 });
      // Values under a wildcard without share_threshold keep their own budgets; under one with it, they share.
      expect(sharedOf('path', 'path/foo', 'file', 'file/doc1', 'type', 'pdf')!.scope).not.toBe(sharedOf('path', 'path/bar', 'file', 'file/doc2', 'type', 'pdf')!.scope);
      expect(sharedOf('path', 'path/foo', 'file', 'file/doc1', 'type', 'pdf')!.scope).toBe(sharedOf('path', 'path/bar', 'file', 'file/doc1', 'type', 'pdf')!.scope);
    });

    it('TestShareThreshold/Explicit value precedence over wildcard', () => {
      expect(sharedOf('file', 'test1')).toMatchObject({ shared: null, requestsPerUnit: 50 });
      const scopes = ['test2', 'test23', 'test123'].map((value) => {
        const limit = sharedOf('file', value)!;
        expect(limit).toMatchObject({ shared: ['test*'], requestsPerUnit: 100 });
        return limit.scope;
      });
      expect(new Set(scopes).size).toBe(1);
      expect(scopes[0]).not.toBe(sharedOf('file', 'test1')!.scope);
    });

    it('TestShareThreshold/share_threshold with middle wildcard', () => {
      const scopes = ['/api/v1', '/api-beta-v1', '/apiXYZv1'].map((value) => {
        const limit = sharedOf('midpath', value)!;
        expect(limit).toMatchObject({ shared: ['/api*v1'], requestsPerUnit: 100 });
        return limit.scope;
      });
      expect(new Set(scopes).size).toBe(1);
      expect(sharedOf('midpath', '/api/v2')).toBeNull();
    });

    it('TestShareThreshold/share_threshold with multi-wildcard', () => {
      const scopes = ['svcAepBrpc', 'svcXXXepYYYrpc', 'svceprpc'].map((value) => {
        const limit = sharedOf('multiroute', value)!;
        expect(limit).toMatchObject({ shared: ['svc*ep*rpc'], requestsPerUnit: 50 });
        return limit.scope;
      });
      expect(new Set(scopes).size).toBe(1);
      expect(sharedOf('multiroute', 'svcABCrpc')).toBeNull();
    });

    it('TestShareThreshold/share_threshold priority over value_to_metric with middle wildcard', () => {
      const one = sharedOf('midroute', '/api/v2')!;
      expect(one).toMatchObject({ shared: ['/api*v2'], requestsPerUnit: 80 });
      expect(sharedOf('midroute', '/api-beta-v2')!.scope).toBe(one.scope);
    });

    it('TestShareThreshold/share_threshold with nested middle wildcards', () => {
      const one = sharedOf('tenant', 't1prod', 'resource', 'resAv2')!;
      expect(one).toMatchObject({ shared: ['t*prod', 'res*v2'], requestsPerUnit: 60 });
      expect(sharedOf('tenant', 't99prod', 'resource', 'resBBBv2')!.scope).toBe(one.scope);
    });
  });

  it('TestMetadata', () => {
    const domain = load('metadata.yaml');
    expect(limitOf(domain, [])).toBeNull();
    expect(limitOf(domain, e('key1', 'value1', 'subkey1', 'something'))).toMatchObject({ requestsPerUnit: 5, unit: 'SECOND', metadata: { name: 'service_1' } });
    expect(limitOf(domain, e('key2', 'something'))).toMatchObject({ requestsPerUnit: 20, unit: 'MINUTE', metadata: { service_with_quota: { name: 'service_2' } } });
  });

  // MERGE_DOMAIN_CONFIG is envoy.merge_domains.
  it('TestDomainMerge', () => {
    const dir = configDir({ 'merge_domain_key1.yaml': UPSTREAM_CONFIG_FILES['merge_domain_key1.yaml'], 'merge_domain_key2.yaml': UPSTREAM_CONFIG_FILES['merge_domain_key2.yaml'] });
    const loaded = loadEnvoyConfig(options({ configDir: dir, mergeDomains: true }));
    if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
    expect(loaded.value.domains.get('foo_domain')).toBeUndefined();
    const domain = loaded.value.domains.get('test-domain')!;
    expect(limitOf(domain, [])).toBeNull();
    expect(limitOf(domain, e('key1', 'value1'))?.requestsPerUnit).toBe(10);
    expect(limitOf(domain, e('key2', 'value2'))?.requestsPerUnit).toBe(20);
  });

  it('TestDuplicateKeyDomainMerge', () => {
    const text = UPSTREAM_CONFIG_FILES['merge_domain_key1.yaml'];
    const loaded = loadEnvoyConfig(options({ configDir: configDir({ 'merge_domain_key1.yaml': text, 'merge_domain_key1_again.yaml': text }), mergeDomains: true }));
    expect(loaded.ok ? [] : loaded.problems).toEqual([
      expect.stringMatching(/merge_domain_key1_again\.yaml: descriptors\[0\] \(line 5\): duplicate descriptor composite key 'test-domain\.key1_value1'$/),
    ]);
  });

  it('without merge_domains, a domain in two files is refused, naming both', () => {
    const dir = configDir({ 'merge_domain_key1.yaml': UPSTREAM_CONFIG_FILES['merge_domain_key1.yaml'], 'merge_domain_key2.yaml': UPSTREAM_CONFIG_FILES['merge_domain_key2.yaml'] });
    const loaded = loadEnvoyConfig(options({ configDir: dir }));
    expect(loaded.ok ? [] : loaded.problems).toEqual([expect.stringMatching(/merge_domain_key2\.yaml: domain \(line 2\): duplicate domain 'test-domain' \(also in .*merge_domain_key1\.yaml\)/)]);
  });
});
