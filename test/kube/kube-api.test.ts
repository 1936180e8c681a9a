// The injector's Kubernetes API client against API servers that misbehave.
import { createServer, type Server } from 'node:https';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenAdmin } from '../../src/admin/admin-server.js';
import { inClusterApi } from '../../src/kube/kube-api.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';

describe('inClusterApi', () => {
  let tls: TlsFiles;
  let server: Server;
  let env: Record<string, string>;
  const serviceAccountDir = mkdtempSync(join(tmpdir(), 'sluice-sa-'));
  beforeAll(async () => {
    tls = await makeTlsFiles();
    writeFileSync(join(serviceAccountDir, 'token'), 'token\n');
    writeFileSync(join(serviceAccountDir, 'ca.crt'), readFileSync(tls.caFile));
    // Answers 200 at once, then one byte of the body every 500 ms, never ending it.
    server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
      const timer = setInterval(() => res.write(' '), 500);
      res.once('close', () => clearInterval(timer));
    });
    const address = await listenAdmin(server, '127.0.0.1:0');
    env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: address.slice(address.lastIndexOf(':') + 1) };
  });
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
    tls?.remove();
  });

  it('gives up on an answer that keeps trickling within 10 s, so a stuck API cannot stall certificate renewal forever', async () => {
    const api = inClusterApi(env, serviceAccountDir);
    const start = Date.now();
    await expect(api.getSecret('sluice-system', 'sluice-injector-tls')).rejects.toThrow(/no answer within 10000 ms/);
    expect(Date.now() - start).toBeLessThan(12_000);
  });
});
