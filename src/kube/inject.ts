// Whether a pod gets the sidecar, and the JSON patch that adds it. Pure: a pod object in, a patch
// or the reason for leaving the pod alone out.
import { escapePathComponent, type Operation } from 'fast-json-patch';
import { ANNOTATION, INJECTED, booleanProblem, quoted, readSettings, type SidecarSettings } from './annotations.js';
import { CONTAINER_NAME, MAX_STOP_DELAY_MS, POLICY_VOLUME, policyVolume, sidecarAddress, sidecarContainer } from './sidecar-container.js';

export interface InjectorOptions {
  /** The injector's own namespace: its pods never get the sidecar. */
  namespace: string;
  /** The image injected when a pod has no sluice.dev/image annotation. */
  defaultImage: string;
}

export type Injection = { patch: Operation[]; warnings: string[] } | { skip: string; warnings: string[] };

/** Never injected, whatever their labels say: the cluster's own pods. */
const SYSTEM_NAMESPACES = ['kube-system', 'kube-public'];

/** Kubernetes' default terminationGracePeriodSeconds. */
const DEFAULT_GRACE_SECONDS = 30;
/** Of the grace period, what the classic sidecar leaves itself to drain after the app is gone. */
const DRAIN_SECONDS = 5;

const PROMETHEUS_KEYS = ['prometheus.io/scrape', 'prometheus.io/port', 'prometheus.io/path'];
const DEFAULT_CONTAINER = 'kubectl.kubernetes.io/default-container';

type Json = Record<string, any>;

/**
 * `namespaceOptedIn`: the namespace carries the label sluice.dev/inject=enabled (the webhook at
 * /inject/namespace sees only such namespaces), so the pod is injected unless it opts out.
 */
export function inject(pod: unknown, namespace: string, namespaceOptedIn: boolean, options: InjectorOptions): Injection {
  const shape = shapeProblem(pod);
  if (shape !== null) return { skip: `not a pod sluice can read: ${shape}`, warnings: [notInjected(`the pod cannot be read: ${shape}`)] };
  const { metadata, spec } = pod as Json;
  if (SYSTEM_NAMESPACES.includes(namespace) || namespace === options.namespace) return { skip: `namespace ${namespace} is never injected`, warnings: [] };
  const annotations: Record<string, string> = metadata?.annotations ?? {};

  const wanted = annotations[ANNOTATION.inject];
  if (wanted !== undefined && booleanProblem(wanted) !== null) {
    return { skip: `bad ${ANNOTATION.inject}`, warnings: [notInjected(`${ANNOTATION.inject}: ${quoted(wanted)} ${booleanProblem(wanted)}`)] };
  }
  if (namespaceOptedIn ? wanted === 'false' : wanted !== 'true') {
    return { skip: namespaceOptedIn ? `opted out by ${ANNOTATION.inject}: "false"` : `not opted in (no ${ANNOTATION.inject}: "true")`, warnings: [] };
  }
  const containers: Json[] = spec.containers;
  const initContainers: Json[] = spec.initContainers ?? [];
  if (annotations[ANNOTATION.status] === INJECTED || [...containers, ...initContainers].some((c) => c.name === CONTAINER_NAME)) {
    return { skip: 'already injected', warnings: [] };
  }
  if (spec.hostNetwork === true) {
    // The pod's loopback is the node's: a second such pod on the node could not bind sluice's
    // ports, and every process on the node could spend this pod's budget.
    return { skip: 'hostNetwork', warnings: [notInjected("the pod uses hostNetwork: sluice's ports would be the node's, shared with every pod on it")] };
  }
  const read = readSettings(annotations, options.defaultImage, declaredPorts([...initContainers, ...containers]));
  if (!read.ok) return { skip: 'bad annotations', warnings: read.problems.map(notInjected) };
  if ((spec.volumes ?? []).some((v: Json) => v.name === POLICY_VOLUME)) {
    return { skip: `volume ${POLICY_VOLUME} taken`, warnings: [notInjected(`the pod already has a volume named ${POLICY_VOLUME}`)] };
  }
  return { patch: patchFor(pod as Json, read.settings), warnings: [] };
}

function notInjected(problem: string): string {
  return `sluice: not injected, ${problem}`;
}

function patchFor(pod: Json, settings: SidecarSettings): Operation[] {
  const { metadata, spec } = pod;
  const ops: Operation[] = [];
  const address = { name: 'SLUICE_ADDR', value: sidecarAddress(settings) };
  // Env first, at the indexes the containers have before sluice is inserted in front of them.
  // Init containers can reach a native sidecar (it starts before them); the classic one starts
  // only after every init container has finished.
  const callers = settings.native ? (['initContainers', 'containers'] as const) : (['containers'] as const);
  for (const field of callers) {
    (spec[field] ?? []).forEach((container: Json, i: number) => {
      const env: Json[] | undefined = Array.isArray(container.env) ? container.env : undefined;
      if (env?.some((e) => e?.name === 'SLUICE_ADDR')) return;
      // First: Kubernetes expands $(SLUICE_ADDR) only in the entries that come after it.
      ops.push(env ? add(`/spec/${field}/${i}/env/0`, address) : add(`/spec/${field}/${i}/env`, [address]));
    });
  }
  ops.push(Array.isArray(spec.volumes) ? add('/spec/volumes/-', policyVolume(settings)) : add('/spec/volumes', [policyVolume(settings)]));
  if (settings.native) {
    // First of the init containers: Kubernetes starts them in order and waits for a native
    // sidecar's startup probe, so every init container after it, and the app, find it answering.
    const container = sidecarContainer(settings, null);
    ops.push(Array.isArray(spec.initContainers) ? add('/spec/initContainers/0', container) : add('/spec/initContainers', [container]));
  } else {
    ops.push(add('/spec/containers/0', sidecarContainer(settings, stopDelay(spec.terminationGracePeriodSeconds))));
  }
  const existing: Record<string, string> = metadata?.annotations ?? {};
  const added: Record<string, string> = { [ANNOTATION.status]: INJECTED };
  // kubectl logs and exec pick the first container unless the pod names another: the app's, not sluice's.
  if (!settings.native && !(DEFAULT_CONTAINER in existing)) added[DEFAULT_CONTAINER] = spec.containers[0].name;
  // Scrape annotations only on a pod that sets none: one that has them points them at its app.
  if (!PROMETHEUS_KEYS.some((key) => key in existing)) {
    Object.assign(added, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(settings.adminPort), 'prometheus.io/path': '/metrics' });
  }
  if (metadata === undefined) ops.push(add('/metadata', { annotations: added }));
  else if (metadata.annotations === undefined || metadata.annotations === null) ops.push(add('/metadata/annotations', added));
  else for (const [key, value] of Object.entries(added)) ops.push(add(`/metadata/annotations/${escapePathComponent(key)}`, value));
  return ops;
}

function add(path: string, value: unknown): Operation {
  return { op: 'add', path, value };
}

/**
 * How long the classic sidecar keeps answering after SIGTERM: the grace period less the time it
 * needs to drain, at least a second, at most what `sluice serve` accepts. Kubelet sends SIGTERM
 * to every container at once, and the app may still call sluice while it finishes its own work.
 */
function stopDelay(graceSeconds: unknown): string {
  const grace = typeof graceSeconds === 'number' && Number.isFinite(graceSeconds) ? graceSeconds : DEFAULT_GRACE_SECONDS;
  return `${Math.min(MAX_STOP_DELAY_MS / 1_000, Math.max(1, Math.floor(grace) - DRAIN_SECONDS))}s`;
}

/** Ports the containers declare, with the container that declares each. */
function declaredPorts(containers: Json[]): Map<number, string> {
  const ports = new Map<number, string>();
  for (const container of containers) {
    for (const port of container.ports ?? []) if (typeof port?.containerPort === 'number') ports.set(port.containerPort, container.name);
  }
  return ports;
}

/** What keeps this pod from being patched safely, or null when it has the shape of a pod. */
function shapeProblem(pod: unknown): string | null {
  if (!isObject(pod)) return 'the object is not a JSON object';
  if (pod.metadata !== undefined && !isObject(pod.metadata)) return 'metadata is not an object';
  const annotations = pod.metadata?.annotations;
  if (annotations !== undefined && annotations !== null && (!isObject(annotations) || Object.values(annotations).some((v) => typeof v !== 'string'))) {
    return 'metadata.annotations is not a map of strings';
  }
  if (!isObject(pod.spec)) return 'spec is not an object';
  if (!Array.isArray(pod.spec.containers) || pod.spec.containers.length === 0) return 'spec.containers is not a list of containers';
  for (const field of ['containers', 'initContainers', 'volumes'] as const) {
    const list = pod.spec[field];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list) || !list.every((item) => isObject(item) && typeof item.name === 'string')) return `spec.${field} is not a list of named objects`;
    for (const item of list) {
      for (const inner of ['env', 'ports'] as const) {
        if (item[inner] !== undefined && item[inner] !== null && !Array.isArray(item[inner])) return `spec.${field}[${item.name}].${inner} is not a list`;
      }
    }
  }
  return null;
}

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
