// AdmissionReview v1 in, AdmissionReview v1 out. Whatever arrives, the answer allows the pod: a
// webhook that cannot make sense of a request must not block pods from being created. A request
// sluice will not patch is answered "allowed, unchanged", with a warning that kubectl shows.
import { inject, isObject, type InjectorOptions } from './inject.js';

const API_VERSION = 'admission.k8s.io/v1';

export interface ReviewAnswer {
  /** The AdmissionReview to send back. */
  review: Record<string, unknown>;
  /** For the log: the pod, and what was done. */
  namespace: string | undefined;
  pod: string | undefined;
  injected: boolean;
  reason: string | undefined;
}

/** `namespaceOptedIn`: the request came to /inject/namespace. */
export function answerReview(body: string, namespaceOptedIn: boolean, options: InjectorOptions): ReviewAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return unchanged(undefined, 'the body is not JSON');
  }
  if (!isObject(parsed)) return unchanged(undefined, 'the body is not a JSON object');
  const request = parsed.request;
  const uid = isObject(request) && typeof request.uid === 'string' && request.uid !== '' ? request.uid : undefined;
  if (parsed.apiVersion !== API_VERSION || parsed.kind !== 'AdmissionReview') {
    return unchanged(uid, `expected apiVersion ${API_VERSION}, kind AdmissionReview`);
  }
  if (!isObject(request)) return unchanged(undefined, 'the review has no request');
  if (uid === undefined) return unchanged(undefined, 'the request has no uid');
  if (typeof request.operation !== 'string') return unchanged(uid, 'the request has no operation');
  // Only a pod being created can be given a container: the API server refuses an update (or an
  // ephemeral container, or a status write) that adds one, and with it the change that was asked for.
  if (request.operation !== 'CREATE' || (request.subResource !== undefined && request.subResource !== '')) {
    const what = `${request.operation}${request.subResource ? ` of ${String(request.subResource)}` : ''}`;
    return { review: answer({ uid, allowed: true }), namespace: undefined, pod: undefined, injected: false, reason: `${what}: only pods being created are injected` };
  }
  const kind = request.kind;
  if (!isObject(kind) || kind.group !== '' || kind.version !== 'v1' || kind.kind !== 'Pod' || !isObject(request.object)) {
    return unchanged(uid, 'the request is not for a v1 Pod');
  }
  const pod = request.object;
  const metadata = isObject(pod.metadata) ? pod.metadata : {};
  const namespace = typeof request.namespace === 'string' && request.namespace !== '' ? request.namespace : typeof metadata.namespace === 'string' ? metadata.namespace : '';
  const name = [request.name, metadata.name, metadata.generateName].find((n): n is string => typeof n === 'string' && n !== '');
  const result = inject(pod, namespace, namespaceOptedIn, options);
  const response: Record<string, unknown> = { uid, allowed: true };
  if ('patch' in result) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(result.patch)).toString('base64');
  }
  if (result.warnings.length > 0) response.warnings = result.warnings;
  return {
    review: answer(response),
    namespace,
    pod: name,
    injected: 'patch' in result,
    reason: 'skip' in result ? result.skip : undefined,
  };
}

/** Allowed and unchanged; the warning goes back only when the uid lets the API server match it. */
function unchanged(uid: string | undefined, problem: string): ReviewAnswer {
  return {
    review: answer({ uid: uid ?? '', allowed: true, ...(uid ? { warnings: [`sluice: not injected, malformed AdmissionReview: ${problem}`] } : {}) }),
    namespace: undefined,
    pod: undefined,
    injected: false,
    reason: `malformed AdmissionReview: ${problem}`,
  };
}

function answer(response: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: API_VERSION, kind: 'AdmissionReview', response };
}
