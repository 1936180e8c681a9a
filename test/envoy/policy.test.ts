// The policy file's `envoy:` section: loaded and checked with the policy, so `sluice check` and a
// starting sidecar name a bad domain file and the place in it.
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/config/load.js';
import { configDir } from './support.js';

function problems(yaml: string): string[] {
  try {
    parsePolicy(yaml, 'policy.yaml');
  } catch (err) {
    return (err as PolicyError).problems;
  }
  return [];
}

const GOOD = 'domain: api\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 3 }\n';

describe('the envoy section of a policy', () => {
  it('loads the config dir; resources become optional', () => {
    const dir = configDir({ 'api.yaml': GOOD });
    const policy = parsePolicy(`envoy:\n  config_dir: ${dir}\n`, 'policy.yaml');
    expect(policy.resources.size).toBe(0);
    expect(policy.envoy).toMatchObject({
      configDir: dir,
      responseHeaders: false,
      onStoreFailure: 'error',
      lease: { enabled: true, maxFraction: 0.1, ttlMs: 1000 },
    });
    expect([...policy.envoy!.initial.domains.keys()]).toEqual(['api']);
  });

  it('takes response_headers, on_store_failure and lease, and keeps its own resources too', () => {
    const dir = configDir({ 'api.yaml': GOOD });
    const policy = parsePolicy(
      `
envoy:
  config_dir: ${dir}
  response_headers: true
  on_store_failure: local
  lease: { enabled: false, ttl: 500ms }
resources:
  - name: r
    limits: [{ name: l, algorithm: fixed_window, rate: 5/s }]
`,
      'policy.yaml',
    );
    expect(policy.resources.has('r')).toBe(true);
    expect(policy.envoy).toMatchObject({ responseHeaders: true, onStoreFailure: 'local', lease: { enabled: false, ttlMs: 500 } });
    const rule = policy.envoy!.initial.domains.get('api')!.root.keyOnly.get('user')!.rule!;
    expect(rule.resource).toMatchObject({ onStoreFailure: 'local', leasable: false });
  });

  it('names the domain file, the place in it and the line of config_dir, for every problem', () => {
    const dir = configDir({ 'api.yaml': 'domain: api\ndescriptors:\n  - key: user\n    rate_limit: { unit: minutes, requests_per_unit: 3 }\n' });
    expect(problems(`# comment\nenvoy:\n  config_dir: ${dir}\n`)).toEqual([
      `envoy.config_dir (line 3): ${dir}/api.yaml: descriptors[0].rate_limit.unit (line 4): invalid rate limit unit 'minutes'`,
    ]);
    expect(problems('envoy:\n  config_dir: /nonexistent/sluice-envoy\n')).toEqual([
      'envoy.config_dir (line 2): cannot read the directory /nonexistent/sluice-envoy: no such file or directory',
    ]);
  });

  it('rejects unknown keys and bad values in the section', () => {
    const dir = configDir({ 'api.yaml': GOOD });
    expect(problems(`envoy:\n  config_dir: ${dir}\n  on_store_failure: maybe\n  response_header: true\n`)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^envoy\.on_store_failure \(line 3\): expected error, open, closed or local$/),
        expect.stringMatching(/^envoy \(line \d\): unknown key "response_header"$/),
      ]),
    );
  });

  it('without an envoy section, resources are still required', () => {
    expect(problems('store: {}\n')).toEqual(['resources: required (array)']);
    expect(problems('resources: []\n')).toEqual([expect.stringMatching(/^resources .*expected at least one resource$/)]);
  });
});
