// Cases derived from envoyproxy/ratelimit's test/integration/integration_test.go that serve gRPC
// over TLS, through the built sidecar set up by upstream's own variables (envoy.upstream_env with
// GRPC_SERVER_USE_TLS and the rest). Each `it` is named after the upstream test it comes from.
// They are about the transport, not the answers, so they run on the memory store only.
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdtempSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { handshake, issueCertificate, makeTlsFiles, tlsChannel, type TlsFiles } from '../support/tls.js';
import { connectEnvoy, desc } from './client.js';
import { configDir, grpcError, waitForLog } from './support.js';
import { inOneWindow, statusLine as line } from './upstream.js';
import { BASIC_CONFIG_FILES } from './upstream-basic-config.js';

/** What an upstream Deployment's policy comes down to: its config files, the rest from the environment. */
const policy = () => `envoy:\n  config_dir: ${configDir(BASIC_CONFIG_FILES)}\n  upstream_env: true\n`;

describe('upstream test/integration/integration_test.go', () => {
  let files: TlsFiles;
  beforeAll(async () => {
    files = await makeTlsFiles();
  });
  afterAll(() => files?.remove());

  describe('mTLS', () => {
    let sidecar: SidecarProcess;
    let clients: Record<'good' | 'wrongSan' | 'otherCa', { certFile: string; keyFile: string }>;
    beforeAll(async () => {
      clients = {
        good: await issueCertificate(files, 'client-localhost', { san: 'DNS:localhost' }),
        wrongSan: await issueCertificate(files, 'client-elsewhere', { san: 'DNS:elsewhere.example' }),
        otherCa: await issueCertificate(files, 'client-other-ca', { san: 'DNS:localhost', by: 'other' }),
      };
      sidecar = await startSidecar(policy(), {
        GRPC_SERVER_USE_TLS: 'true',
        GRPC_SERVER_TLS_CERT: files.certFile,
        GRPC_SERVER_TLS_KEY: files.keyFile,
        GRPC_CLIENT_TLS_CACERT: files.caFile,
        GRPC_CLIENT_TLS_SAN: 'localhost',
      });
    });
    afterAll(async () => {
      await sidecar?.stop();
    });

    // A budget of 20 a minute, its own: every step below falls in one window.
    const user = randomUUID();
    const shouldRateLimit = (client: { certFile?: string; keyFile?: string }) => {
      const envoy = connectEnvoy(sidecar.address, tlsChannel({ caFile: files.caFile, ...client }));
      return envoy.shouldRateLimit('another', [desc('key2', user)]).finally(() => envoy.close());
    };

    it('Test_mTLS', async () => {
      await inOneWindow('MINUTE', 20_000);
      // A client certificate signed by GRPC_CLIENT_TLS_CACERT, carrying GRPC_CLIENT_TLS_SAN: answered.
      expect((await shouldRateLimit(clients.good)).statuses.map(line)).toEqual(['OK 20/MINUTE 19']);

      // No certificate, or one from another CA: the handshake is refused.
      for (const client of [{}, clients.otherCa]) expect(await grpcError(shouldRateLimit(client))).toMatchObject({ code: status.UNAVAILABLE });

      // The CA's, without the SAN: refused, saying which SAN it needs.
      const refused = await grpcError(shouldRateLimit(clients.wrongSan));
      expect(refused).toMatchObject({ code: status.PERMISSION_DENIED });
      expect(refused.details).toBe('the client certificate does not carry the SAN localhost that this sidecar requires (server.tls.client_san)');
      // Nothing was charged for the refused calls.
      expect((await shouldRateLimit(clients.good)).statuses.map(line)).toEqual(['OK 20/MINUTE 18']);
    });
  });

  describe('server certificate reload', () => {
    let sidecar: SidecarProcess;
    let served: { certFile: string; keyFile: string };
    let next: { certFile: string; keyFile: string };
    beforeAll(async () => {
      // The certificate being served, in a directory of its own; the next one, from another CA.
      const dir = mkdtempSync(join(tmpdir(), 'sluice-served-tls-'));
      served = { certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') };
      copyFileSync(files.certFile, served.certFile);
      copyFileSync(files.keyFile, served.keyFile);
      next = await issueCertificate(files, 'next-server', { san: 'DNS:localhost,IP:127.0.0.1', usage: 'server', by: 'other' });
      sidecar = await startSidecar(policy(), { GRPC_SERVER_USE_TLS: 'true', GRPC_SERVER_TLS_CERT: served.certFile, GRPC_SERVER_TLS_KEY: served.keyFile });
    });
    afterAll(async () => {
      await sidecar?.stop();
    });

    it('TestReloadGRPCServerCerts/WithInitialCert', async () => {
      expect(await handshake(sidecar.address, files.caFile)).toHaveProperty('fingerprint256');
    });

    it('TestReloadGRPCServerCerts/WithNewCertFail', async () => {
      expect(await handshake(sidecar.address, files.otherCaFile)).toMatchObject({ error: expect.stringMatching(/certificate/) });
    });

    it('TestReloadGRPCServerCerts/WithNewCertOK', async () => {
      // As upstream replaces them: the new certificate renamed over the old, then the new key.
      const before = sidecar.logs.length;
      renameSync(next.certFile, served.certFile);
      renameSync(next.keyFile, served.keyFile);
      await waitForLog(sidecar, 'gRPC TLS certificate reloaded', before);
      expect(await handshake(sidecar.address, files.otherCaFile)).toHaveProperty('fingerprint256');
      // And gRPC over it answers, without a restart.
      const envoy = connectEnvoy(sidecar.address, tlsChannel({ caFile: files.otherCaFile }));
      expect((await envoy.shouldRateLimit('basic', [desc('key1', 'reloaded')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);
      envoy.close();
      // One burst of changes, one reload: the pair was never loaded half swapped.
      expect(sidecar.logs.slice(before).filter((entry) => entry.msg === 'server.tls files not reloaded: still serving the previous certificate')).toEqual([]);
    });

    it('TestReloadGRPCServerCerts/WithInitialCertFail', async () => {
      expect(await handshake(sidecar.address, files.caFile)).toMatchObject({ error: expect.stringMatching(/certificate/) });
    });
  });
});
