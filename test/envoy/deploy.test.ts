// deploy/envoy: the example sluice policy and ratelimit config load, the Envoy config points at
// sluice, and the descriptors its rate_limits actions produce find the rules meant for them.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { matchRule } from '../../src/envoy/match.js';
import { loadEnvoyDirectory } from '../../src/envoy/runtime.js';
import { packageRoot } from '../../src/paths.js';

const DEPLOY = join(packageRoot, 'deploy', 'envoy');

describe('deploy/envoy', () => {
  const policyText = readFileSync(join(DEPLOY, 'sluice.yaml'), 'utf8').replace('deploy/envoy/ratelimit/config', join(DEPLOY, 'ratelimit', 'config'));
  const policy = parsePolicy(policyText, 'sluice.yaml');
  const config = loadEnvoyDirectory(policy.envoy!);

  it('sluice.yaml loads, with both example domains', () => {
    expect(policy.server.listen).toBe('127.0.0.1:50051');
    expect(policy.envoy).toMatchObject({ responseHeaders: true, onStoreFailure: 'error' });
    expect([...config.domains.keys()].sort()).toEqual(['edge', 'mongo_cps']);
  });

  it('envoy.yaml sends domain "edge" over gRPC (HTTP/2) to sluice on 127.0.0.1:50051', () => {
    const envoy = parse(readFileSync(join(DEPLOY, 'envoy.yaml'), 'utf8'));
    const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const filter = hcm.http_filters.find((f: { name: string }) => f.name === 'envoy.filters.http.ratelimit').typed_config;
    expect(filter.domain).toBe('edge');
    expect(filter.rate_limit_service).toEqual({ transport_api_version: 'V3', grpc_service: { envoy_grpc: { cluster_name: 'sluice' } } });
    const cluster = envoy.static_resources.clusters.find((c: { name: string }) => c.name === 'sluice');
    expect(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({ address: '127.0.0.1', port_value: 50051 });
    expect(cluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config).toHaveProperty('http2_protocol_options');
    expect(hcm.route_config.virtual_hosts[0].routes[0].route.rate_limits).toHaveLength(4);
  });

  it('the descriptors Envoy sends find their rules', () => {
    const edge = config.domains.get('edge')!;
    const rule = (...pairs: string[]) => {
      const entries = [];
      for (let i = 0; i < pairs.length; i += 2) entries.push({ key: pairs[i]!, value: pairs[i + 1]! });
      return matchRule(edge, entries)?.rule ?? null;
    };
    expect(rule('remote_address', '10.1.2.3')!.main).toEqual({ requestsPerUnit: 50, unit: 'SECOND' });
    expect(rule('remote_address', '203.0.113.7')!.resource).toBeNull();
    expect(rule('api_key', 'k-123')!.main).toEqual({ requestsPerUnit: 1000, unit: 'MINUTE' });
    expect(rule('api_key', 'internal-batch')!.unlimited).toBe(true);
    const checkout = rule('generic_key', 'checkout', 'user', 'u-1')!;
    expect(checkout.resource!.limits.map((l) => [l.algorithm, l.capacity])).toEqual([
      ['token_bucket', 10],
      ['fixed_window', 100],
    ]);
    expect(rule('header_match', 'post')).toMatchObject({ shadow: true, resource: { limits: [{ algorithm: 'sliding_window', capacity: 500 }] } });
    expect(matchRule(config.domains.get('mongo_cps')!, [{ key: 'database', value: 'users' }])!.rule.main).toEqual({ requestsPerUnit: 500, unit: 'SECOND' });
  });
});
