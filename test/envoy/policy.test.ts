// The policy file's `envoy:` section: checked with the policy, and its directory loaded as the
// sidecar starts (and by `sluice check`), so a bad domain file is named with the place in it.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CLI, writePolicy } from '../support/sidecar.js';
import { parsePolicy, PolicyError } from '../../src/config/load.js';
import { EnvoyConfigError, loadEnvoyDirectory } from '../../src/envoy/runtime.js';
import { configDir } from './support.js';

/** Every problem of the policy, or of the Envoy config directory it names. */
function problems(yaml: string): string[] {
  try {
    const policy = parsePolicy(yaml, 'policy.yaml');
    if (policy.envoy) loadEnvoyDirectory(policy.envoy);
  } catch (err) {
    return err instanceof EnvoyConfigError ? err.problems : (err as PolicyError).problems;
  }
  return [];
}

const GOOD = 'domain: api\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 3 }\n';

describe('the envoy section of a policy', () => {
  it('xds: a management server instead of config_dir (one of them, not both), its settings checked', () => {
    const policy = parsePolicy('envoy:\n  xds: { server: 127.0.0.1:18000, node_id: edge }\n', 'policy.yaml');
    expect(policy.envoy).toMatchObject({
      configDir: null,
      xds: { server: '127.0.0.1:18000', nodeId: 'edge', nodeMetadata: {}, headers: {}, tls: null, retry: { initialMs: 1_000, maxMs: 60_000, jitter: 0.5 }, maxMessageBytes: 4_194_304 },
    });
    const refused = (yaml: string) => {
      try {
        parsePolicy(yaml, 'policy.yaml');
      } catch (err) {
        return (err as PolicyError).problems;
      }
      throw new Error('expected the policy to be refused');
    };
    expect(refused(`envoy:\n  config_dir: ${configDir({})}\n  xds: { server: x:1, node_id: n }\n`)).toEqual([
      'envoy.xds (line 3, column 8): give config_dir (config files) or xds (a management server), not both',
    ]);
    expect(refused('envoy:\n  shadow_mode: true\n')).toEqual([
      expect.stringMatching(/^envoy\.config_dir.*: required \(the directory of envoyproxy\/ratelimit config files\), unless xds names a management server$/),
    ]);
    expect(
      refused('envoy:\n  xds:\n    server: dns:///x\n    node_id: ""\n    headers: { grpc-timeout: 1s, x-bin: a }\n    retry: { initial: 2s, max: 1s }\n    max_message_size: 0\n'),
    ).toEqual([
      expect.stringMatching(/^envoy\.xds\.server \(line 3.*expected the management server as host:port/),
      expect.stringMatching(/^envoy\.xds\.node_id \(line 4.*expected a non-empty node id/),
      expect.stringMatching(/^envoy\.xds\.headers.*expected a gRPC metadata key/),
      expect.stringMatching(/^envoy\.xds\.headers.*expected a gRPC metadata key/),
      expect.stringMatching(/^envoy\.xds\.retry\.max \(line 6.*expected at least initial \(2000 ms\)/),
      expect.stringMatching(/^envoy\.xds\.max_message_size \(line 7.*expected at least 1/),
    ]);
  });

  it('loads the config dir; resources become optional', () => {
    const dir = configDir({ 'api.yaml': GOOD });
    const policy = parsePolicy(`envoy:\n  config_dir: ${dir}\n`, 'policy.yaml');
    expect(policy.resources.size).toBe(0);
    expect(policy.envoy).toMatchObject({
      configDir: dir,
      responseHeaders: false,
      responseDynamicMetadata: false,
      quotaMode: false,
      onStoreFailure: 'error',
      lease: { enabled: true, maxFraction: 0.1, ttlMs: 1000 },
    });
    expect([...loadEnvoyDirectory(policy.envoy!).domains.keys()]).toEqual(['api']);
  });

  it('takes response_headers, response_dynamic_metadata, quota_mode, on_store_failure and lease, and keeps its own resources too', () => {
    const dir = configDir({ 'api.yaml': GOOD });
    const policy = parsePolicy(
      `
envoy:
  config_dir: ${dir}
  response_headers: true
  response_dynamic_metadata: true
  quota_mode: true
  on_store_failure: local
  lease: { enabled: false, ttl: 500ms }
resources:
  - name: r
    limits: [{ name: l, algorithm: fixed_window, rate: 5/s }]
`,
      'policy.yaml',
    );
    expect(policy.resources.has('r')).toBe(true);
    expect(policy.envoy).toMatchObject({ responseHeaders: true, responseDynamicMetadata: true, quotaMode: true, onStoreFailure: 'local', lease: { enabled: false, ttlMs: 500 } });
    const rule = loadEnvoyDirectory(policy.envoy!).domains.get('api')!.root.keyOnly.get('user')!.rule!;
    expect(rule.resource).toMatchObject({ onStoreFailure: 'local', leasable: false });
  });

  it('names the domain file, the place in it and the line of config_dir, for every problem', () => {
    const dir = configDir({ 'api.yaml': 'domain: api\ndescriptors:\n  - key: user\n    rate_limit: { unit: minutes, requests_per_unit: 3 }\n' });
    expect(problems(`# comment\nenvoy:\n  config_dir: ${dir}\n`)).toEqual([
      `envoy.config_dir (line 3, column 15): ${dir}/api.yaml: descriptors[0].rate_limit.unit (line 4): invalid rate limit unit 'minutes'`,
    ]);
    expect(problems('envoy:\n  config_dir: /nonexistent/sluice-envoy\n')).toEqual([
      'envoy.config_dir (line 2, column 15): cannot read the directory /nonexistent/sluice-envoy: no such file or directory',
    ]);
  });

  it('rejects unknown keys and bad values in the section', () => {
    const dir = configDir({ 'api.yaml': GOOD });
    expect(problems(`envoy:\n  config_dir: ${dir}\n  on_store_failure: maybe\n  response_header: true\n`)).toEqual([
      'envoy.on_store_failure (line 3, column 21): "maybe": expected error, open, closed or local',
      'envoy (line 4, column 3): unknown key "response_header" (did you mean response_headers?)',
    ]);
  });

  it('http_listen: upstream’s HTTP port, host:port or :port, off unless given', () => {
    const dir = configDir({ 'api.yaml': GOOD });
    expect(parsePolicy(`envoy:\n  config_dir: ${dir}\n`, 'policy.yaml').envoy!.httpListen).toBeNull();
    expect(parsePolicy(`envoy:\n  config_dir: ${dir}\n  http_listen: 127.0.0.1:8080\n`, 'policy.yaml').envoy!.httpListen).toBe('127.0.0.1:8080');
    expect(parsePolicy(`envoy:\n  config_dir: ${dir}\n  http_listen: ":8080"\n`, 'policy.yaml').envoy!.httpListen).toBe(':8080');
    for (const bad of ['unix:/run/ratelimit.sock', '8080', '127.0.0.1:70000']) {
      expect(problems(`envoy:\n  config_dir: ${dir}\n  http_listen: "${bad}"\n`)).toEqual([`envoy.http_listen (line 3, column 16): "${bad}": expected host:port, or :port (every interface)`]);
    }
  });

  it('without an envoy section, resources are still required', () => {
    expect(problems('store: {}\n')).toEqual(['resources: required (a list of resources, unless there is an envoy section)']);
    expect(problems('resources: []\n')).toEqual([expect.stringMatching(/^resources .*expected at least one resource$/)]);
  });
});

describe('a bad Envoy config directory on the command line', () => {
  const run = promisify(execFile);
  const BAD = 'domain: api\ndescriptors:\n  - key: user\n    rate_limit: { unit: minutes, requests_per_unit: 3 }\n';
  const failure = (args: string[]) =>
    run(process.execPath, [CLI, ...args], { env: { ...process.env, SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: 'off' } }).then(
      () => undefined,
      (err: { code: number; stderr: string; stdout: string }) => err,
    );

  it('sluice check and sluice serve exit 1 naming the policy, the line of config_dir and the place in the domain file', async () => {
    const dir = configDir({ 'api.yaml': BAD });
    const policy = writePolicy(`envoy:\n  config_dir: ${dir}\n`);
    const expected = `${policy}: invalid policy\n  envoy.config_dir (line 2, column 15): ${join(dir, 'api.yaml')}: descriptors[0].rate_limit.unit (line 4): invalid rate limit unit 'minutes'\n`;
    for (const args of [['check', policy], ['serve', '--config', policy]]) {
      const failed = await failure(args);
      expect(failed?.code).toBe(1);
      expect(failed?.stderr).toBe(expected);
      expect(failed?.stdout).not.toContain('listening');
    }
  });
});
