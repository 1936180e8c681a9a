// server.tls on the built sidecar: every service over TLS (over a Unix socket too), a plaintext
// client refused at once, the CLI's TLS flags, and the certificate files read again as the kubelet
// updates a Secret's volume, or on SIGHUP, while a set that does not load keeps the one served.
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../support/client.js';
import { KubeletVolume } from '../support/configmap-volume.js';
import { runCli } from '../support/run-cli.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { handshake, issueCertificate, makeTlsFiles, tlsChannel, type TlsFiles } from '../support/tls.js';
import { grpcError, healthOf, waitForLog } from '../envoy/support.js';

const RESOURCES = `
resources:
  - name: api
    keys: [tenant]
    limits:
      - { name: daily, algorithm: fixed_window, rate: 100/1d }
`;

/** A policy serving TLS with these server.tls fields (YAML flow map entries). */
const tlsPolicy = (fields: Record<string, string>) => `server:\n  tls: { ${Object.entries(fields).map(([key, value]) => `${key}: "${value}"`).join(', ')} }\n${RESOURCES}`;

const fingerprintOf = (certFile: string) => new X509Certificate(readFileSync(certFile)).fingerprint256;

const RELOADED = 'gRPC TLS certificate reloaded';
const NOT_RELOADED = 'server.tls files not reloaded: still serving the previous certificate';

let files: TlsFiles;
/** A second server certificate, from the other CA. */
let next: { certFile: string; keyFile: string };
beforeAll(async () => {
  files = await makeTlsFiles();
  next = await issueCertificate(files, 'next-server', { san: 'DNS:localhost,IP:127.0.0.1', usage: 'server', by: 'other' });
});
afterAll(() => files?.remove());

describe('a sidecar serving TLS', () => {
  let sidecar: SidecarProcess;
  beforeAll(async () => {
    sidecar = await startSidecar(tlsPolicy({ cert_file: files.certFile, key_file: files.keyFile }));
  });
  afterAll(async () => {
    await sidecar?.stop();
  });

  it('answers sluice.v1 and grpc.health.v1 over TLS, and says so when it starts', async () => {
    const channel = tlsChannel({ caFile: files.caFile });
    const client = connect(sidecar.address, channel.options, channel.credentials);
    expect(await client.acquire({ resource: 'api', descriptors: { tenant: 'tls' } })).toMatchObject({ granted: true, remaining: 99 });
    client.close();
    for (const service of ['', 'sluice.v1.RateLimiter']) expect(await healthOf(sidecar.address, service, tlsChannel({ caFile: files.caFile }))).toBe('SERVING');
    expect(sidecar.listening).toMatchObject({ tls: true });
    expect(sidecar.logs.find((entry) => entry.msg === 'gRPC TLS certificate loaded')).toMatchObject({ cert: files.certFile, subject: 'CN=localhost', fingerprint256: fingerprintOf(files.certFile) });
  });

  it('refuses a plaintext client at once: UNAVAILABLE, not a call left to its deadline', async () => {
    expect(await grpcError(healthOf(sidecar.address, ''))).toMatchObject({ code: status.UNAVAILABLE });
  });

  it('sluice acquire calls it with --tls-ca; without it, the refusal says the sidecar may serve TLS', async () => {
    const plain = await runCli(['acquire', 'api', 'tenant=cli', '--addr', sidecar.address]);
    expect(plain.code).toBe(3);
    expect(plain.stderr).toBe(`sluice acquire: UNAVAILABLE: ${sidecar.address} closed the connection without answering: if the sidecar serves TLS (server.tls), call it with --tls or --tls-ca\n`);
    const tls = await runCli(['acquire', 'api', 'tenant=cli', '--addr', sidecar.address, '--tls-ca', files.caFile, '--tls-server-name', 'localhost']);
    expect(tls).toMatchObject({ code: 0, stderr: '' });
    expect(tls.stdout).toMatch(/^granted: api tenant=cli, cost 1\n/);
    // Trusting a CA that did not sign it: the handshake fails, and the message says where to look.
    const untrusted = await runCli(['acquire', 'api', 'tenant=cli', '--addr', sidecar.address, '--tls-ca', files.otherCaFile]);
    expect(untrusted.code).toBe(3);
    expect(untrusted.stderr).toMatch(/^sluice acquire: UNAVAILABLE: the TLS handshake with \S+ failed \(.*certificate.*\): check --tls-ca .*\n$/);
  });

  it('refuses TLS flags that cannot work as a usage error', async () => {
    const alone = await runCli(['acquire', 'api', 'tenant=cli', '--addr', sidecar.address, '--tls-cert', files.clientCertFile]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/^sluice acquire: --tls-cert and --tls-key go together/);
    const missing = await runCli(['inspect', 'api', 'tenant=cli', '--addr', sidecar.address, '--tls-ca', join(files.dir, 'nope.crt')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^sluice inspect: --tls-ca \S*nope\.crt: cannot read it \(ENOENT\)/);
  });
});

describe('client certificates over a Unix socket', () => {
  let sidecar: SidecarProcess;
  let socket: string;
  beforeAll(async () => {
    socket = join(mkdtempSync(join(tmpdir(), 'sluice-tls-socket-')), 'sluice.sock');
    sidecar = await startSidecar(tlsPolicy({ cert_file: files.certFile, key_file: files.keyFile, client_ca_file: files.caFile }), { SLUICE_LISTEN: `unix:${socket}` });
  });
  afterAll(async () => {
    await sidecar?.stop();
  });

  it('answers a client with a certificate from client_ca_file, and refuses one without', async () => {
    const client = { caFile: files.caFile, certFile: files.clientCertFile, keyFile: files.clientKeyFile };
    expect(await healthOf(`unix:${socket}`, '', tlsChannel(client))).toBe('SERVING');
    expect(await grpcError(healthOf(`unix:${socket}`, '', tlsChannel({ caFile: files.caFile })))).toMatchObject({ code: status.UNAVAILABLE });
    const cli = await runCli(['acquire', 'api', 'tenant=unix', '--addr', `unix:${socket}`, '--tls-ca', files.caFile, '--tls-cert', files.clientCertFile, '--tls-key', files.clientKeyFile]);
    expect(cli).toMatchObject({ code: 0, stderr: '' });
    const without = await runCli(['acquire', 'api', 'tenant=unix', '--addr', `unix:${socket}`, '--tls-ca', files.caFile]);
    expect(without.code).toBe(3);
    expect(without.stderr).toMatch(/^sluice acquire: UNAVAILABLE: the TLS handshake with unix:\S+ failed.*: check --tls-ca .* --tls-cert and --tls-key\n$/);
  });
});

describe('the certificate in a Kubernetes Secret volume', () => {
  let volume: KubeletVolume;
  let sidecar: SidecarProcess;
  const pair = (certFile: string, keyFile: string) => ({ 'tls.crt': readFileSync(certFile, 'utf8'), 'tls.key': readFileSync(keyFile, 'utf8') });
  beforeAll(async () => {
    volume = new KubeletVolume(pair(files.certFile, files.keyFile));
    sidecar = await startSidecar(tlsPolicy({ cert_file: volume.path('tls.crt'), key_file: volume.path('tls.key') }));
  });
  afterAll(async () => {
    await sidecar?.stop();
  });

  it('a pair that does not load keeps the one served, and says why', async () => {
    const before = sidecar.logs.length;
    volume.update({ 'tls.crt': readFileSync(next.certFile, 'utf8'), 'tls.key': readFileSync(files.keyFile, 'utf8') });
    expect(await waitForLog(sidecar, NOT_RELOADED, before)).toMatchObject({ err: `${volume.path('tls.key')} is not the private key of ${volume.path('tls.crt')}` });
    expect(await handshake(sidecar.address, files.caFile)).toEqual({ fingerprint256: fingerprintOf(files.certFile) });
  });

  it('a ..data swap to a new pair is served from the next handshake; open connections go on', async () => {
    const channel = tlsChannel({ caFile: files.caFile });
    const open = connect(sidecar.address, channel.options, channel.credentials);
    expect((await open.acquire({ resource: 'api', descriptors: { tenant: 'kept' } })).granted).toBe(true);
    const before = sidecar.logs.length;
    volume.update(pair(next.certFile, next.keyFile));
    expect(await waitForLog(sidecar, RELOADED, before)).toMatchObject({ fingerprint256: fingerprintOf(next.certFile) });
    expect(await handshake(sidecar.address, files.otherCaFile)).toEqual({ fingerprint256: fingerprintOf(next.certFile) });
    expect(await handshake(sidecar.address, files.caFile)).toMatchObject({ error: expect.stringMatching(/certificate/) });
    // The connection made before the swap keeps the certificate it was made with.
    expect((await open.acquire({ resource: 'api', descriptors: { tenant: 'kept' } })).granted).toBe(true);
    open.close();
  });
});

describe('SIGHUP', () => {
  // The served paths are symlinks into a directory the sidecar does not watch: a change there is
  // seen only when SIGHUP asks for it.
  const elsewhere = mkdtempSync(join(tmpdir(), 'sluice-tls-target-'));
  const watched = mkdtempSync(join(tmpdir(), 'sluice-tls-link-'));
  let sidecar: SidecarProcess;
  beforeAll(async () => {
    copyFileSync(files.certFile, join(elsewhere, 'tls.crt'));
    copyFileSync(files.keyFile, join(elsewhere, 'tls.key'));
    for (const name of ['tls.crt', 'tls.key']) symlinkSync(join(elsewhere, name), join(watched, name));
    sidecar = await startSidecar(tlsPolicy({ cert_file: join(watched, 'tls.crt'), key_file: join(watched, 'tls.key') }));
  });
  afterAll(async () => {
    await sidecar?.stop();
  });

  it('reads the files again', async () => {
    copyFileSync(next.certFile, join(elsewhere, 'tls.crt'));
    copyFileSync(next.keyFile, join(elsewhere, 'tls.key'));
    const before = sidecar.logs.length;
    sidecar.child.kill('SIGHUP');
    await waitForLog(sidecar, RELOADED, before);
    expect(await handshake(sidecar.address, files.otherCaFile)).toEqual({ fingerprint256: fingerprintOf(next.certFile) });
    expect(sidecar.child.exitCode).toBeNull();
  });
});
