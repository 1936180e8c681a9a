// Loading envoyproxy/ratelimit config files: upstream's own examples load unchanged; every
// problem is reported with its file, its place and its line; sluice's extension keys compile to
// sluice algorithms and are checked as strictly as upstream's keys.
import { symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadEnvoyConfig } from '../../src/envoy/config.js';
import { matchRule } from '../../src/envoy/match.js';
import { configDir, configOf, domainOf, options, problemsOf } from './support.js';

/** Config files as upstream's README writes them. */
export const UPSTREAM_EXAMPLES: Record<string, string> = {
  'mongo.yaml': `
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500

  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
`,
  'edge.yaml': `
domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit:
      unit: second
      requests_per_unit: 10

  # Black list IP
  - key: remote_address
    value: 50.0.0.5
    rate_limit:
      unit: second
      requests_per_unit: 0
`,
  'messaging.yml': `
domain: messaging
descriptors:
  # Only allow 5 marketing messages a day
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5

  # Only allow 100 messages a day to any unique phone number
  - key: to_number
    rate_limit:
      unit: day
      requests_per_unit: 100
`,
  'example4.yaml': `
domain: example4
descriptors:
  - key: key
    rate_limit:
      unit: minute
      requests_per_unit: 300
      name: general
  - key: key
    value: value
    rate_limit:
      unit: minute
      requests_per_unit: 100
      name: specific
      replaces:
        - name: general
  - key: key2
    rate_limit:
      unlimited: true
    shadow_mode: false
    detailed_metric: true
  - key: path
    value: "/foo*"
    shadow_mode: true
    rate_limit:
      unit: hour
      requests_per_unit: 10
    descriptors:
      - key: user
        value_to_metric: true
        rate_limit: { unit: week, requests_per_unit: 7 }
`,
};

describe('upstream config files', () => {
  it('load unchanged, one domain per file, *.yaml and *.yml', () => {
    const config = configOf(UPSTREAM_EXAMPLES);
    expect([...config.domains.keys()].sort()).toEqual(['edge_proxy_per_ip', 'example4', 'messaging', 'mongo_cps']);
    expect(config.files).toHaveLength(4);
    const edge = config.domains.get('edge_proxy_per_ip')!;
    expect(matchRule(edge, [{ key: 'remote_address', value: '50.0.0.5' }])!.rule.resource).toBeNull();
    expect(matchRule(edge, [{ key: 'remote_address', value: '10.0.0.1' }])!.rule.main).toEqual({ requestsPerUnit: 10, unit: 'SECOND' });
    const messaging = config.domains.get('messaging')!;
    expect(matchRule(messaging, [{ key: 'message_type', value: 'marketing' }, { key: 'to_number', value: '123' }])!.rule.main!.requestsPerUnit).toBe(5);
    const ex4 = config.domains.get('example4')!;
    expect(matchRule(ex4, [{ key: 'key', value: 'value' }])!.rule.replaces).toEqual(['general']);
    expect(matchRule(ex4, [{ key: 'path', value: '/foo/bar' }, { key: 'user', value: 'u' }])!.rule.resource!.limits[0]).toMatchObject({ periodMs: 7 * 86_400_000 });
  });

  it('ignores hidden files and other extensions, follows symlinks (a ConfigMap volume)', () => {
    const dir = configDir({ 'a.yaml': UPSTREAM_EXAMPLES['mongo.yaml']!, '.hidden.yaml': 'garbage: [', 'README.md': '# not config' });
    mkdirSync(join(dir, '..data'));
    writeFileSync(join(dir, '..data', 'edge.yaml'), UPSTREAM_EXAMPLES['edge.yaml']!);
    symlinkSync(join('..data', 'edge.yaml'), join(dir, 'edge.yaml'));
    mkdirSync(join(dir, 'sub.yaml'));
    const loaded = loadEnvoyConfig(options({ configDir: dir }));
    expect(loaded.ok && [...loaded.value.domains.keys()].sort()).toEqual(['edge_proxy_per_ip', 'mongo_cps']);
  });

  it('a fingerprint that changes with the files', () => {
    const a = configOf({ 'a.yaml': UPSTREAM_EXAMPLES['mongo.yaml']! });
    const b = configOf({ 'a.yaml': UPSTREAM_EXAMPLES['mongo.yaml']! });
    const c = configOf({ 'a.yaml': UPSTREAM_EXAMPLES['mongo.yaml']!.replace('500', '501') });
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(c.fingerprint).not.toBe(a.fingerprint);
  });
});

describe('problems in a file', () => {
  const cases: [string, string, RegExp][] = [
    ['an unknown key', 'domain: d\ndescriptors:\n  - key: k\n    rate_limits: { unit: second }\n', /^test\.yaml: descriptors\[0\] \(line 4\): unknown key "rate_limits"$/],
    ['a known key in the wrong place', 'domain: d\ndescriptors:\n  - key: k\n    unit: second\n', /descriptors\[0\] \(line 4\): unknown key "unit" \(unit belongs under rate_limit\)/],
    [
      'a typo in an extension key',
      'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, sluice_algorithim: token_bucket }\n',
      /descriptors\[0\]\.rate_limit \(line 4\): unknown key "sluice_algorithim"/,
    ],
    ['an unknown algorithm', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, sluice_algorithm: leaky }\n', /sluice_algorithm \(line 4\): expected one of fixed_window, token_bucket, sliding_window, not 'leaky'/],
    ['sluice_burst without a token bucket', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, sluice_burst: 5 }\n', /sluice_burst applies to sluice_algorithm: token_bucket only/],
    ['an empty domain', 'descriptors: []\n', /^test\.yaml: domain \(line 1\): config file cannot have empty domain$/],
    ['an empty key', 'domain: d\ndescriptors:\n  - value: v\n', /descriptors\[0\]\.key \(line 3\): descriptor has empty key/],
    ['a bad unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: minutes\n      requests_per_unit: 5\n', /descriptors\[0\]\.rate_limit\.unit \(line 5\): invalid rate limit unit 'minutes'/],
    ['a missing unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { requests_per_unit: 5 }\n', /invalid rate limit unit ''/],
    ['a unit with unlimited', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unlimited: true, unit: second }\n', /should not specify rate limit unit when unlimited/],
    ['a duplicate descriptor', 'domain: d\ndescriptors:\n  - key: k\n    value: v\n  - key: k\n    value: v\n', /descriptors\[1\] \(line 5\): duplicate descriptor composite key 'd\.k_v'/],
    ['a duplicate nested descriptor', 'domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n      - key: b\n', /descriptors\[0\]\.descriptors\[1\] .*duplicate descriptor composite key 'd\.a\.b'/],
    ['an empty replaces entry', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, name: n, replaces: [{ name: "" }] }\n', /should not have an empty replaces entry/],
    ['replacing itself', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, name: n, replaces: [{ name: n }] }\n', /replaces should not contain name of same descriptor/],
    ['share_threshold without a wildcard', 'domain: d\ndescriptors:\n  - key: k\n    value: v\n    share_threshold: true\n', /share_threshold can only be used with wildcard values \(containing '\*'\), but found key 'k_v'/],
    ['a negative requests_per_unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: -1 }\n', /requests_per_unit \(line 4\): expected a whole number from 0 to 4294967295/],
    ['a fractional requests_per_unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1.0 }\n', /expected a whole number/],
    ['a quoted requests_per_unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: "5" }\n', /expected a whole number/],
    ['a non-boolean shadow_mode', 'domain: d\ndescriptors:\n  - key: k\n    shadow_mode: "true"\n', /shadow_mode \(line 4\): expected true or false/],
    ['a descriptor that is not a map', 'domain: d\ndescriptors:\n  - just a string\n', /list of type other than map/],
    ['a non-string key', 'domain: d\n5: x\n', /key is not of type string: 5/],
    ['a float value', 'domain: d\ndescriptors:\n  - key: k\n    value: 0.25\n', /^test\.yaml: descriptors\[0\]\.value \(line 4\): expected a string, not the number 0\.25 \(envoyproxy\/ratelimit refuses it too\); quote it to mean the text: "0\.25"$/],
    ['a float key', 'domain: d\ndescriptors:\n  - key: 1.50\n', /descriptors\[0\]\.key \(line 3\): expected a string, not the number 1\.50/],
    ['a float domain', 'domain: 1e3\n', /^test\.yaml: domain \(line 1\): expected a string, not the number 1e3/],
    ['a float unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: .inf, requests_per_unit: 1 }\n', /rate_limit\.unit \(line 4\): expected a string, not the number \.inf/],
    ['a float replaces name', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, name: n, replaces: [{ name: 2.5 }] }\n', /replaces\[0\]\.name \(line 4\): expected a string, not the number 2\.5/],
    ['08, not octal, so a float to yaml.v2', 'domain: d\ndescriptors:\n  - key: k\n    value: 08\n', /value \(line 4\): expected a string, not the number 08/],
    ['a whole number past int64', 'domain: d\ndescriptors:\n  - key: k\n    value: 9223372036854775808\n', /value \(line 4\): expected a string, not the number 9223372036854775808/],
    ['broken YAML', 'domain: d\ndescriptors: [\n', /^test\.yaml: line \d+, column \d+: /],
    ['duplicate map keys', 'domain: d\ndomain: e\n', /Map keys must be unique/],
    ['two documents', 'domain: d\n---\ndomain: e\n', /multiple documents/],
    ['two limits of one algorithm and unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n      requests_per_unit: 1\n      sluice_limits: [{ unit: second, requests_per_unit: 2 }]\n', /two fixed_window limits per second on one descriptor/],
    ['a sluice_limits entry without requests_per_unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n      requests_per_unit: 1\n      sluice_limits: [{ unit: hour }]\n', /requests_per_unit is required/],
    ['sluice keys on an unlimited limit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unlimited: true, sluice_algorithm: token_bucket }\n', /sluice_algorithm does not apply to an unlimited rate_limit/],
    ['a token bucket of 0 per unit', 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 0, sluice_algorithm: token_bucket }\n', /token_bucket needs requests_per_unit of at least 1/],
  ];
  it.each(cases)('%s', (_what, yaml, expected) => {
    expect(problemsOf(yaml)).toEqual(expect.arrayContaining([expect.stringMatching(expected)]));
  });

  it('reports every problem of every file at once, naming each file', () => {
    const dir = configDir({
      'a.yaml': 'domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n  - key: ""\n',
      'b.yaml': 'domain: a\n',
      'c.yaml': 'domain: c\nextra: 1\n',
    });
    const loaded = loadEnvoyConfig(options({ configDir: dir }));
    expect(loaded.ok).toBe(false);
    const problems = loaded.ok ? [] : loaded.problems;
    expect(problems).toEqual([
      `${join(dir, 'a.yaml')}: descriptors[0].rate_limit.unit (line 4): invalid rate limit unit 'fortnight'`,
      `${join(dir, 'a.yaml')}: descriptors[1].key (line 5): descriptor has empty key`,
      `${join(dir, 'c.yaml')}: (top level) (line 2): unknown key "extra"`,
    ]);
    // b.yaml names a domain a.yaml also names; a.yaml did not load, so it is c.yaml's turn to fail.
    const again = loadEnvoyConfig(options({ configDir: configDir({ 'a.yaml': 'domain: a\n', 'b.yaml': 'domain: a\n' }) }));
    expect(again.ok ? [] : again.problems).toEqual([expect.stringMatching(/b\.yaml: domain \(line 1\): duplicate domain 'a' \(also in .*a\.yaml\)/)]);
  });

  it('says so when the directory cannot be read', () => {
    const loaded = loadEnvoyConfig(options({ configDir: '/nonexistent/sluice-envoy' }));
    expect(loaded.ok ? [] : loaded.problems).toEqual(['cannot read the directory /nonexistent/sluice-envoy: no such file or directory']);
  });
});

describe('YAML as upstream reads it (yaml.v2, YAML 1.1)', () => {
  it('takes scalars as written for string fields, yes/no as booleans, null as empty', () => {
    const domain = domainOf(`
domain: 42
descriptors:
  - key: "1.50"
    value: 007
    shadow_mode: yes
    rate_limit: { unit: SECOND, requests_per_unit: 0x10 }
  - key: k
    value: ~
    rate_limit: { unit: second, requests_per_unit: 1_000 }
`);
    expect(domain.name).toBe('42');
    const rule = matchRule(domain, [{ key: '1.50', value: '007' }])!.rule;
    expect(rule).toMatchObject({ shadow: true, main: { requestsPerUnit: 16, unit: 'SECOND' } });
    expect(matchRule(domain, [{ key: 'k', value: 'anything' }])!.rule.main!.requestsPerUnit).toBe(1000);
  });

  it('takes whole numbers, timestamps, sexagesimals and booleans as written where it reads a string', () => {
    const domain = domainOf(`
domain: d
descriptors:
  - { key: k, value: 9223372036854775807, rate_limit: { unit: second, requests_per_unit: 1, name: int64-max } }
  - { key: k, value: 0x1F, rate_limit: { unit: second, requests_per_unit: 1, name: hex } }
  - { key: k, value: 1_000, rate_limit: { unit: second, requests_per_unit: 1, name: underscored } }
  - { key: k, value: 2001-12-14, rate_limit: { unit: second, requests_per_unit: 1, name: timestamp } }
  - { key: k, value: 1:30.5, rate_limit: { unit: second, requests_per_unit: 1, name: sexagesimal } }
  - { key: k, value: yes, rate_limit: { unit: second, requests_per_unit: 1, name: boolean } }
  - { key: k, value: '0.25', rate_limit: { unit: second, requests_per_unit: 1, name: quoted } }
`);
    const named = (value: string) => matchRule(domain, [{ key: 'k', value }])?.rule.name;
    expect(['9223372036854775807', '0x1F', '1_000', '2001-12-14', '1:30.5', 'yes', '0.25'].map(named)).toEqual([
      'int64-max',
      'hex',
      'underscored',
      'timestamp',
      'sexagesimal',
      'boolean',
      'quoted',
    ]);
  });

  it('accepts an empty rate_limit list entry set and null descriptors', () => {
    const domain = domainOf('domain: d\ndescriptors:\n  - key: k\n    descriptors:\n    rate_limit:\n');
    expect(matchRule(domain, [{ key: 'k', value: 'v' }])).toBeNull();
  });
});

describe('quota_mode and metadata', () => {
  it('reads quota_mode and any metadata map, typed as yaml.v2 types it; the rule carries both', () => {
    const domain = domainOf(`
domain: d
descriptors:
  - key: k
    quota_mode: true
    metadata:
      name: svc
      count: 010
      ratio: 0.5
      on: yes
      none: ~
      when: 2001-12-14
      clock: 1:30
      list: [1, "2", { deep: [true] }]
      nested: { __proto__: data, 7: seven }
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: plain
    metadata: {}
    rate_limit: { unit: minute, requests_per_unit: 1 }
`);
    const rule = matchRule(domain, [{ key: 'k', value: 'v' }])!.rule;
    expect(rule.quota).toBe(true);
    expect(rule.metadata).toEqual({
      name: 'svc',
      count: 8,
      ratio: 0.5,
      on: true,
      none: null,
      when: '2001-12-14',
      clock: '1:30',
      list: [1, '2', { deep: [true] }],
      nested: Object.defineProperty({ 7: 'seven' }, '__proto__', { value: 'data', enumerable: true }),
    });
    expect(Object.getPrototypeOf(rule.metadata!.nested)).toBe(Object.prototype);
    expect(matchRule(domain, [{ key: 'plain', value: 'v' }])!.rule).toMatchObject({ quota: false, metadata: null });
  });

  it('refuses metadata that is not a map, and a quota_mode that is not a boolean', () => {
    expect(problemsOf('domain: d\ndescriptors:\n  - key: k\n    metadata: [a, b]\n')).toEqual(['test.yaml: descriptors[0].metadata (line 4): expected a map of metadata']);
    expect(problemsOf('domain: d\ndescriptors:\n  - key: k\n    quota_mode: 1\n')).toEqual(['test.yaml: descriptors[0].quota_mode (line 4): expected true or false']);
  });
});

describe('sluice extensions', () => {
  it('token_bucket with a burst, sliding_window, several limits per descriptor', () => {
    const domain = domainOf(`
domain: ext
descriptors:
  - key: tb
    rate_limit: { unit: second, requests_per_unit: 10, sluice_algorithm: token_bucket, sluice_burst: 25 }
  - key: sw
    rate_limit: { unit: minute, requests_per_unit: 60, sluice_algorithm: sliding_window }
  - key: multi
    rate_limit:
      name: llm
      unit: minute
      requests_per_unit: 100
      sluice_limits:
        - { unit: second, requests_per_unit: 5, sluice_algorithm: token_bucket, sluice_burst: 10 }
        - { unit: day, requests_per_unit: 10000 }
`);
    expect(matchRule(domain, [{ key: 'tb', value: 'x' }])!.rule.resource!.limits).toEqual([
      { name: 'tb_second', algorithm: 'token_bucket', capacity: 25, intervalMs: 100, countsRequests: false },
    ]);
    expect(matchRule(domain, [{ key: 'sw', value: 'x' }])!.rule.resource!.limits).toEqual([
      { name: 'sw_minute', algorithm: 'sliding_window', capacity: 60, periodMs: 60_000, countsRequests: false },
    ]);
    const multi = matchRule(domain, [{ key: 'multi', value: 'x' }])!.rule;
    expect(multi.resource!.limits.map((l) => l.name)).toEqual(['fw_minute', 'tb_second', 'fw_day']);
    expect(multi.reported.get('tb_second')).toEqual({ requestsPerUnit: 5, unit: 'SECOND' });
    expect(multi.main).toEqual({ requestsPerUnit: 100, unit: 'MINUTE' });
  });

  it('maps the policy: leases, failure policy (error is closed, turned into UNAVAILABLE by the service)', () => {
    const rule = (onStoreFailure: 'error' | 'open' | 'closed' | 'local', enabled: boolean) =>
      matchRule(domainOf('domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1 }\n', options({ onStoreFailure, lease: { enabled, maxFraction: 0.2, ttlMs: 500 } })), [
        { key: 'k', value: 'v' },
      ])!.rule.resource!;
    expect(rule('error', true)).toMatchObject({ onStoreFailure: 'closed', leasable: true, lease: { enabled: true, maxFraction: 0.2, ttlMs: 500 } });
    expect(rule('open', false)).toMatchObject({ onStoreFailure: 'open', leasable: false });
    expect(rule('local', true).onStoreFailure).toBe('local');
  });
});
