// `sluice install`: the built CLI's output, parsed, checked against Kubernetes' schemas and
// against the contract the injector is built to (names, webhooks, least-privilege RBAC).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KubeObject } from '../../src/kube/manifests.js';
import { packageRoot } from '../../src/paths.js';
import { USAGE } from '../../src/cli/usage.js';
import { installed, single, sluiceInstall, valuesOf } from '../support/kube-manifests.js';
import { hasSchema, validateKubeObject } from '../support/kube-schema.js';

const LABELS = { 'app.kubernetes.io/name': 'sluice-injector', 'app.kubernetes.io/part-of': 'sluice' };
const SANS = (ns: string) => [`sluice-injector.${ns}.svc`, `sluice-injector.${ns}.svc.cluster.local`, `sluice-injector.${ns}`, 'sluice-injector'];

// Loose shapes for reading the parsed objects; the schema check has already vouched for them.
type Any = any;

const VERSION = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version as string;

const find = (objects: KubeObject[], kind: string, name = 'sluice-injector'): Any => single(objects, kind, name);

function injector(objects: KubeObject[]): Any {
  const containers = find(objects, 'Deployment').spec.template.spec.containers;
  expect(containers).toHaveLength(1);
  return containers[0];
}

function expectValid(objects: KubeObject[]): void {
  for (const object of objects.filter(hasSchema)) validateKubeObject(object);
}

describe('sluice install (defaults)', () => {
  let objects: KubeObject[];
  beforeAll(async () => {
    objects = await installed();
  });

  it('prints the injector and what it needs, in an order kubectl can apply, the webhook last', () => {
    expect(objects.map((o) => `${o.kind} ${o.metadata.name}`)).toEqual([
      'Namespace sluice-system',
      'ServiceAccount sluice-injector',
      'Role sluice-injector',
      'RoleBinding sluice-injector',
      'ClusterRole sluice-injector',
      'ClusterRoleBinding sluice-injector',
      'Service sluice-injector',
      'Deployment sluice-injector',
      'PodDisruptionBudget sluice-injector',
      'MutatingWebhookConfiguration sluice-injector',
    ]);
  });

  it('every object fits its Kubernetes schema', () => {
    expect(objects.every(hasSchema)).toBe(true);
    expectValid(objects);
  });

  it('the schema check is live: it refuses a Deployment with a wrong type and a missing name', () => {
    const broken = structuredClone(find(objects, 'Deployment'));
    broken.spec.replicas = 'two';
    delete broken.spec.template.spec.containers[0].name;
    expect(() => validateKubeObject(broken)).toThrow(/replicas must be integer.*must have required property name/);
  });

  it('namespaced objects live in sluice-system; every object but the Namespace carries the contract labels', () => {
    for (const object of objects) {
      const clusterScoped = ['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration'].includes(object.kind);
      expect(object.metadata.namespace, object.kind).toBe(clusterScoped ? undefined : 'sluice-system');
      if (object.kind !== 'Namespace') expect(object.metadata.labels, object.kind).toEqual(LABELS);
    }
  });

  it('the namespace enforces the restricted Pod Security level and carries the name label the webhooks leave out', () => {
    expect(find(objects, 'Namespace', 'sluice-system').metadata.labels).toEqual({
      'app.kubernetes.io/part-of': 'sluice',
      'kubernetes.io/metadata.name': 'sluice-system',
      'pod-security.kubernetes.io/enforce': 'restricted',
    });
    for (const webhook of find(objects, 'MutatingWebhookConfiguration').webhooks) {
      expect(webhook.namespaceSelector.matchExpressions).toContainEqual({
        key: 'kubernetes.io/metadata.name',
        operator: 'NotIn',
        values: ['kube-system', 'kube-public', 'sluice-system'],
      });
    }
  });

  it('RBAC is exactly the contract: its Secret by name (create cannot be named), its webhook configuration by name', () => {
    expect(find(objects, 'Role').rules).toEqual([
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['sluice-injector-tls'], verbs: ['get', 'update'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
    ]);
    expect(find(objects, 'ClusterRole').rules).toEqual([
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], resourceNames: ['sluice-injector'], verbs: ['get', 'patch'] },
    ]);
    const rules = [...find(objects, 'Role').rules, ...find(objects, 'ClusterRole').rules];
    for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames']) expect(valuesOf(rules, field).flat()).not.toContain('*');
    expect(valuesOf(objects, 'nonResourceURLs')).toEqual([]);
    for (const rule of rules) if (!rule.verbs.includes('create')) expect(rule.resourceNames, JSON.stringify(rule)).toBeDefined();
    const subject = { kind: 'ServiceAccount', name: 'sluice-injector', namespace: 'sluice-system' };
    expect(find(objects, 'RoleBinding')).toMatchObject({ roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'sluice-injector' }, subjects: [subject] });
    expect(find(objects, 'ClusterRoleBinding')).toMatchObject({ roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'sluice-injector' }, subjects: [subject] });
    expect(find(objects, 'Deployment').spec.template.spec).toMatchObject({ serviceAccountName: 'sluice-injector', automountServiceAccountToken: true });
  });

  it('the injector runs unprivileged: non-root uid 1000, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    expect(injector(objects).securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 1000,
      runAsGroup: 1000,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const pod = find(objects, 'Deployment').spec.template.spec;
    expect(valuesOf(pod, 'privileged')).toEqual([]);
    expect(valuesOf(pod, 'hostNetwork')).toEqual([]);
    expect(valuesOf(pod, 'hostPath')).toEqual([]);
  });

  it('probes are HTTPS GETs on the webhook port, never exec', () => {
    const container = injector(objects);
    expect(container.readinessProbe.httpGet).toEqual({ scheme: 'HTTPS', port: 8443, path: '/readyz' });
    expect(container.livenessProbe.httpGet).toEqual({ scheme: 'HTTPS', port: 8443, path: '/healthz' });
    expect(valuesOf(objects, 'exec')).toEqual([]);
  });

  it('the injector serves on :8443 (every interface), learns its namespace from the downward API, and injects its own image', () => {
    const container = injector(objects);
    expect(container.image).toBe(`sluice:${VERSION}`);
    expect(container.args).toEqual(['inject', '--listen', ':8443']);
    expect(container.env).toEqual([
      { name: 'SLUICE_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'SLUICE_IMAGE', value: container.image },
    ]);
    expect(container.ports).toEqual([{ name: 'https', containerPort: 8443 }]);
    expect(container.resources.requests).toHaveProperty('cpu');
    expect(container.resources.requests).toHaveProperty('memory');
    expect(container.resources.limits).toHaveProperty('memory');
    expect(valuesOf(objects, 'volumes')).toEqual([]);
  });

  it('stays available: 2 replicas spread over nodes, a rollout that never drops one, and a PodDisruptionBudget', () => {
    const deployment = find(objects, 'Deployment');
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    const podLabels = deployment.spec.template.metadata.labels;
    expect(podLabels).toEqual(LABELS);
    expect(deployment.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'sluice-injector' });
    expect(deployment.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution).toEqual([
      { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: deployment.spec.selector.matchLabels } } },
    ]);
    const pdb = find(objects, 'PodDisruptionBudget');
    expect(pdb.spec).toEqual({ minAvailable: 1, selector: { matchLabels: deployment.spec.selector.matchLabels } });
    expect(deployment.spec.template.spec.priorityClassName).toBeUndefined();
  });

  it('the Service sends port 443 (https) to the injector pods on 8443', () => {
    const service = find(objects, 'Service');
    expect(service.spec.ports).toEqual([{ name: 'https', port: 443, targetPort: 8443 }]);
    const podLabels = find(objects, 'Deployment').spec.template.metadata.labels;
    for (const [key, value] of Object.entries(service.spec.selector)) expect(podLabels[key]).toBe(value);
  });

  it('two webhooks as the contract says: opted-in namespaces to /inject/namespace, every other namespace to /inject', () => {
    const configuration = find(objects, 'MutatingWebhookConfiguration');
    const common = {
      rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
      failurePolicy: 'Ignore',
      matchPolicy: 'Equivalent',
      reinvocationPolicy: 'Never',
      sideEffects: 'None',
      admissionReviewVersions: ['v1'],
      timeoutSeconds: 5,
    };
    const notHere = { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', 'sluice-system'] };
    const service = (path: string) => ({ service: { namespace: 'sluice-system', name: 'sluice-injector', port: 443, path } });
    expect(configuration.webhooks).toEqual([
      {
        name: 'namespace.inject.sluice.dev',
        clientConfig: service('/inject/namespace'),
        namespaceSelector: { matchExpressions: [{ key: 'sluice.dev/inject', operator: 'In', values: ['enabled'] }, notHere] },
        ...common,
      },
      {
        name: 'pod.inject.sluice.dev',
        clientConfig: service('/inject'),
        namespaceSelector: { matchExpressions: [{ key: 'sluice.dev/inject', operator: 'NotIn', values: ['enabled'] }, notHere] },
        ...common,
      },
    ]);
    // The injector writes the caBundle; re-applying must not blank it.
    expect(valuesOf(configuration, 'caBundle')).toEqual([]);
    expect(configuration.metadata.annotations).toBeUndefined();
  });
});

describe('sluice install flags', () => {
  it('--failure-policy Fail makes both webhooks fail closed', async () => {
    const webhooks = find(await installed('--failure-policy', 'Fail'), 'MutatingWebhookConfiguration').webhooks;
    expect(webhooks.map((w: Any) => w.failurePolicy)).toEqual(['Fail', 'Fail']);
  });

  it('--namespace moves every reference: objects, binding subjects, webhook services and the namespace left out', async () => {
    const objects = await installed('--namespace', 'rate-limits');
    expectValid(objects);
    const text = JSON.stringify(objects);
    expect(text).not.toContain('sluice-system');
    expect(find(objects, 'Namespace', 'rate-limits').metadata.labels['kubernetes.io/metadata.name']).toBe('rate-limits');
    for (const object of objects.filter((o) => o.metadata.namespace !== undefined)) expect(object.metadata.namespace).toBe('rate-limits');
    expect(valuesOf(objects, 'subjects').flat()).toEqual([
      { kind: 'ServiceAccount', name: 'sluice-injector', namespace: 'rate-limits' },
      { kind: 'ServiceAccount', name: 'sluice-injector', namespace: 'rate-limits' },
    ]);
    for (const webhook of find(objects, 'MutatingWebhookConfiguration').webhooks) {
      expect(webhook.clientConfig.service.namespace).toBe('rate-limits');
      expect(webhook.namespaceSelector.matchExpressions[1].values).toEqual(['kube-system', 'kube-public', 'rate-limits']);
    }
  });

  it('--image sets the injector image and the sidecar image it injects', async () => {
    const container = injector(await installed('--image', 'registry.example.com/sluice@sha256:0123abcd'));
    expect(container.image).toBe('registry.example.com/sluice@sha256:0123abcd');
    expect(container.env).toContainEqual({ name: 'SLUICE_IMAGE', value: 'registry.example.com/sluice@sha256:0123abcd' });
  });

  it('--help prints the usage, with install and its flags, and exits 0', async () => {
    const exit = await sluiceInstall('--help');
    expect(exit.code).toBe(0);
    expect(exit.stdout).toContain('install [--namespace NS] [--image IMAGE] [--failure-policy Ignore|Fail] [--cert-manager]');
  });

  it.each([
    [['--namespace', 'Sluice'], '--namespace "Sluice": must be a DNS-1123 label'],
    [['--namespace=sluice-'], '--namespace "sluice-": must be a DNS-1123 label'],
    [['--namespace', 'a'.repeat(64)], 'must be a DNS-1123 label: 1 to 63'],
    [['--namespace='], '--namespace "": must be a DNS-1123 label'],
    [['--failure-policy', 'ignore'], '--failure-policy "ignore": must be Ignore or Fail'],
    [['--failure-policy', 'Open'], '--failure-policy "Open": must be Ignore or Fail'],
    [['--image='], '--image "": must be an image reference'],
    [['--image', 'sluice: 1'], '--image "sluice: 1": must be an image reference'],
  ])('%j exits 2 with "%s" and prints no manifest', async (args, message) => {
    const exit = await sluiceInstall(...args);
    expect(exit.code).toBe(2);
    expect(exit.stderr).toMatch(/^sluice install: /);
    expect(exit.stderr).toContain(message);
    expect(exit.stderr.trim().split('\n')).toHaveLength(1);
    expect(exit.stdout).toBe('');
  });

  it.each([
    [['--image'], 'sluice install: --image needs a value'],
    [['--replicas', '3'], 'sluice install: unknown option --replicas'],
    [['sluice-system'], 'sluice install: unexpected argument "sluice-system"'],
  ])('%j exits 2 with "%s", then the usage, and prints no manifest', async (args, message) => {
    const exit = await sluiceInstall(...args);
    expect(exit.code).toBe(2);
    expect(exit.stderr).toBe(`${message}\n\n${USAGE}`);
    expect(exit.stdout).toBe('');
  });
});

describe('sluice install --cert-manager', () => {
  let objects: KubeObject[];
  beforeAll(async () => {
    objects = await installed('--cert-manager', '--namespace', 'rate-limits');
  });

  it('issues the serving certificate from a private CA instead of RBAC for the self-managed one', () => {
    expect(objects.map((o) => `${o.kind} ${o.metadata.name}`)).toEqual([
      'Namespace rate-limits',
      'ServiceAccount sluice-injector',
      'Issuer sluice-injector-selfsigned',
      'Certificate sluice-injector-ca',
      'Issuer sluice-injector-ca',
      'Certificate sluice-injector',
      'Service sluice-injector',
      'Deployment sluice-injector',
      'PodDisruptionBudget sluice-injector',
      'MutatingWebhookConfiguration sluice-injector',
    ]);
    expectValid(objects);
  });

  it('the injector gets no API rights and no token: it calls no API', () => {
    expect(objects.filter((o) => o.apiVersion.startsWith('rbac.authorization.k8s.io/'))).toEqual([]);
    expect(find(objects, 'Deployment').spec.template.spec.automountServiceAccountToken).toBe(false);
  });

  // cert-manager's kinds are custom resources, outside kubernetes-models: checked by hand against
  // cert-manager.io/v1's required fields and the references between them.
  it('the cert-manager chain: self-signed issuer -> CA certificate -> CA issuer -> serving certificate', () => {
    for (const object of objects.filter((o) => o.apiVersion === 'cert-manager.io/v1')) {
      expect(object.metadata).toEqual({ name: object.metadata.name, namespace: 'rate-limits', labels: LABELS });
    }
    const selfSigned = find(objects, 'Issuer', 'sluice-injector-selfsigned');
    expect(selfSigned.spec).toEqual({ selfSigned: {} });
    const ca = find(objects, 'Certificate', 'sluice-injector-ca');
    expect(ca.spec).toMatchObject({ isCA: true, commonName: expect.any(String), issuerRef: { name: 'sluice-injector-selfsigned', kind: 'Issuer', group: 'cert-manager.io' } });
    const caIssuer = find(objects, 'Issuer', 'sluice-injector-ca');
    expect(caIssuer.spec).toEqual({ ca: { secretName: ca.spec.secretName } });
    const serving = find(objects, 'Certificate');
    expect(serving.spec).toMatchObject({
      secretName: 'sluice-injector-tls',
      dnsNames: SANS('rate-limits'),
      usages: expect.arrayContaining(['server auth']),
      issuerRef: { name: 'sluice-injector-ca', kind: 'Issuer', group: 'cert-manager.io' },
    });
    expect(serving.spec.isCA).toBeUndefined();
    for (const certificate of [ca, serving]) {
      expect(certificate.spec.secretName).toMatch(/^[a-z0-9-]+$/);
      expect(['RSA', 'ECDSA', 'Ed25519']).toContain(certificate.spec.privateKey.algorithm);
    }
  });

  it('cert-manager injects the CA of the serving certificate into the webhooks', () => {
    const configuration = find(objects, 'MutatingWebhookConfiguration');
    expect(configuration.metadata.annotations).toEqual({ 'cert-manager.io/inject-ca-from': 'rate-limits/sluice-injector' });
    expect(valuesOf(configuration, 'caBundle')).toEqual([]);
    expect(configuration.webhooks.map((w: Any) => w.clientConfig.service.namespace)).toEqual(['rate-limits', 'rate-limits']);
  });

  it('the injector serves the mounted certificate and key', () => {
    const container = injector(objects);
    const pod = find(objects, 'Deployment').spec.template.spec;
    expect(pod.volumes).toEqual([{ name: 'tls', secret: { secretName: 'sluice-injector-tls' } }]);
    expect(container.volumeMounts).toEqual([{ name: 'tls', mountPath: '/etc/sluice-injector/tls', readOnly: true }]);
    expect(container.args).toEqual([
      'inject',
      '--listen',
      ':8443',
      '--tls-cert',
      '/etc/sluice-injector/tls/tls.crt',
      '--tls-key',
      '/etc/sluice-injector/tls/tls.key',
    ]);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(valuesOf(objects, 'exec')).toEqual([]);
  });
});
