// The pod annotations that steer injection, read and checked in one place. Every value is checked
// before anything is injected: a pod with a wrong value is left as it is and the warning names the
// annotation, because a sidecar built from a guess would fail later, in the pod, out of sight.
import { LOG_LEVELS } from '../log.js';

export const ANNOTATION = {
  inject: 'sluice.dev/inject',
  status: 'sluice.dev/status',
  policy: 'sluice.dev/policy',
  image: 'sluice.dev/image',
  port: 'sluice.dev/port',
  adminPort: 'sluice.dev/admin-port',
  cpuRequest: 'sluice.dev/cpu-request',
  memoryLimit: 'sluice.dev/memory-limit',
  logLevel: 'sluice.dev/log-level',
  redisSecret: 'sluice.dev/redis-secret',
  nativeSidecar: 'sluice.dev/native-sidecar',
} as const;

/** The marker value of sluice.dev/status on a pod that has the sidecar. */
export const INJECTED = 'injected';

const DEFAULTS = {
  policyConfigMap: 'sluice-policy',
  port: 50051,
  adminPort: 9464,
  // A sidecar that mostly waits on Redis: a twentieth of a core is plenty to be scheduled with.
  cpuRequest: '50m',
  // The image runs node with --max-old-space-size=128: the heap, plus code, buffers and sockets.
  memoryLimit: '256Mi',
  logLevel: 'info',
} as const;


/** What the annotations ask for, every value checked. */
export interface SidecarSettings {
  policyConfigMap: string;
  image: string;
  port: number;
  adminPort: number;
  cpuRequest: string;
  memoryLimit: string;
  logLevel: string;
  /** Secret with key `url` (and optional `password`); null: the policy file's store. */
  redisSecret: string | null;
  /** true: an init container with restartPolicy Always (Kubernetes >= 1.29); false: a plain container. */
  native: boolean;
}

export type Settings = { ok: true; settings: SidecarSettings } | { ok: false; problems: string[] };

/**
 * Settings from the pod's annotations. `takenPorts` maps the ports the pod's containers declare
 * to the container that declares them: sluice must not take one of them.
 */
export function readSettings(annotations: Readonly<Record<string, string>>, defaultImage: string, takenPorts: ReadonlyMap<number, string>): Settings {
  const problems: string[] = [];
  const value = <T>(key: string, fallback: T, check: (text: string) => string | null, convert: (text: string) => T): T => {
    const text = annotations[key];
    if (text === undefined) return fallback;
    const problem = check(text);
    if (problem === null) return convert(text);
    problems.push(`${key}: ${quoted(text)} ${problem}`);
    return fallback;
  };
  const same = (text: string) => text;
  const settings: SidecarSettings = {
    policyConfigMap: value(ANNOTATION.policy, DEFAULTS.policyConfigMap, objectNameProblem, same),
    image: value(ANNOTATION.image, defaultImage, imageProblem, same),
    port: value(ANNOTATION.port, DEFAULTS.port, portProblem, Number),
    adminPort: value(ANNOTATION.adminPort, DEFAULTS.adminPort, portProblem, Number),
    cpuRequest: value(ANNOTATION.cpuRequest, DEFAULTS.cpuRequest, quantityProblem, same),
    memoryLimit: value(ANNOTATION.memoryLimit, DEFAULTS.memoryLimit, quantityProblem, same),
    logLevel: value(ANNOTATION.logLevel, DEFAULTS.logLevel, (text) => ((LOG_LEVELS as readonly string[]).includes(text) ? null : `is not one of ${LOG_LEVELS.join(', ')}`), same),
    redisSecret: value(ANNOTATION.redisSecret, null, objectNameProblem, same),
    native: value(ANNOTATION.nativeSidecar, true, booleanProblem, (text) => text === 'true'),
  };
  if (settings.port === settings.adminPort) {
    problems.push(`${ANNOTATION.port} and ${ANNOTATION.adminPort} are both ${settings.port}: the gRPC and admin ports must differ`);
  }
  for (const [key, port] of [[ANNOTATION.port, settings.port], [ANNOTATION.adminPort, settings.adminPort]] as const) {
    const owner = takenPorts.get(port);
    if (owner !== undefined) problems.push(`${key}: ${port} is already a port of container "${owner}"; set ${key} to a free one`);
  }
  return problems.length === 0 ? { ok: true, settings } : { ok: false, problems };
}

/** Characters of a wrong value repeated in a warning: the API server cuts warnings over 256. */
const QUOTED_CHARS = 40;

/** The value as a warning shows it: quoted, and only its start when it is long. */
export function quoted(text: string): string {
  return JSON.stringify(text.length > QUOTED_CHARS ? `${text.slice(0, QUOTED_CHARS)}...` : text);
}

/** Exactly "true" or "false": anything else is more likely a typo than a choice. */
export function booleanProblem(text: string): string | null {
  return text === 'true' || text === 'false' ? null : 'must be "true" or "false"';
}

function portProblem(text: string): string | null {
  return /^[1-9]\d{0,4}$/.test(text) && Number(text) <= 65535 ? null : 'is not a port number from 1 to 65535';
}

// A Kubernetes quantity (resource.Quantity): a positive decimal with an optional binary, decimal
// or exponent suffix, e.g. 50m, 0.5, 256Mi, 1G, 1e3.
const QUANTITY = /^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

function quantityProblem(text: string): string | null {
  if (!QUANTITY.test(text)) return 'is not a Kubernetes quantity (such as 50m, 0.5, 256Mi)';
  return /[1-9]/.test(text.replace(/[eE][+-]?\d+$/, '')) ? null : 'must be more than zero';
}

// A DNS-1123 subdomain: what ConfigMap and Secret names must be.
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isObjectName(text: string): boolean {
  return text.length <= 253 && DNS_SUBDOMAIN.test(text);
}

function objectNameProblem(text: string): string | null {
  return isObjectName(text) ? null : 'is not a valid ConfigMap or Secret name (lower-case letters, digits, "-" and ".")';
}

// An image reference as the container runtime parses it: [registry[:port]/]path[:tag][@digest].
const IMAGE =
  /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$/;

export function isImageReference(text: string): boolean {
  return text.length <= 512 && IMAGE.test(text);
}

function imageProblem(text: string): string | null {
  return isImageReference(text) ? null : 'is not an image reference (such as registry.example.com/sluice:1.0)';
}
