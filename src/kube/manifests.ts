// What `sluice install` prints: the injector and everything it needs, as plain Kubernetes objects.
// Names, labels, webhooks and RBAC follow the Kubernetes contract in DESIGN.md exactly; the
// injector finds its Secret, Service and webhook configuration by these names.
import { stringify } from 'yaml';
import { restrictedSecurityContext } from './sidecar-container.js';

export type FailurePolicy = 'Ignore' | 'Fail';

export interface InstallOptions {
  /** Where the injector runs; the webhooks never inject pods here. */
  namespace: string;
  /** The injector's image, and the sidecar image injected by default. */
  image: string;
  failurePolicy: FailurePolicy;
  /** cert-manager issues the serving certificate instead of the injector's own CA. */
  certManager: boolean;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

const NAME = 'sluice-injector';
const TLS_SECRET = 'sluice-injector-tls';
const PORT = 8443;
const LABELS = { 'app.kubernetes.io/name': NAME, 'app.kubernetes.io/part-of': 'sluice' };
const SELECTOR = { 'app.kubernetes.io/name': NAME };
const TLS_DIR = '/etc/sluice-injector/tls';

/** The objects in the order they can be applied: the webhook last, once its Service exists. */
export function installManifests(options: InstallOptions): KubeObject[] {
  return [
    namespace(options),
    serviceAccount(options),
    ...(options.certManager ? certificates(options) : rbac(options)),
    service(options),
    deployment(options),
    disruptionBudget(options),
    webhookConfiguration(options),
  ];
}

/** Multi-document YAML, as `kubectl apply -f -` takes it. */
export function manifestsYaml(objects: KubeObject[]): string {
  // No anchors and aliases where two fields hold the same object: plain YAML reads better.
  return objects.map((object) => stringify(object, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');
}

function namespace({ namespace }: InstallOptions): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: namespace,
      labels: {
        'app.kubernetes.io/part-of': 'sluice',
        // The API server sets this label itself; the webhooks' namespaceSelectors leave out the
        // namespace that carries it, so the injector never depends on itself to start.
        'kubernetes.io/metadata.name': namespace,
        'pod-security.kubernetes.io/enforce': 'restricted',
      },
    },
  };
}

function meta(options: InstallOptions, name = NAME) {
  return { name, namespace: options.namespace, labels: { ...LABELS } };
}

function serviceAccount(options: InstallOptions): KubeObject {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(options) };
}

/** What the self-managed CA needs: its Secret, and the webhook configuration's caBundle. */
function rbac(options: InstallOptions): KubeObject[] {
  const subjects = [{ kind: 'ServiceAccount', name: NAME, namespace: options.namespace }];
  const clusterMeta = { name: NAME, labels: { ...LABELS } };
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta(options),
      rules: [
        { apiGroups: [''], resources: ['secrets'], resourceNames: [TLS_SECRET], verbs: ['get', 'update'] },
        // RBAC cannot narrow create by name: the name may not be known when it is authorized.
        { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(options),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: NAME },
      subjects,
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: clusterMeta,
      rules: [
        {
          apiGroups: ['admissionregistration.k8s.io'],
          resources: ['mutatingwebhookconfigurations'],
          resourceNames: [NAME],
          verbs: ['get', 'patch'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: clusterMeta,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: NAME },
      subjects,
    },
  ];
}

/** The names the API server may use to reach the Service, as the injector's own CA signs them. */
function serviceNames({ namespace }: InstallOptions): string[] {
  return [`${NAME}.${namespace}.svc`, `${NAME}.${namespace}.svc.cluster.local`, `${NAME}.${namespace}`, NAME];
}

/**
 * A private CA for the webhook alone: a self-signed issuer makes the CA, the CA issues the
 * serving certificate, and cert-manager's CA injector copies the CA into the webhooks.
 */
function certificates(options: InstallOptions): KubeObject[] {
  const issuerRef = (name: string) => ({ name, kind: 'Issuer', group: 'cert-manager.io' });
  const privateKey = { algorithm: 'ECDSA', size: 256 };
  return [
    { apiVersion: 'cert-manager.io/v1', kind: 'Issuer', metadata: meta(options, `${NAME}-selfsigned`), spec: { selfSigned: {} } },
    {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: meta(options, `${NAME}-ca`),
      spec: { isCA: true, commonName: `${NAME}-ca`, secretName: `${NAME}-ca`, privateKey, issuerRef: issuerRef(`${NAME}-selfsigned`) },
    },
    { apiVersion: 'cert-manager.io/v1', kind: 'Issuer', metadata: meta(options, `${NAME}-ca`), spec: { ca: { secretName: `${NAME}-ca` } } },
    {
      apiVersion: 'cert-manager.io/v1',
      kind: 'Certificate',
      metadata: meta(options),
      spec: {
        secretName: TLS_SECRET,
        dnsNames: serviceNames(options),
        usages: ['server auth', 'digital signature'],
        privateKey,
        issuerRef: issuerRef(`${NAME}-ca`),
      },
    },
  ];
}

function service(options: InstallOptions): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(options),
    spec: { selector: { ...SELECTOR }, ports: [{ name: 'https', port: 443, targetPort: PORT }] },
  };
}

function deployment(options: InstallOptions): KubeObject {
  // No host: every interface, IPv6 and IPv4, so the API server reaches it on any cluster's pod IPs.
  const args = ['inject', '--listen', `:${PORT}`];
  if (options.certManager) args.push('--tls-cert', `${TLS_DIR}/tls.crt`, '--tls-key', `${TLS_DIR}/tls.key`);
  // HTTPS on the webhook port itself: the kubelet does not check the certificate, and /readyz
  // answers 200 only once the injector holds a serving certificate.
  const probe = (path: string, periodSeconds: number) => ({ httpGet: { scheme: 'HTTPS', port: PORT, path }, periodSeconds });
  const container = {
    name: 'injector',
    image: options.image,
    args,
    env: [
      { name: 'SLUICE_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      // Pods without a sluice.dev/image annotation get the injector's own version.
      { name: 'SLUICE_IMAGE', value: options.image },
    ],
    ports: [{ name: 'https', containerPort: PORT }],
    readinessProbe: probe('/readyz', 5),
    livenessProbe: probe('/healthz', 10),
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    securityContext: restrictedSecurityContext(),
    ...(options.certManager ? { volumeMounts: [{ name: 'tls', mountPath: TLS_DIR, readOnly: true }] } : {}),
  };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(options),
    spec: {
      // Two replicas, never fewer while rolling: pods in opted-in namespaces keep being injected.
      replicas: 2,
      selector: { matchLabels: { ...SELECTOR } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: { ...LABELS } },
        spec: {
          serviceAccountName: NAME,
          // The self-managed CA reads and writes its Secret and the webhooks' caBundle; with
          // cert-manager the injector never calls the API, so it gets no token.
          automountServiceAccountToken: !options.certManager,
          affinity: {
            podAntiAffinity: {
              preferredDuringSchedulingIgnoredDuringExecution: [
                { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { ...SELECTOR } } } },
              ],
            },
          },
          containers: [container],
          ...(options.certManager ? { volumes: [{ name: 'tls', secret: { secretName: TLS_SECRET } }] } : {}),
        },
      },
    },
  };
}

function disruptionBudget(options: InstallOptions): KubeObject {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: meta(options),
    spec: { minAvailable: 1, selector: { matchLabels: { ...SELECTOR } } },
  };
}

/**
 * Two webhooks because an AdmissionReview carries no namespace labels: the API server picks the
 * webhook by the namespace's label, so the injector needs no API call on the admission path.
 * No caBundle: the injector (or cert-manager) writes it, and re-applying these manifests leaves
 * a field they do not name alone.
 */
function webhookConfiguration(options: InstallOptions): KubeObject {
  const notHere = { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', options.namespace] };
  const webhook = (name: string, path: string, optedIn: 'In' | 'NotIn') => ({
    name,
    clientConfig: { service: { namespace: options.namespace, name: NAME, port: 443, path } },
    rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
    namespaceSelector: { matchExpressions: [{ key: 'sluice.dev/inject', operator: optedIn, values: ['enabled'] }, notHere] },
    failurePolicy: options.failurePolicy,
    matchPolicy: 'Equivalent',
    reinvocationPolicy: 'Never',
    sideEffects: 'None',
    admissionReviewVersions: ['v1'],
    timeoutSeconds: 5,
  });
  const metadata: KubeObject['metadata'] = { name: NAME, labels: { ...LABELS } };
  if (options.certManager) metadata.annotations = { 'cert-manager.io/inject-ca-from': `${options.namespace}/${NAME}` };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata,
    webhooks: [webhook('namespace.inject.sluice.dev', '/inject/namespace', 'In'), webhook('pod.inject.sluice.dev', '/inject', 'NotIn')],
  };
}
