// `sluice inject` as a real process over real HTTPS, against the small Kubernetes API server of
// test/support/kube-api.ts: the CA it makes, keeps in the Secret and writes into the caBundle is
// the only CA the test's client trusts, as the API server would.
import { request } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthority, issueServing, parseCertificate, serviceNames, splitPem } from '../../src/kube/certificates.js';
import { toSecretData } from '../../src/kube/certificate-secret.js';
import { startWebhook, type Webhook } from '../../src/kube/webhook.js';
import { expectRecordedAnswer, FIXTURES, INJECTOR_OPTIONS, reviewText } from '../support/admission.js';
import { startKubeApi, webhookConfiguration, type KubeApiServer } from '../support/kube-api.js';
import { waitFor } from '../support/redis-server.js';
import { startCli, type CliProcess } from '../support/sidecar.js';
import { installed, single } from '../support/kube-manifests.js';
import { closesIn } from '../support/sockets.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';

const NAMESPACE = 'sluice-system';
const SECRET = `${NAMESPACE}/sluice-injector-tls`;
/** The name the API server calls the webhook by, and checks the certificate against. */
const SERVICE_HOST = `sluice-injector.${NAMESPACE}.svc`;

interface Injector extends CliProcess {
  port: number;
}

async function startInjector(api: KubeApiServer | null, args: string[] = []): Promise<Injector> {
  const started = await startCli(
    ['inject', '--listen', '127.0.0.1:0', '--namespace', NAMESPACE, '--sidecar-image', 'sluice:test', ...(api ? ['--serviceaccount-dir', api.serviceAccountDir] : []), ...args],
    api ? api.env() : {},
  );
  const address = started.listening.address as string;
  return { ...started, port: Number(address.slice(address.lastIndexOf(':') + 1)) };
}

interface Answer {
  status: number;
  body: string;
}

/**
 * `ca`: the only certificates trusted; without it, any certificate is accepted (as the kubelet's
 * probes do). `declaredBytes`: a content-length larger than `body`, which is sent without ending
 * the request: the answer must come from the headers alone (a server that refuses a large body
 * and closes while the client still writes it would race the client's EPIPE).
 */
function call(port: number, method: string, path: string, options: { ca?: string; body?: string | Buffer; servername?: string; declaredBytes?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        servername: options.servername ?? SERVICE_HOST,
        ...(options.ca ? { ca: options.ca } : { rejectUnauthorized: false }),
        headers: {
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(options.declaredBytes === undefined ? {} : { 'content-length': options.declaredBytes }),
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
          if (options.declaredBytes !== undefined) req.destroy();
        });
      },
    );
    req.on('error', reject);
    if (options.declaredBytes === undefined) req.end(options.body);
    else req.write(options.body ?? '');
  });
}

/** The certificate the server presents now, by its SHA-256 fingerprint. */
function presented(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: SERVICE_HOST, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerX509Certificate()!.fingerprint256);
      socket.end();
    });
    socket.on('error', reject);
  });
}

const fingerprint = (pem: string) => parseCertificate(pem)!.fingerprint256;

/** The CA bundle of each webhook in the API's configuration (PEM; '' while unset). */
function caBundles(api: KubeApiServer): string[] {
  return api.webhookConfigurations.get('sluice-injector').webhooks.map((w: any) => Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8'));
}

/** The bundle once both webhooks carry the same one that `accept` accepts. */
function publishedBundle(api: KubeApiServer, accept: (bundle: string) => boolean = (b) => b !== ''): Promise<string> {
  return waitFor('the caBundle in both webhooks', 30_000, async () => {
    const [first, second] = caBundles(api);
    return first !== undefined && first === second && accept(first) ? first : undefined;
  });
}

function secretText(api: KubeApiServer, key: string): string {
  return Buffer.from(api.secrets.get(SECRET).data[key], 'base64').toString('utf8');
}

const ready = (injector: Injector) => waitFor('/readyz', 30_000, async () => ((await call(injector.port, 'GET', '/readyz')).status === 200 ? true : undefined));

let tls: TlsFiles;
beforeAll(async () => {
  tls = await makeTlsFiles();
});
afterAll(() => tls?.remove());

async function apiWithWebhook(): Promise<KubeApiServer> {
  const api = await startKubeApi(tls);
  api.webhookConfigurations.set('sluice-injector', webhookConfiguration(NAMESPACE));
  return api;
}

describe('with its own CA', () => {
  let api: KubeApiServer;
  let injector: Injector;
  beforeAll(async () => {
    api = await apiWithWebhook();
    injector = await startInjector(api);
  });
  afterAll(async () => {
    expect(await injector?.stop()).toBe(0);
    await api?.close();
  });

  it('keeps its CA in the Secret, writes it into both webhooks, and answers every golden review to a client trusting only that', async () => {
    const bundle = await publishedBundle(api);
    await ready(injector);
    const secret = api.secrets.get(SECRET);
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(Object.keys(secret.data).sort()).toEqual(['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
    expect(secretText(api, 'ca.crt')).toBe(bundle);
    expect(await presented(injector.port)).toBe(fingerprint(secretText(api, 'tls.crt')));
    const cert = parseCertificate(secretText(api, 'tls.crt'))!;
    for (const name of serviceNames('sluice-injector', NAMESPACE)) expect(cert.subjectAltName).toContain(`DNS:${name}`);

    for (const fixture of FIXTURES) {
      const answer = await call(injector.port, 'POST', fixture.path, { ca: bundle, body: reviewText(fixture) });
      expect(answer.status).toBe(200);
      expectRecordedAnswer(fixture, JSON.parse(answer.body));
    }
    // The client does check: trusting another CA, it refuses the server.
    await expect(call(injector.port, 'POST', '/inject', { ca: readFileSync(tls.otherCaFile, 'utf8'), body: '{}' })).rejects.toThrow(
      /self.signed|unable to verify|unable to get local issuer/i,
    );
    expect(injector.logs).toContainEqual(expect.objectContaining({ msg: 'injected', namespace: 'shop', pod: 'checkout-7d9f8-abcde', injected: true }));
    expect(injector.logs).toContainEqual(expect.objectContaining({ msg: 'not injected', namespace: 'payments', reason: 'opted out by sluice.dev/inject: "false"' }));
  });

  it('answers /healthz and /readyz, refuses other methods and paths, and oversized or broken reviews', async () => {
    expect(await call(injector.port, 'GET', '/healthz')).toMatchObject({ status: 200 });
    expect(await call(injector.port, 'GET', '/readyz')).toMatchObject({ status: 200 });
    expect(await call(injector.port, 'GET', '/inject')).toMatchObject({ status: 405 });
    expect(await call(injector.port, 'POST', '/mutate', { body: '{}' })).toMatchObject({ status: 404 });
    expect(await call(injector.port, 'POST', '/inject', { body: Buffer.alloc(1024, ' '), declaredBytes: 3 * 1024 * 1024 })).toMatchObject({ status: 413 });
    const broken = await call(injector.port, 'POST', '/inject', { body: '{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "requ' });
    expect(broken.status).toBe(200);
    expect(JSON.parse(broken.body).response).toEqual({ uid: '', allowed: true });
    // Still serving after all that.
    expect(await call(injector.port, 'GET', '/healthz')).toMatchObject({ status: 200 });
  });
});

describe('two replicas', () => {
  let api: KubeApiServer;
  let injectors: Injector[] = [];
  beforeAll(async () => {
    api = await apiWithWebhook();
    api.holdSecretReads = 2;
    injectors = await Promise.all([startInjector(api), startInjector(api)]);
  });
  afterAll(async () => {
    await Promise.all(injectors.map((i) => i.stop()));
    await api?.close();
  });

  it('share one Secret: both find none, one creates it, the other reads and uses it', async () => {
    const bundle = await publishedBundle(api);
    await Promise.all(injectors.map(ready));
    const created = api.calls.filter((c) => c.method === 'POST' && c.path.endsWith('/secrets'));
    expect(created.map((c) => c.status).sort()).toEqual([201, 409]);
    expect(splitPem(bundle)).toHaveLength(1);
    const served = secretText(api, 'tls.crt');
    expect(await Promise.all(injectors.map((i) => presented(i.port)))).toEqual([fingerprint(served), fingerprint(served)]);
    for (const injector of injectors) {
      const answer = await call(injector.port, 'POST', '/inject', { ca: bundle, body: reviewText(FIXTURES[0]!) });
      expect(JSON.parse(answer.body).response.patchType).toBe('JSONPatch');
    }
  });
});

describe('renewal', () => {
  // A CA and serving certificate seeded with a short life: the injector renews them once a
  // third of it is left, while it runs.
  const LIFETIME_MS = 24_000;
  let api: KubeApiServer;
  let injector: Injector;
  let seeded: { ca: string; cert: string };
  beforeAll(async () => {
    api = await apiWithWebhook();
    const now = new Date();
    const ca = await createAuthority('sluice-injector CA', now, LIFETIME_MS);
    const serving = await issueServing(ca, serviceNames('sluice-injector', NAMESPACE), now, LIFETIME_MS);
    seeded = { ca: ca.cert, cert: serving.cert };
    api.secrets.set(SECRET, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'sluice-injector-tls', namespace: NAMESPACE, resourceVersion: '7' },
      type: 'kubernetes.io/tls',
      data: toSecretData({ ca, caBundle: [ca.cert], serving }),
    });
    injector = await startInjector(api, ['--resync', '300ms', '--ca-lifetime', '1h', '--cert-lifetime', '30m']);
  });
  afterAll(async () => {
    await injector?.stop();
    await api?.close();
  });

  it('renews a CA and certificate near expiry without a restart, and keeps the old CA trusted until it expires', async () => {
    // First it serves what it found.
    expect(await publishedBundle(api)).toBe(seeded.ca);
    expect(await presented(injector.port)).toBe(fingerprint(seeded.cert));
    expect(api.secrets.get(SECRET).metadata.resourceVersion).toBe('7');

    const renewed = await waitFor('a new serving certificate', 30_000, async () => {
      const now = await presented(injector.port);
      return now !== fingerprint(seeded.cert) ? now : undefined;
    });
    expect(injector.child.exitCode).toBeNull();
    expect(fingerprint(secretText(api, 'tls.crt'))).toBe(renewed);
    const [newCa, oldCa, ...more] = splitPem(secretText(api, 'ca.crt'));
    expect(oldCa).toBe(seeded.ca);
    expect(more).toEqual([]);
    expect(parseCertificate(secretText(api, 'tls.crt'))!.checkIssued(parseCertificate(newCa!)!)).toBe(true);
    const bundle = await publishedBundle(api, (b) => b.includes(newCa!));
    expect(splitPem(bundle)).toEqual([newCa, seeded.ca]);
    const answer = await call(injector.port, 'POST', '/inject', { ca: newCa!, body: reviewText(FIXTURES[0]!) });
    expect(JSON.parse(answer.body).response.patchType).toBe('JSONPatch');

    // Once the old CA has expired, it leaves the Secret and the caBundle.
    expect(splitPem(await publishedBundle(api, (b) => splitPem(b).length === 1))).toEqual([newCa]);
    expect(splitPem(secretText(api, 'ca.crt'))).toEqual([newCa]);
    expect(await presented(injector.port)).toBe(renewed);
  });
  it("serves what another replica wrote to the Secret, and trusts that replica's CA", async () => {
    const now = new Date();
    const ca = await createAuthority('sluice-injector CA', now, 3_600_000);
    const serving = await issueServing(ca, serviceNames('sluice-injector', NAMESPACE), now, 1_800_000);
    const current = api.secrets.get(SECRET);
    api.secrets.set(SECRET, { ...current, metadata: { ...current.metadata, resourceVersion: '1000' }, data: toSecretData({ ca, caBundle: [ca.cert], serving }) });
    await waitFor('the certificate the other replica wrote', 10_000, async () => ((await presented(injector.port)) === fingerprint(serving.cert) ? true : undefined));
    expect(await publishedBundle(api, (b) => b === ca.cert)).toBe(ca.cert);
    expect(injector.child.exitCode).toBeNull();
  });
});

describe('before it may read its Secret', () => {
  let api: KubeApiServer;
  let injector: Injector;
  beforeAll(async () => {
    api = await apiWithWebhook();
    api.authorized = false;
    injector = await startInjector(api);
  });
  afterAll(async () => {
    await injector?.stop();
    await api?.close();
  });

  it('is alive but not ready, says why, and becomes ready once the API lets it in', async () => {
    await waitFor('the warning', 10_000, async () => (injector.logs.some((l) => l.msg === 'could not read or renew the certificate Secret' && /403/.test(String(l.err))) ? true : undefined));
    expect(await call(injector.port, 'GET', '/healthz')).toMatchObject({ status: 200 });
    expect(await call(injector.port, 'GET', '/readyz')).toMatchObject({ status: 503 });
    api.authorized = true;
    await ready(injector);
    expect(await publishedBundle(api)).toBe(secretText(api, 'ca.crt'));
  });
});

describe('with certificate files (cert-manager)', () => {
  let injector: Injector;
  let dir: string;
  let other: TlsFiles;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-certs-'));
    copyFileSync(tls.certFile, join(dir, 'tls.crt'));
    copyFileSync(tls.keyFile, join(dir, 'tls.key'));
    other = await makeTlsFiles();
    injector = await startInjector(null, ['--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key'), '--resync', '200ms']);
  });
  afterAll(async () => {
    expect(await injector?.stop()).toBe(0);
    other?.remove();
  });

  it('serves the files, and the new pair when they change', async () => {
    const fixture = FIXTURES[0]!;
    const first = await call(injector.port, 'POST', fixture.path, { ca: readFileSync(tls.caFile, 'utf8'), servername: 'localhost', body: reviewText(fixture) });
    expectRecordedAnswer(fixture, JSON.parse(first.body));
    copyFileSync(other.certFile, join(dir, 'tls.crt'));
    copyFileSync(other.keyFile, join(dir, 'tls.key'));
    await waitFor('the new certificate', 10_000, async () => ((await presented(injector.port)) === fingerprint(readFileSync(other.certFile, 'utf8')) ? true : undefined));
    const second = await call(injector.port, 'POST', fixture.path, { ca: readFileSync(other.caFile, 'utf8'), servername: 'localhost', body: reviewText(fixture) });
    expectRecordedAnswer(fixture, JSON.parse(second.body));
  });

  it("listens as the manifests start it on the pod's IPv4 and IPv6 addresses alike (an IPv6-only cluster calls the pod's IPv6 address)", async () => {
    const deployment = single(await installed(), 'Deployment', 'sluice-injector');
    const args: string[] = deployment.spec.template.spec.containers[0].args;
    const listen = args[args.indexOf('--listen') + 1]!;
    expect(listen.endsWith(':8443')).toBe(true);
    const anyPort = await startInjector(null, ['--listen', listen.replace(/8443$/, '0'), '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key')]);
    try {
      for (const host of ['127.0.0.1', '::1']) {
        const answer = await new Promise<number>((resolve, reject) =>
          request({ host, port: anyPort.port, path: '/healthz', rejectUnauthorized: false, agent: false }, (res) => resolve(res.statusCode ?? 0)).on('error', reject).end(),
        );
        expect(answer).toBe(200);
      }
    } finally {
      await anyPort.stop();
    }
  });

  it('refuses a --listen that is not HOST:PORT, saying so, instead of listening somewhere else', async () => {
    for (const listen of ['8443', 'unix:/tmp/injector.sock']) {
      await expect(startInjector(null, ['--listen', listen, '--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key')])).rejects.toThrow(
        new RegExp(`exited \\(2\\)[\\s\\S]*--listen "${listen}" is not HOST:PORT`),
      );
    }
  });

  it('refuses to start on files that do not belong together', async () => {
    await expect(startInjector(null, ['--tls-cert', tls.certFile, '--tls-key', other.keyFile])).rejects.toThrow(/is not the private key of/);
  });
});

describe('the HTTPS server under attack', () => {
  let hook: Webhook;
  let port: number;
  beforeAll(async () => {
    const pair = await createAuthority('test', new Date(), 3_600_000);
    hook = await startWebhook('127.0.0.1:0', pair, INJECTOR_OPTIONS, pino({ level: 'silent' }));
    hook.setCertificate(pair);
    port = Number(hook.address.slice(hook.address.lastIndexOf(':') + 1));
  });
  afterAll(() => hook?.close());

  /** A TLS connection, once its handshake is done. */
  const connected = () =>
    new Promise<TLSSocket>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(socket));
      socket.once('error', reject);
    });
  /** A TCP connection, once open, that never starts its TLS handshake. */
  const tcpConnected = () =>
    new Promise<Socket>((resolve, reject) => {
      const socket = netConnect(port, '127.0.0.1', () => resolve(socket));
      socket.once('error', reject);
    });
  /** Writes `head`, then a byte every 500 ms: a client that keeps the request going forever. */
  const trickle = (socket: TLSSocket, head: string, byte: string) => {
    socket.write(head);
    const timer = setInterval(() => socket.write(byte), 500);
    socket.once('close', () => clearInterval(timer));
  };

  it('cuts a client within 12 s however it stalls: before the TLS handshake, before a request, in its headers, in its body', async () => {
    const start = Date.now();
    const silentTcp = netConnect(port, '127.0.0.1');
    const [idle, slowHeaders, slowBody] = await Promise.all([connected(), connected(), connected()]);
    trickle(slowHeaders, 'POST /inject HTTP/1.1\r\nhost: x\r\n', 'x');
    trickle(slowBody, 'POST /inject HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n', ' ');
    const closed = await Promise.all([silentTcp, idle, slowHeaders, slowBody].map((socket) => closesIn(socket, start, 14_000)));
    for (const ms of closed) expect(ms).toBeLessThan(12_000);
  });

  it('answers 413 to a chunked review (no content-length) once it passes 2 MiB, and closes the connection', async () => {
    const socket = await connected();
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    const closed = closesIn(socket, Date.now(), 10_000);
    // 32 chunks of 64 KiB are the 2 MiB allowed. The byte past them is the last one sent, in a chunk
    // left open: the server has read all that was sent when it answers and closes (no EPIPE, no
    // reset), and only its answer can end the request.
    socket.write('POST /inject HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
    const piece = ' '.repeat(64 * 1024);
    for (let i = 0; i < 32; i++) socket.write(`10000\r\n${piece}\r\n`);
    socket.write('1\r\n ');
    expect(await closed).toBeLessThan(10_000);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer).toContain(`an AdmissionReview over ${2 * 1024 * 1024} bytes is not a pod sluice injects`);
  });

  it('answers 503 at once to a review that would take the bodies being read past 16 MiB, and reads again once they end', async () => {
    // Eight bodies of almost 2 MiB each, all but their last byte sent, hold all of the 16 MiB but `room`.
    const size = 2 * 1024 * 1024 - 1024;
    const room = 16 * 1024 * 1024 - 8 * (size - 1);
    const holders = await Promise.all(Array.from({ length: 8 }, () => connected()));
    for (const socket of holders) socket.write(`POST /inject HTTP/1.1\r\nhost: x\r\ncontent-length: ${size}\r\n\r\n${' '.repeat(size - 1)}`);
    // A review one byte larger than the room can only be refused at its last byte: the server has
    // read all of it when it answers and closes, so the answer never races the client's EPIPE on
    // bytes the server stopped reading (a larger review did). Until every held byte is in the
    // server (16 MiB through TLS can take seconds on a loaded 2-core machine: the deadline is for
    // the bytes, not the answer), it fits, and is answered 200.
    const refused = await waitFor('a 503', 30_000, async () => {
      const answer = await call(port, 'POST', '/inject', { body: Buffer.alloc(room + 1, ' ') });
      return answer.status === 503 ? answer : undefined;
    });
    expect(refused.body).toMatch(/busy/);
    for (const socket of holders) socket.destroy();
    await waitFor('room again', 30_000, async () => ((await call(port, 'POST', '/inject', { body: reviewText(FIXTURES[0]!) })).status === 200 ? true : undefined));
  });

  it('closes connections past 1,000 as they arrive, and takes new ones once some close', async () => {
    // TCP only: they count as TLS connections do, and open in well under the 10 s after which the
    // server cuts a connection that says nothing (1,000 TLS handshakes on a loaded 2-core machine
    // took longer, and the first connections were gone before the last had opened).
    const open: Socket[] = [];
    for (let i = 0; i < 1_000; i += 100) open.push(...(await Promise.all(Array.from({ length: 100 }, () => tcpConnected()))));
    const extra = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    expect(await closesIn(extra, Date.now(), 5_000)).toBeLessThan(5_000);
    for (const socket of open) socket.destroy();
    await waitFor('a connection taken again', 10_000, async () => ((await call(port, 'GET', '/healthz')).status === 200 ? true : undefined));
  });
});
