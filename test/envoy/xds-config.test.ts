// RateLimitConfig resources read by the rules of config files (src/envoy/xds-config.ts), and the
// xDS client's reconnect backoff (src/grpc/backoff.ts).
import { describe, expect, it } from 'vitest';
import { configFromXds, type RateLimitConfigMessage, type RateLimitDescriptorMessage } from '../../src/envoy/xds-config.js';
import { backoffDelay } from '../../src/grpc/backoff.js';
import { options } from './support.js';

function descriptor(fields: Partial<RateLimitDescriptorMessage>): RateLimitDescriptorMessage {
  return { key: 'k', value: '', rate_limit: null, descriptors: [], shadow_mode: false, detailed_metric: false, quota_mode: false, metadata: null, ...fields };
}
const policy = (unit: string | number, requests_per_unit: number, unlimited = false) => ({ unit, requests_per_unit, unlimited, name: '', replaces: [] });
const resource = (name: string, domain: string, descriptors: RateLimitDescriptorMessage[]): RateLimitConfigMessage => ({ name, domain, descriptors });

describe('configFromXds', () => {
  it('reads a resource as the config file of its domain: limits, unlimited without a unit, Struct metadata with its types', () => {
    const metadata = { fields: { tier: { kind: 'stringValue', stringValue: 'gold' }, weight: { kind: 'numberValue', numberValue: 2.5 }, on: { kind: 'boolValue', boolValue: true }, none: {} } };
    const loaded = configFromXds(
      [resource('r', 'api', [descriptor({ key: 'user', rate_limit: policy('MINUTE', 20), metadata }), descriptor({ key: 'free', rate_limit: policy('UNKNOWN', 0, true) })])],
      options(),
    );
    if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
    const root = loaded.value.domains.get('api')!.root;
    expect(root.keyOnly.get('user')!.rule).toMatchObject({ main: { requestsPerUnit: 20, unit: 'MINUTE' }, metadata: { tier: 'gold', weight: 2.5, on: true, none: null } });
    expect(root.keyOnly.get('free')!.rule).toMatchObject({ unlimited: true });
  });

  it('with merge_domains, resources of one domain are one domain; a descriptor both have is refused', () => {
    const a = resource('a', 'api', [descriptor({ key: 'user', rate_limit: policy('MINUTE', 20) })]);
    const b = resource('b', 'api', [descriptor({ key: 'path', rate_limit: policy('SECOND', 5) })]);
    const merged = configFromXds([a, b], options({ mergeDomains: true }));
    if (!merged.ok) throw new Error(merged.problems.join('\n'));
    expect([...merged.value.domains.get('api')!.root.keyOnly.keys()]).toEqual(['user', 'path']);
    expect(configFromXds([a, b], options())).toMatchObject({ ok: false, problems: [expect.stringContaining('duplicate domain \'api\'')] });
    expect(configFromXds([a, a], options({ mergeDomains: true }))).toEqual({ ok: false, problems: ["xDS resource \"a\": descriptors[0]: duplicate descriptor composite key 'api.user'"] });
  });

  it('refuses what a file would refuse, naming the resource and the place in it', () => {
    const loaded = configFromXds(
      [resource('a', '', []), resource('b', 'api', [descriptor({ key: '' }), descriptor({ key: 'k', rate_limit: policy(9, 5) })])],
      options(),
    );
    expect(loaded).toEqual({
      ok: false,
      problems: [
        'xDS resource "a": domain: config file cannot have empty domain',
        'xDS resource "b": descriptors[0].key: descriptor has empty key',
        "xDS resource \"b\": descriptors[1].rate_limit.unit: invalid rate limit unit '9'",
      ],
    });
  });

  it('gives the same resources in any order the same fingerprint, and other resources another', () => {
    const a = resource('a', 'a', [descriptor({ rate_limit: policy('SECOND', 1) })]);
    const b = resource('b', 'b', []);
    const fingerprint = (resources: RateLimitConfigMessage[]) => {
      const loaded = configFromXds(resources, options());
      return loaded.ok ? loaded.value.fingerprint : loaded.problems.join();
    };
    expect(fingerprint([a, b])).toBe(fingerprint([b, a]));
    expect(fingerprint([a])).not.toBe(fingerprint([a, b]));
  });
});

describe('backoffDelay', () => {
  const backoff = { initialMs: 100, maxMs: 1_000, jitter: 0.5 };
  it('doubles from initial up to max; jitter takes at most its share off', () => {
    expect([0, 1, 2, 3, 4, 60, 2_000].map((attempt) => backoffDelay(attempt, backoff, () => 0))).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
    expect(backoffDelay(1, backoff, () => 1)).toBe(100);
    expect(backoffDelay(1, { ...backoff, jitter: 0 }, () => 1)).toBe(200);
  });
});
