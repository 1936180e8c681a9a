// A small Kubernetes API server over HTTPS for the injector's tests: just the Secret and
// MutatingWebhookConfiguration endpoints the injector calls, with the API's resourceVersion and
// 409 semantics and bearer-token auth. (No kube-apiserver can be installed here, so the real one
// is not available to test against.)
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsonpatch from 'fast-json-patch';
import { listenAdmin } from '../../src/admin/admin-server.js';
import type { TlsFiles } from './tls.js';

export interface ApiCall {
  method: string;
  path: string;
  status: number;
}

export interface KubeApiServer {
  host: string;
  port: number;
  /** A directory laid out as a pod's ServiceAccount mount: token and ca.crt. */
  serviceAccountDir: string;
  /** Stored objects by "namespace/name" (Secrets) and name (webhook configurations). */
  secrets: Map<string, any>;
  webhookConfigurations: Map<string, any>;
  calls: ApiCall[];
  /** While false, every call is refused with 403, as without RBAC. */
  authorized: boolean;
  /**
   * Holds Secret reads until this many are waiting, then answers them all at once: replicas that
   * start together then all find the same state, and race to write.
   */
  holdSecretReads: number;
  /** The environment a pod would have: KUBERNETES_SERVICE_HOST and _PORT. */
  env(): Record<string, string>;
  close(): Promise<void>;
}

const TOKEN = 'test-serviceaccount-token';

export async function startKubeApi(tls: TlsFiles): Promise<KubeApiServer> {
  const serviceAccountDir = mkdtempSync(join(tmpdir(), 'sluice-sa-'));
  writeFileSync(join(serviceAccountDir, 'token'), `${TOKEN}\n`);
  writeFileSync(join(serviceAccountDir, 'ca.crt'), readFileSync(tls.caFile));
  let version = 1;
  const api = {
    secrets: new Map<string, any>(),
    webhookConfigurations: new Map<string, any>(),
    calls: [] as ApiCall[],
    authorized: true,
    holdSecretReads: 0,
  };
  let held: (() => void)[] = [];
  const server: Server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, (req, res) => {
    readBody(req).then(async (body) => {
      if (api.holdSecretReads > 0 && req.method === 'GET' && /\/secrets\//.test(req.url ?? '')) {
        const released = new Promise<void>((resolve) => held.push(resolve));
        if (held.length >= api.holdSecretReads) {
          api.holdSecretReads = 0;
          for (const release of held) release();
          held = [];
        }
        await released;
      }
      const [status, answer] = handle(req, body);
      api.calls.push({ method: req.method ?? '', path: req.url ?? '', status });
      send(res, status, answer);
    });
  });

  const status = (code: number, reason: string, message: string): [number, object] => [code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message }];
  const stored = (object: any) => {
    const copy = structuredClone(object);
    copy.metadata = { ...copy.metadata, resourceVersion: String(++version) };
    return copy;
  };

  function handle(req: IncomingMessage, body: string): [number, object] {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return status(401, 'Unauthorized', 'Unauthorized');
    if (!api.authorized) return status(403, 'Forbidden', `forbidden: User "system:serviceaccount:sluice-system:sluice-injector" cannot ${req.method} ${req.url}`);
    const path = (req.url ?? '').split('?')[0]!;
    const secret = /^\/api\/v1\/namespaces\/([^/]+)\/secrets(?:\/([^/]+))?$/.exec(path);
    const webhook = /^\/apis\/admissionregistration\.k8s\.io\/v1\/mutatingwebhookconfigurations\/([^/]+)$/.exec(path);
    if (secret) {
      const [, namespace, name] = secret;
      const key = `${namespace}/${name}`;
      if (req.method === 'GET' && name) return api.secrets.has(key) ? [200, api.secrets.get(key)] : status(404, 'NotFound', `secrets "${name}" not found`);
      if (req.method === 'POST' && !name) {
        const object = JSON.parse(body);
        const created = `${namespace}/${object.metadata.name}`;
        if (api.secrets.has(created)) return status(409, 'AlreadyExists', `secrets "${object.metadata.name}" already exists`);
        api.secrets.set(created, stored({ ...object, metadata: { ...object.metadata, namespace } }));
        return [201, api.secrets.get(created)];
      }
      if (req.method === 'PUT' && name) {
        const object = JSON.parse(body);
        const current = api.secrets.get(key);
        if (!current) return status(404, 'NotFound', `secrets "${name}" not found`);
        if (object.metadata.resourceVersion !== current.metadata.resourceVersion) {
          return status(409, 'Conflict', `Operation cannot be fulfilled on secrets "${name}": the object has been modified; please apply your changes to the latest version and try again`);
        }
        api.secrets.set(key, stored(object));
        return [200, api.secrets.get(key)];
      }
    }
    if (webhook) {
      const [, name] = webhook;
      const current = api.webhookConfigurations.get(name!);
      if (!current) return status(404, 'NotFound', `mutatingwebhookconfigurations.admissionregistration.k8s.io "${name}" not found`);
      if (req.method === 'GET') return [200, current];
      if (req.method === 'PATCH') {
        if (req.headers['content-type'] !== 'application/json-patch+json') return status(415, 'UnsupportedMediaType', 'expected application/json-patch+json');
        try {
          const patched = jsonpatch.applyPatch(structuredClone(current), JSON.parse(body), true, false).newDocument;
          api.webhookConfigurations.set(name!, stored(patched));
        } catch (err) {
          return status(422, 'Invalid', `the patch could not be applied: ${(err as Error).message}`);
        }
        return [200, api.webhookConfigurations.get(name!)];
      }
    }
    return status(404, 'NotFound', `the server could not find the requested resource (${req.method} ${path})`);
  }

  const address = await listenAdmin(server, '127.0.0.1:0');
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return Object.assign(api, {
    host: '127.0.0.1',
    port,
    serviceAccountDir,
    env: () => ({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(port) }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}

/** The MutatingWebhookConfiguration the manifests install, with its caBundles still empty. */
export function webhookConfiguration(namespace: string): object {
  const webhook = (name: string, path: string, optedIn: boolean) => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    timeoutSeconds: 5,
    failurePolicy: 'Ignore',
    reinvocationPolicy: 'Never',
    matchPolicy: 'Equivalent',
    rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }],
    clientConfig: { service: { namespace, name: 'sluice-injector', port: 443, path }, caBundle: '' },
    namespaceSelector: {
      matchExpressions: [
        { key: 'sluice.dev/inject', operator: optedIn ? 'In' : 'NotIn', values: ['enabled'] },
        { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kube-public', namespace] },
      ],
    },
  });
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'sluice-injector', resourceVersion: '1' },
    webhooks: [webhook('namespace.inject.sluice.dev', '/inject/namespace', true), webhook('pod.inject.sluice.dev', '/inject', false)],
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function send(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
