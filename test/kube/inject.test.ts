// The injector's answers to the golden AdmissionReviews, and what the patched pods are: valid
// pods (kubernetes-models' schema), whose mounted policy and sidecar env pass `sluice check`, and
// that a second injection leaves alone.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import jsonpatch from 'fast-json-patch';
import { loadAll } from 'js-yaml';
import { Pod } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { answerReview } from '../../src/kube/review.js';
import { inject } from '../../src/kube/inject.js';
import { expectRecordedAnswer, FIXTURE_DIR, FIXTURES, INJECTOR_OPTIONS, readable, reviewText } from '../support/admission.js';
import { freePort } from '../support/ports.js';
import { CLI, startSidecar, writePolicy } from '../support/sidecar.js';

const run = promisify(execFile);

interface ClusterObject {
  kind: string;
  metadata: { name: string; namespace: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
const cluster = loadAll(readFileSync(join(FIXTURE_DIR, 'cluster.yaml'), 'utf8')) as ClusterObject[];
const find = (kind: string, namespace: string, name: string) => {
  const found = cluster.find((o) => o.kind === kind && o.metadata.namespace === namespace && o.metadata.name === name);
  if (!found) throw new Error(`cluster.yaml has no ${kind} ${namespace}/${name}`);
  return found;
};

/**
 * Runs `sluice check` as the sidecar container would run `serve`: its ConfigMap volume written to
 * a directory standing for the mount, its env resolved from the fixture cluster's Secrets.
 */
async function checkAsMounted(pod: any, namespace: string): Promise<string> {
  const sidecar = [...(pod.spec.initContainers ?? []), ...pod.spec.containers].find((c: any) => c.name === 'sluice');
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
  for (const entry of sidecar.env) {
    if (entry.value !== undefined) env[entry.name] = entry.value;
    else {
      const ref = entry.valueFrom.secretKeyRef;
      const value = find('Secret', namespace, ref.name).stringData?.[ref.key];
      if (value !== undefined) env[entry.name] = value;
      else if (!ref.optional) throw new Error(`Secret ${ref.name} has no key ${ref.key}`);
    }
  }
  const args: string[] = [...sidecar.args];
  for (const mount of sidecar.volumeMounts) {
    const volume = pod.spec.volumes.find((v: any) => v.name === mount.name);
    expect(mount.subPath).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'sluice-mount-'));
    for (const [key, text] of Object.entries(find('ConfigMap', namespace, volume.configMap.name).data ?? {})) writeFileSync(join(dir, key), text);
    args.forEach((arg, i) => (args[i] = arg.startsWith(`${mount.mountPath}/`) ? join(dir, arg.slice(mount.mountPath.length + 1)) : arg));
  }
  expect(args.slice(0, 2)).toEqual(['serve', '--config']);
  const { stdout } = await run(process.execPath, [CLI, 'check', args[2]!], { env });
  return stdout;
}

describe('golden AdmissionReviews', () => {
  for (const fixture of FIXTURES) {
    describe(fixture.name, () => {
      const text = reviewText(fixture);
      const answer = answerReview(text, fixture.path === '/inject/namespace', INJECTOR_OPTIONS);

      it('is answered as recorded, always allowed', () => {
        expect((answer.review as any).response.allowed).toBe(true);
        expectRecordedAnswer(fixture, answer.review);
      });

      const patch = readable(answer.review).response.patch;
      if (!patch) return;
      const request = JSON.parse(text).request;
      const patched = jsonpatch.applyPatch(structuredClone(request.object), patch, true, false).newDocument;

      it('patches the pod into a valid pod', () => {
        expect(() => new Pod(patched).validate()).not.toThrow();
      });

      it("mounts a policy that sluice check accepts with the sidecar's env", async () => {
        expect(await checkAsMounted(patched, request.namespace)).toMatch(/: ok, \d+ resource\(s\)\n$/);
      });

      it('leaves the patched pod alone when it comes again', () => {
        expect(inject(patched, request.namespace, fixture.path === '/inject/namespace', INJECTOR_OPTIONS)).toEqual({ skip: 'already injected', warnings: [] });
      });
    });
  }
});

describe('annotation values', () => {
  const pod = (annotations: Record<string, string>) => ({
    metadata: { name: 'p', annotations: { 'sluice.dev/inject': 'true', ...annotations } },
    spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }] },
  });
  const bad: [string, string, RegExp][] = [
    ['sluice.dev/inject', 'yes', /must be "true" or "false"/],
    ['sluice.dev/native-sidecar', 'True', /must be "true" or "false"/],
    ['sluice.dev/port', '0', /port number/],
    ['sluice.dev/port', '65536', /port number/],
    ['sluice.dev/port', '8080', /already a port of container "app"/],
    ['sluice.dev/admin-port', '50051', /must differ/],
    ['sluice.dev/cpu-request', '-1', /quantity/],
    ['sluice.dev/cpu-request', '0m', /more than zero/],
    ['sluice.dev/memory-limit', '256MB', /quantity/],
    ['sluice.dev/policy', 'My_Policy', /ConfigMap or Secret name/],
    ['sluice.dev/redis-secret', 'redis/secret', /ConfigMap or Secret name/],
    ['sluice.dev/image', 'Sluice:latest', /image reference/],
    ['sluice.dev/image', 'sluice:1.0 --privileged', /image reference/],
    ['sluice.dev/log-level', 'verbose', /one of trace, debug/],
  ];
  for (const [key, value, problem] of bad) {
    it(`${key}: ${JSON.stringify(value)} leaves the pod unchanged with a warning naming it`, () => {
      const result = inject(pod({ [key]: value }), 'shop', false, INJECTOR_OPTIONS);
      expect('skip' in result).toBe(true);
      expect(result.warnings.some((w) => w.includes(key) && problem.test(w))).toBe(true);
    });
  }

  const good: [string, string][] = [
    ['sluice.dev/cpu-request', '0.25'],
    ['sluice.dev/memory-limit', '1Gi'],
    ['sluice.dev/memory-limit', '300e6'],
    ['sluice.dev/image', 'localhost:5000/sluice@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'],
    ['sluice.dev/image', 'sluice'],
    ['sluice.dev/policy', 'team.limits-v2'],
  ];
  for (const [key, value] of good) {
    it(`${key}: ${JSON.stringify(value)} is accepted`, () => {
      expect(inject(pod({ [key]: value }), 'shop', false, INJECTOR_OPTIONS)).toMatchObject({ warnings: [], patch: expect.any(Array) });
    });
  }

  it('skips kube-system, kube-public and its own namespace, even when a pod asks', () => {
    for (const namespace of ['kube-system', 'kube-public', INJECTOR_OPTIONS.namespace]) {
      expect(inject(pod({}), namespace, true, INJECTOR_OPTIONS)).toEqual({ skip: `namespace ${namespace} is never injected`, warnings: [] });
    }
  });

  it('gives the classic sidecar the grace period less 5 s to keep serving, at least 1 s', () => {
    const classic = (grace?: number) => {
      const p: any = pod({ 'sluice.dev/native-sidecar': 'false' });
      if (grace !== undefined) p.spec.terminationGracePeriodSeconds = grace;
      const result = inject(p, 'shop', false, INJECTOR_OPTIONS) as { patch: any[] };
      const sidecar = result.patch.find((op) => op.path === '/spec/containers/0').value;
      return sidecar.env.find((e: any) => e.name === 'SLUICE_STOP_DELAY').value;
    };
    expect([classic(), classic(60), classic(3)]).toEqual(['25s', '55s', '1s']);
  });
});

describe('pods that need care', () => {
  const pod = (annotations: Record<string, string> = {}, spec: Record<string, unknown> = {}): any => ({
    metadata: { name: 'p', annotations: { 'sluice.dev/inject': 'true', ...annotations } },
    spec: { containers: [{ name: 'app', image: 'app:1' }, { name: 'helper', image: 'helper:1' }], ...spec },
  });
  const patched = (p: any) => {
    const result = inject(p, 'shop', false, INJECTOR_OPTIONS);
    if (!('patch' in result)) throw new Error(`not injected: ${result.skip}`);
    const out = jsonpatch.applyPatch(structuredClone(p), result.patch, true, false).newDocument;
    new Pod(out).validate();
    return out;
  };
  const sidecarEnv = (p: any) => Object.fromEntries(p.spec.containers.find((c: any) => c.name === 'sluice').env.map((e: any) => [e.name, e.value]));

  it('a classic sidecar keeps kubectl logs and exec on the first app container', () => {
    const out = patched(pod({ 'sluice.dev/native-sidecar': 'false' }));
    expect(out.spec.containers.map((c: any) => c.name)).toEqual(['sluice', 'app', 'helper']);
    expect(out.metadata.annotations['kubectl.kubernetes.io/default-container']).toBe('app');
    // One the pod names itself is left as it is.
    const chosen = patched(pod({ 'sluice.dev/native-sidecar': 'false', 'kubectl.kubernetes.io/default-container': 'helper' }));
    expect(chosen.metadata.annotations['kubectl.kubernetes.io/default-container']).toBe('helper');
  });

  it('gives a classic sidecar a stop delay sluice serve accepts, however long the grace period', async () => {
    const out = patched(pod({ 'sluice.dev/native-sidecar': 'false' }, { terminationGracePeriodSeconds: 7200 }));
    const env = sidecarEnv(out);
    expect(env.SLUICE_STOP_DELAY).toBe('3600s');
    const file = writePolicy('resources:\n  - { name: api, limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }] }\n');
    await expect(run(process.execPath, [CLI, 'check', file], { env: { PATH: process.env.PATH ?? '', SLUICE_STOP_DELAY: env.SLUICE_STOP_DELAY } })).resolves.toMatchObject({
      stdout: expect.stringContaining(': ok'),
    });
  });

  it('puts SLUICE_ADDR before the env entries that may refer to it as $(SLUICE_ADDR)', () => {
    const out = patched(pod({}, { containers: [{ name: 'app', image: 'app:1', env: [{ name: 'TARGET', value: 'dns:///$(SLUICE_ADDR)' }] }] }));
    expect(out.spec.containers[0].env.map((e: any) => e.name)).toEqual(['SLUICE_ADDR', 'TARGET']);
  });

  it("starts a sidecar whose probes the kubelet reaches on the pod's IPv4 and IPv6 addresses", async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const out = patched(pod({ 'sluice.dev/port': String(port), 'sluice.dev/admin-port': String(adminPort) }));
    const sidecarSpec = out.spec.initContainers[0];
    const env = Object.fromEntries(sidecarSpec.env.map((e: any) => [e.name, e.value]));
    const sidecar = await startSidecar('resources:\n  - { name: api, limits: [{ name: rpm, algorithm: fixed_window, rate: 10/1m }] }\n', env);
    try {
      expect(sidecar.address).toBe(out.spec.containers[0].env[0].value);
      for (const probe of [sidecarSpec.startupProbe, sidecarSpec.readinessProbe, sidecarSpec.livenessProbe]) {
        expect(probe.httpGet.port).toBe(adminPort);
        // An IPv6-only cluster's kubelet probes [pod IP]; an IPv4 one, the IPv4 pod IP.
        for (const host of ['[::1]', '127.0.0.1']) expect((await fetch(`http://${host}:${adminPort}${probe.httpGet.path}`)).status).toBe(200);
      }
    } finally {
      await sidecar.stop();
    }
  });

  it('leaves a hostNetwork pod alone: its ports would be the node\'s, shared with every pod there', () => {
    const result = inject(pod({}, { hostNetwork: true }), 'shop', false, INJECTOR_OPTIONS);
    expect(result).toMatchObject({ skip: 'hostNetwork' });
    expect(result.warnings).toEqual([expect.stringMatching(/^sluice: not injected, the pod uses hostNetwork/)]);
  });

  it('quotes no more than the start of a huge annotation value, so the reason survives the API server cutting long warnings', () => {
    for (const key of ['sluice.dev/image', 'sluice.dev/inject', 'sluice.dev/policy']) {
      const result = inject(pod({ [key]: 'x'.repeat(100_000) }), 'shop', false, INJECTOR_OPTIONS);
      expect(result.warnings).toHaveLength(1);
      expect(result.warnings[0]!.length).toBeLessThan(256);
      expect(result.warnings[0]).toMatch(key === 'sluice.dev/inject' ? /must be "true" or "false"$/ : /is not (an image reference|a valid ConfigMap)/);
    }
  });
});
