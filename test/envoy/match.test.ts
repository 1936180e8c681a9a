// Which rule a descriptor matches, as envoyproxy/ratelimit decides it: exact value, then the first
// wildcard in file order, then the key-only default; a limit only at the request's last entry.
import { describe, expect, it } from 'vitest';
import { matchesWildcard, matchRule, scopeOf, type Entry } from '../../src/envoy/match.js';
import { domainOf } from './support.js';

const DOMAIN = domainOf(`
domain: test
descriptors:
  - key: path
    value: /exact
    rate_limit: { unit: minute, requests_per_unit: 1, name: exact }
  - key: path
    value: /api/*
    rate_limit: { unit: minute, requests_per_unit: 2, name: wildcard }
  - key: path
    value: /api/v*
    rate_limit: { unit: minute, requests_per_unit: 3, name: later-wildcard }
  - key: path
    rate_limit: { unit: minute, requests_per_unit: 4, name: default }

  - key: client
    value: acme
    descriptors:
      - key: route
        rate_limit: { unit: hour, requests_per_unit: 5, name: acme-route }
  - key: client
    rate_limit: { unit: hour, requests_per_unit: 6, name: any-client }
    descriptors:
      - key: route
        value: /slow
        rate_limit: { unit: day, requests_per_unit: 7, name: slow-route }
      - key: route
        value: "*"
        descriptors:
          - key: method
            value: POST
            rate_limit: { unit: second, requests_per_unit: 8, name: any-route-post }

  - key: exact_no_limit
    value: x
  - key: unlimited
    rate_limit: { unlimited: true, name: free }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: second, requests_per_unit: 1, name: shadowed }
  - key: blocked
    rate_limit: { unit: second, requests_per_unit: 0, name: blocked }
  - key: shared
    value: team-*
    share_threshold: true
    rate_limit: { unit: minute, requests_per_unit: 9, name: shared-teams }
  - key: numbers
    value: 010
    rate_limit: { unit: Minute, requests_per_unit: 10, name: octal-looking }
`);

const e = (...pairs: string[]): Entry[] => {
  const out: Entry[] = [];
  for (let i = 0; i < pairs.length; i += 2) out.push({ key: pairs[i]!, value: pairs[i + 1]! });
  return out;
};

describe('matching a descriptor to a rule', () => {
  const cases: [string, Entry[], string | null][] = [
    ['exact value', e('path', '/exact'), 'exact'],
    ['wildcard value', e('path', '/api/users'), 'wildcard'],
    ['the first wildcard in file order wins', e('path', '/api/v1'), 'wildcard'],
    ['a wildcard matches the bare prefix', e('path', '/api/'), 'wildcard'],
    ['key-only default for any other value', e('path', '/other'), 'default'],
    ['key-only default for an empty value', e('path', ''), 'default'],
    ['exact beats wildcard and default', e('path', '/exact'), 'exact'],
    ['unknown key', e('nope', '1'), null],
    ['keys are matched exactly (no key prefix)', e('pathx', '/exact'), null],
    ['exact match without a limit does not fall back to the default', e('client', 'acme'), null],
    ['depth 2 under an exact value', e('client', 'acme', 'route', '/x'), 'acme-route'],
    ['depth 1 key-only with children', e('client', 'globex'), 'any-client'],
    ['depth 2 under a key-only default', e('client', 'globex', 'route', '/slow'), 'slow-route'],
    ['depth 2: no rule for that value', e('client', 'acme', 'other', '/slow'), null],
    ['a level with no limit at the last entry', e('client', 'globex', 'route', '/fast'), null],
    ['depth 3 through a "*" wildcard', e('client', 'globex', 'route', '/fast', 'method', 'POST'), 'any-route-post'],
    ['depth 3: the request has more entries than the config', e('client', 'acme', 'route', '/x', 'extra', '1'), null],
    ['a limit applies only at the last entry', e('path', '/exact', 'more', '1'), null],
    ['a node without a limit', e('exact_no_limit', 'x'), null],
    ['unlimited', e('unlimited', 'anything'), 'free'],
    ['shadow', e('shadow', 'x'), 'shadowed'],
    ['requests_per_unit 0', e('blocked', 'x'), 'blocked'],
    ['a value written 010 is the string "010"', e('numbers', '010'), 'octal-looking'],
    ['...not 8', e('numbers', '8'), null],
  ];
  it.each(cases)('%s', (_what, entries, expected) => {
    const match = matchRule(DOMAIN, entries);
    expect(match?.rule.name ?? null).toBe(expected);
  });

  it('compiles rules to sluice resources: fixed windows aligned to the unit', () => {
    const exact = matchRule(DOMAIN, e('path', '/exact'))!.rule;
    expect(exact.resource!.limits).toEqual([{ name: 'fw_minute', algorithm: 'fixed_window', capacity: 1, periodMs: 60_000, countsRequests: false }]);
    expect(exact.resource).toMatchObject({ name: 'envoy:test', keys: [], permitTtlMs: 0, onStoreFailure: 'closed', leasable: true });
    expect(exact.main).toEqual({ requestsPerUnit: 1, unit: 'MINUTE' });
    expect(matchRule(DOMAIN, e('unlimited', 'x'))!.rule).toMatchObject({ unlimited: true, resource: null, main: null });
    expect(matchRule(DOMAIN, e('blocked', 'x'))!.rule).toMatchObject({ resource: null, main: { requestsPerUnit: 0, unit: 'SECOND' } });
    expect(matchRule(DOMAIN, e('shadow', 'x'))!.rule.shadow).toBe(true);
  });
});

describe('a `*` anywhere in a value', () => {
  const cases: [string, string, boolean][] = [
    ['foo*', 'foo', true],
    ['foo*', 'foobar', true],
    ['foo*', 'fo', false],
    ['*bar', 'bar', true],
    ['*bar', 'xbar', true],
    ['*bar', 'barx', false],
    ['bar*b', 'barb', true],
    ['bar*b', 'bar123b', true],
    ['bar*b', 'bara', false],
    ['bar*b', 'xbarb', false],
    ['bar*b', 'bar', false],
    ['ab*b', 'ab', false],
    ['foo*bar*baz', 'foobarbaz', true],
    ['foo*bar*baz', 'foo1bar2baz', true],
    ['foo*bar*baz', 'foo123baz', false],
    ['foo*bar*baz', 'foobaz', false],
    ['a*b*b', 'ab', false],
    ['a*b*b', 'abb', true],
    ['a*bc*c', 'abcc', true],
    ['a*bc*c', 'abc', false],
    ['*', '', true],
    ['*', 'anything', true],
    ['a**b', 'ab', true],
    ['no-star', 'no-star', true],
    ['no-star', 'no-star!', false],
  ];
  it.each(cases)('%s against %s', (pattern, value, expected) => {
    expect(matchesWildcard(pattern.split('*'), value)).toBe(expected);
  });

  it('matches in file order, after an exact value, before the key-only default', () => {
    const domain = domainOf(`
domain: w
descriptors:
  - key: path
    value: /api*v1
    rate_limit: { unit: minute, requests_per_unit: 1, name: middle }
  - key: path
    value: /api/*
    rate_limit: { unit: minute, requests_per_unit: 2, name: trailing }
  - key: path
    value: /api/v1
    rate_limit: { unit: minute, requests_per_unit: 3, name: exact }
  - key: path
    rate_limit: { unit: minute, requests_per_unit: 4, name: default }
`);
    const name = (value: string) => matchRule(domain, e('path', value))?.rule.name;
    expect(name('/api/v1')).toBe('exact');
    expect(name('/api/users/v1')).toBe('middle');
    expect(name('/api/users')).toBe('trailing');
    expect(name('/apiv1')).toBe('middle');
    expect(name('/other')).toBe('default');
  });
});

describe('the scope (budget) of a match', () => {
  it('is the domain and every request entry, each value its own budget', () => {
    const a = matchRule(DOMAIN, e('path', '/a'))!;
    const b = matchRule(DOMAIN, e('path', '/b'))!;
    expect(scopeOf('test', e('path', '/a'), a)).toBe('envoy=test|path|/a|~fw_minute');
    expect(scopeOf('test', e('path', '/b'), b)).not.toBe(scopeOf('test', e('path', '/a'), a));
  });

  it('keeps a share_threshold wildcard under its pattern, so matching values share one budget', () => {
    const one = matchRule(DOMAIN, e('shared', 'team-a'))!;
    const two = matchRule(DOMAIN, e('shared', 'team-b'))!;
    expect(scopeOf('test', e('shared', 'team-a'), one)).toBe('envoy=test|shared|team-*|~fw_minute');
    expect(scopeOf('test', e('shared', 'team-b'), two)).toBe('envoy=test|shared|team-*|~fw_minute');
  });

  it('is injection-safe: separators and braces are escaped, so no two descriptors collide', () => {
    const rule = matchRule(DOMAIN, e('path', 'x'))!;
    const scopes = [
      scopeOf('test', e('path', 'a|path|b'), rule),
      scopeOf('test', [...e('path', 'a'), ...e('path', 'b')], rule),
      scopeOf('te|st', e('path', 'a'), rule),
      scopeOf('test', e('path', '{slot}'), rule),
    ];
    expect(new Set(scopes).size).toBe(scopes.length);
    for (const scope of scopes) expect(scope).not.toMatch(/[{}]/);
    // A sluice.v1 resource name cannot contain "=", so no sluice.v1 scope starts like this.
    for (const scope of scopes) expect(scope.split('|')[0]).toMatch(/^envoy=/);
  });

  it('ends with the limits’ algorithms and units, so a reload that changes either starts afresh', () => {
    const domain = domainOf(`
domain: shapes
descriptors:
  - key: tb
    rate_limit: { unit: second, requests_per_unit: 5, sluice_algorithm: token_bucket }
  - key: multi
    rate_limit:
      unit: minute
      requests_per_unit: 100
      sluice_limits:
        - { unit: second, requests_per_unit: 5, sluice_algorithm: sliding_window }
`);
    expect(scopeOf('shapes', e('tb', 'x'), matchRule(domain, e('tb', 'x'))!)).toBe('envoy=shapes|tb|x|~tb_second');
    expect(scopeOf('shapes', e('multi', 'x'), matchRule(domain, e('multi', 'x'))!)).toBe('envoy=shapes|multi|x|~fw_minute+sw_second');
  });
});
