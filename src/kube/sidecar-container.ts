// The sluice container and its policy volume, as injected into a pod.
import type { SidecarSettings } from './annotations.js';

export const CONTAINER_NAME = 'sluice';
export const POLICY_VOLUME = 'sluice-policy';
/** The ConfigMap is mounted as a directory: kubelet updates a directory mount, never a subPath. */
const POLICY_DIR = '/etc/sluice';
const POLICY_KEY = 'policy.yaml';

/**
 * The longest SLUICE_STOP_DELAY `sluice serve` accepts. The classic sidecar's delay is capped at
 * it: a longer one would stop the sidecar from starting at all.
 */
export const MAX_STOP_DELAY_MS = 3_600_000;

/** The user the image runs as. */
const IMAGE_UID = 1000;

/**
 * What every container sluice writes runs under (the injected sidecar, the injector): the image's
 * own non-root user, a read-only root, no privilege escalation, no capabilities, RuntimeDefault.
 */
export function restrictedSecurityContext(): Json {
  // A new object each time: a patch or a manifest that is changed later must not change another.
  return {
    runAsNonRoot: true,
    runAsUser: IMAGE_UID,
    runAsGroup: IMAGE_UID,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

type Json = Record<string, unknown>;

/**
 * `stopDelay` (a duration such as "25s") is set for the classic form only: there kubelet stops
 * every container at once, and sluice must keep answering while the app finishes.
 */
export function sidecarContainer(settings: SidecarSettings, stopDelay: string | null): Json {
  const env: Json[] = [
    // The rate-limit API stays on the pod's loopback: on the pod IP, any pod could spend the budget.
    { name: 'SLUICE_LISTEN', value: `127.0.0.1:${settings.port}` },
    // The admin port is on every interface, IPv6 and IPv4 (no host), so that the kubelet's probes
    // and Prometheus reach it on IPv4, IPv6 and dual-stack clusters alike.
    { name: 'SLUICE_ADMIN', value: `:${settings.adminPort}` },
    { name: 'SLUICE_LOG_LEVEL', value: settings.logLevel },
  ];
  if (stopDelay !== null) env.push({ name: 'SLUICE_STOP_DELAY', value: stopDelay });
  if (settings.redisSecret !== null) {
    env.push(
      { name: 'SLUICE_REDIS_URL', valueFrom: { secretKeyRef: { name: settings.redisSecret, key: 'url' } } },
      { name: 'SLUICE_REDIS_PASSWORD', valueFrom: { secretKeyRef: { name: settings.redisSecret, key: 'password', optional: true } } },
    );
  }
  // HTTP probes on the admin port. Not gRPC probes: the kubelet probes the pod IP, and the gRPC
  // port is bound to 127.0.0.1 only. Not exec probes: each would start a second node process.
  const probe = (path: string) => ({ httpGet: { path, port: settings.adminPort } });
  return {
    name: CONTAINER_NAME,
    image: settings.image,
    args: ['serve', '--config', `${POLICY_DIR}/${POLICY_KEY}`],
    ...(settings.native ? { restartPolicy: 'Always' } : {}),
    ports: [
      { name: 'sluice-grpc', containerPort: settings.port, protocol: 'TCP' },
      { name: 'sluice-admin', containerPort: settings.adminPort, protocol: 'TCP' },
    ],
    env,
    resources: {
      requests: { cpu: settings.cpuRequest, memory: settings.memoryLimit },
      limits: { memory: settings.memoryLimit },
    },
    volumeMounts: [{ name: POLICY_VOLUME, mountPath: POLICY_DIR, readOnly: true }],
    // Native: the app starts only once this passes, so its first call finds sluice answering.
    startupProbe: { ...probe('/readyz'), periodSeconds: 1, failureThreshold: 30 },
    readinessProbe: { ...probe('/readyz'), periodSeconds: 5 },
    livenessProbe: { ...probe('/healthz'), periodSeconds: 10, failureThreshold: 3 },
    securityContext: restrictedSecurityContext(),
  };
}

export function policyVolume(settings: SidecarSettings): Json {
  return { name: POLICY_VOLUME, configMap: { name: settings.policyConfigMap } };
}

/** The address the app containers are given in SLUICE_ADDR. */
export function sidecarAddress(settings: SidecarSettings): string {
  return `127.0.0.1:${settings.port}`;
}
