// deploy/kubernetes: the Kustomize base and the cert-manager overlay are exactly what `sluice
// install` prints, as kubectl renders them, so the two ways to install cannot drift apart; the
// example renders, fits the schemas, and its pieces fit each other and sluice.
//
// SLUICE_WRITE_MANIFESTS=1 rewrites the generated files (after `npm run build`).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { manifestsYaml, type KubeObject } from '../../src/kube/manifests.js';
import { packageRoot } from '../../src/paths.js';
import { byIdentity, installed, kustomize, parseManifests, single, valuesOf } from '../support/kube-manifests.js';
import { hasSchema, validateKubeObject } from '../support/kube-schema.js';
import { CLI, writePolicy } from '../support/sidecar.js';

type Any = any;

const KUBE = join(packageRoot, 'deploy', 'kubernetes');
const VERSION = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version as string;
const WRITE = process.env.SLUICE_WRITE_MANIFESTS === '1';

/** Which generated file holds which kinds. */
const BASE_FILES: Record<string, string[]> = {
  'namespace.yaml': ['Namespace'],
  'rbac.yaml': ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'],
  'injector.yaml': ['Service', 'Deployment', 'PodDisruptionBudget'],
  'webhook.yaml': ['MutatingWebhookConfiguration'],
};
const CERT_MANAGER_FILES: Record<string, string[]> = { 'certificates.yaml': ['Issuer', 'Certificate'] };

const HEADER = `# Written from src/kube/manifests.ts by
# \`SLUICE_WRITE_MANIFESTS=1 npx vitest run test/kube/deploy.test.ts\` (after \`npm run build\`);
# the test fails while this file differs from what \`sluice install\` prints.
`;

function writeGenerated(dir: string, files: Record<string, string[]>, objects: KubeObject[]): void {
  for (const [file, kinds] of Object.entries(files)) {
    writeFileSync(join(dir, file), HEADER + manifestsYaml(objects.filter((o) => kinds.includes(o.kind))));
  }
}

function kustomization(dir: string): Any {
  return parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'));
}

/** The objects in a kustomization's own files (directories it names are not read). */
function ownResources(dir: string): Record<string, KubeObject[]> {
  const files = (kustomization(dir).resources as string[]).filter((resource) => resource.endsWith('.yaml'));
  return Object.fromEntries(files.map((file) => [file, parseManifests(readFileSync(join(dir, file), 'utf8'))]));
}

describe('deploy/kubernetes/base', () => {
  const dir = join(KUBE, 'base');
  let defaults: KubeObject[];
  beforeAll(async () => {
    defaults = await installed();
    if (WRITE) writeGenerated(dir, BASE_FILES, defaults);
  });

  it('its files hold exactly what `sluice install` prints with its defaults, grouped by kind', () => {
    const files = ownResources(dir);
    expect(Object.keys(files).sort()).toEqual(Object.keys(BASE_FILES).sort());
    for (const [file, objects] of Object.entries(files)) {
      for (const object of objects) expect(BASE_FILES[file], `${object.kind} in ${file}`).toContain(object.kind);
    }
    expect(byIdentity(Object.values(files).flat())).toEqual(byIdentity(defaults));
  });

  it('kubectl kustomize renders exactly the same objects', async () => {
    expect(byIdentity(await kustomize(dir))).toEqual(byIdentity(defaults));
  });

  it('names the image with the package version, in the namespace sluice install uses by default', () => {
    expect(kustomization(dir)).toMatchObject({ namespace: 'sluice-system', images: [{ name: 'sluice', newTag: VERSION }] });
  });

  it('an image set in an overlay (as `kustomize edit set image` writes it) reaches the container and SLUICE_IMAGE', async () => {
    const overlay = mkdtempSync(join(tmpdir(), 'sluice-overlay-'));
    writeFileSync(
      join(overlay, 'kustomization.yaml'),
      `resources: [${JSON.stringify(relative(overlay, dir))}]\nimages:\n  - name: sluice\n    newName: registry.example.com/team/sluice\n    newTag: 0.9.0\n`,
    );
    const container = single(await kustomize(overlay), 'Deployment').spec.template.spec.containers[0];
    expect(container.image).toBe('registry.example.com/team/sluice:0.9.0');
    expect(container.env).toContainEqual({ name: 'SLUICE_IMAGE', value: 'registry.example.com/team/sluice:0.9.0' });
  });
});

describe('deploy/kubernetes/cert-manager', () => {
  const dir = join(KUBE, 'cert-manager');
  let withCertManager: KubeObject[];
  beforeAll(async () => {
    withCertManager = await installed('--cert-manager');
    if (WRITE) writeGenerated(dir, CERT_MANAGER_FILES, withCertManager);
  });

  it('certificates.yaml holds the cert-manager objects `sluice install --cert-manager` prints', () => {
    const certificates = ownResources(dir)['certificates.yaml']!;
    expect(byIdentity(certificates)).toEqual(byIdentity(withCertManager.filter((o) => o.apiVersion === 'cert-manager.io/v1')));
  });

  it('kubectl kustomize renders exactly what `sluice install --cert-manager` prints', async () => {
    const rendered = await kustomize(dir);
    expect(byIdentity(rendered)).toEqual(byIdentity(withCertManager));
    for (const object of rendered.filter(hasSchema)) validateKubeObject(object);
  });
});

describe('deploy/kubernetes/example', () => {
  const dir = join(KUBE, 'example');
  let objects: KubeObject[];
  beforeAll(async () => {
    objects = await kustomize(dir);
  });

  it('renders a namespace opted in to injection, a Redis, the policy, the Redis Secret and an app', () => {
    expect(objects.map((o) => `${o.kind} ${o.metadata.name}`).sort()).toEqual([
      'ConfigMap sluice-policy',
      'Deployment example-app',
      'Deployment redis',
      'Namespace sluice-example',
      'Secret sluice-redis',
      'Service redis',
    ]);
    expect(single(objects, 'Namespace').metadata.labels).toEqual({ 'sluice.dev/inject': 'enabled' });
    for (const object of objects.filter((o) => o.kind !== 'Namespace')) expect(object.metadata.namespace, object.kind).toBe('sluice-example');
  });

  it('every object fits its Kubernetes schema', () => {
    for (const object of objects) validateKubeObject(object);
  });

  it('every container runs unprivileged with a read-only root, and no probe is exec', () => {
    const containers = objects.filter((o) => o.kind === 'Deployment').flatMap((d: Any) => d.spec.template.spec.containers);
    expect(containers).toHaveLength(2);
    for (const container of containers) {
      expect(container.securityContext, container.name).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(container.securityContext.runAsUser, container.name).toBeGreaterThan(0);
    }
    expect(valuesOf(objects, 'exec')).toEqual([]);
  });

  it('the policy in the ConfigMap passes `sluice check`, and its store is the example Redis', () => {
    const policy = single(objects, 'ConfigMap', 'sluice-policy').data['policy.yaml'];
    expect(execFileSync(process.execPath, [CLI, 'check', writePolicy(policy)], { encoding: 'utf8' })).toMatch(/: ok, 1 resource\(s\)\n$/);
    expect(parse(policy).store.redis.url).toBe(single(objects, 'Secret', 'sluice-redis').stringData.url);
  });

  it("the Secret's url reaches the Redis pods through the Service", () => {
    const url = new URL(single(objects, 'Secret', 'sluice-redis').stringData.url);
    const service = single(objects, 'Service', 'redis');
    expect(url.protocol).toBe('redis:');
    expect(url.hostname).toBe(`${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`);
    const servicePort = service.spec.ports.find((p: Any) => p.port === Number(url.port));
    expect(servicePort).toBeDefined();
    const redis = single(objects, 'Deployment', 'redis').spec.template;
    for (const [key, value] of Object.entries(service.spec.selector)) expect(redis.metadata.labels[key]).toBe(value);
    expect(redis.spec.containers[0].ports).toContainEqual({ name: servicePort.targetPort, containerPort: 6379 });
  });

  it('Redis opts out of injection and says it is not for production', () => {
    expect(single(objects, 'Deployment', 'redis').spec.template.metadata.annotations).toEqual({ 'sluice.dev/inject': 'false' });
    expect(readFileSync(join(dir, 'redis.yaml'), 'utf8')).toMatch(/NOT FOR PRODUCTION/);
  });

  it('the app names the policy and the Redis Secret, and asks SLUICE_ADDR for a resource the policy has, with its keys', () => {
    const pod = single(objects, 'Deployment', 'example-app').spec.template;
    expect(pod.metadata.annotations).toMatchObject({ 'sluice.dev/policy': 'sluice-policy', 'sluice.dev/redis-secret': 'sluice-redis' });
    expect(pod.metadata.annotations['sluice.dev/inject']).toBeUndefined();
    const script = pod.spec.containers[0].args.join('\n');
    expect(script).toContain('"$SLUICE_ADDR" sluice.v1.RateLimiter/Acquire');
    const request = JSON.parse(/-d '([^']+)'/.exec(script)![1]!);
    const resource = parse(single(objects, 'ConfigMap', 'sluice-policy').data['policy.yaml']).resources.find((r: Any) => r.name === request.resource);
    expect(resource, request.resource).toBeDefined();
    expect(Object.keys(request.descriptors).sort()).toEqual([...resource.keys].sort());
  });
});
