// The few Kubernetes API calls the injector makes, over node:https with the pod's ServiceAccount:
// its Secret (get, create, update) and its MutatingWebhookConfiguration (get, patch).
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const SERVICEACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface Secret {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  type?: string;
  /** Values in base64, as the API keeps them. */
  data?: Record<string, string>;
}

export interface WebhookConfiguration {
  metadata: { name: string; resourceVersion?: string };
  webhooks?: { name: string; clientConfig?: { caBundle?: string } }[];
}

export interface JsonPatchOp {
  op: 'add' | 'replace' | 'test';
  path: string;
  value: unknown;
}

export interface KubeApi {
  /** null when there is none. */
  getSecret(namespace: string, name: string): Promise<Secret | null>;
  /** Fails with a 409 KubeApiError (AlreadyExists) when another made it first. */
  createSecret(namespace: string, secret: Secret): Promise<Secret>;
  /** Fails with a 409 KubeApiError (Conflict) when it changed since `secret.metadata.resourceVersion`. */
  updateSecret(namespace: string, secret: Secret): Promise<Secret>;
  getWebhookConfiguration(name: string): Promise<WebhookConfiguration>;
  patchWebhookConfiguration(name: string, patch: JsonPatchOp[]): Promise<WebhookConfiguration>;
}

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

/**
 * The API answers, in full, within this, or the call fails (and is tried again on the next
 * round). A deadline for the whole call, not for silence: an answer that trickles in must not
 * hold a certificate round forever.
 */
const TIMEOUT_MS = 10_000;
/** API answers are small; more than this is not an answer to these calls. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * The API server as a pod sees it: KUBERNETES_SERVICE_HOST and _PORT, the ServiceAccount token
 * and CA under `dir`. The token is read for every call: kubelet rotates it in place.
 */
export function inClusterApi(env: NodeJS.ProcessEnv, dir = SERVICEACCOUNT_DIR): KubeApi {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error('not in a Kubernetes pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (give --tls-cert and --tls-key to run outside a cluster)');
  let ca: Buffer;
  try {
    ca = readFileSync(join(dir, 'ca.crt'));
    readFileSync(join(dir, 'token'));
  } catch (err) {
    throw new Error(`cannot read the ServiceAccount's credentials in ${dir}: ${(err as Error).message}`);
  }
  const call = <T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        {
          hostname: host,
          port: Number(port),
          method,
          path,
          ca,
          headers: {
            authorization: `Bearer ${readFileSync(join(dir, 'token'), 'utf8').trim()}`,
            accept: 'application/json',
            ...(payload === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`${method} ${path}: answer over ${MAX_ANSWER_BYTES} bytes`));
            else chunks.push(chunk);
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: any;
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = undefined;
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300 && parsed !== undefined) resolve(parsed as T);
            else reject(new KubeApiError(status, parsed?.reason ?? '', `${method} ${path}: ${status} ${parsed?.message ?? text.slice(0, 200)}`));
          });
          res.on('error', reject);
        },
      );
      const deadline = setTimeout(() => req.destroy(new Error(`${method} ${path}: no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      req.once('close', () => clearTimeout(deadline));
      req.on('error', reject);
      req.end(payload);
    });
  const secrets = (namespace: string) => `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets`;
  const webhooks = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
  return {
    async getSecret(namespace, name) {
      try {
        return await call<Secret>('GET', `${secrets(namespace)}/${encodeURIComponent(name)}`);
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 404) return null;
        throw err;
      }
    },
    createSecret: (namespace, secret) => call<Secret>('POST', secrets(namespace), secret),
    updateSecret: (namespace, secret) => call<Secret>('PUT', `${secrets(namespace)}/${encodeURIComponent(secret.metadata.name)}`, secret),
    getWebhookConfiguration: (name) => call<WebhookConfiguration>('GET', `${webhooks}/${encodeURIComponent(name)}`),
    patchWebhookConfiguration: (name, patch) => call<WebhookConfiguration>('PATCH', `${webhooks}/${encodeURIComponent(name)}`, patch, 'application/json-patch+json'),
  };
}
