// When the injector's certificates are renewed, what the Secret then holds, and how replicas that
// write it at the same time end up with one answer.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convergeSecret, fromSecretData, renewal, toSecretData, type TlsMaterial } from '../../src/kube/certificate-secret.js';
import { createAuthority, dnsNamesOf, issueServing, parseCertificate, serviceNames } from '../../src/kube/certificates.js';
import { inClusterApi } from '../../src/kube/kube-api.js';
import { startKubeApi, type KubeApiServer } from '../support/kube-api.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';

const NAMES = serviceNames('sluice-injector', 'sluice-system');
const HOUR = 3_600_000;
const LIFETIMES = { caMs: 300 * HOUR, servingMs: 30 * HOUR };
const at = (hours: number) => new Date(Date.UTC(2030, 0, 1) + hours * HOUR);
const cert = (pem: string) => parseCertificate(pem)!;

async function material(caHours: number, servingHours: number, names = NAMES): Promise<TlsMaterial> {
  const ca = await createAuthority('test CA', at(0), caHours * HOUR);
  return { ca, caBundle: [ca.cert], serving: await issueServing(ca, names, at(0), servingHours * HOUR) };
}

describe('renewal', () => {
  let fresh: TlsMaterial;
  beforeAll(async () => {
    fresh = await material(300, 30);
  });

  it('makes a CA and a serving certificate for the Service when there are none', async () => {
    const made = await renewal({ problem: 'there is no Secret yet' }, NAMES, LIFETIMES, at(0));
    expect(made?.why).toBe('there is no Secret yet');
    const { ca, caBundle, serving } = made!.material;
    expect(caBundle).toEqual([ca.cert]);
    expect(dnsNamesOf(cert(serving.cert))).toEqual(NAMES);
    expect(cert(serving.cert).checkIssued(cert(ca.cert))).toBe(true);
    expect(cert(ca.cert).ca).toBe(true);
    expect(cert(serving.cert).ca).toBe(false);
    // What it writes reads back the same.
    expect(fromSecretData(toSecretData(made!.material))).toEqual({ material: made!.material });
  });

  it('keeps certificates with more than a third of their life left', async () => {
    expect(await renewal({ material: fresh }, NAMES, LIFETIMES, at(19))).toBeNull();
  });

  it('renews the serving certificate alone once less than a third of its life is left', async () => {
    const next = await renewal({ material: fresh }, NAMES, LIFETIMES, at(21));
    expect(next?.why).toBe('the serving certificate is near expiry');
    expect(next!.material.ca).toEqual(fresh.ca);
    expect(next!.material.caBundle).toEqual(fresh.caBundle);
    expect(new Date(cert(next!.material.serving.cert).validTo).getTime()).toBeGreaterThan(at(21 + 29).getTime());
  });

  it('renews a serving certificate that lacks a Service name', async () => {
    const narrow = await material(300, 30, NAMES.slice(0, 1));
    expect((await renewal({ material: narrow }, NAMES, LIFETIMES, at(1)))?.why).toMatch(/does not name/);
  });

  it('rotates a CA near expiry, trusting old and new until the old one expires, and never issues past the CA', async () => {
    const old = await material(30, 30);
    const rotated = await renewal({ material: old }, NAMES, LIFETIMES, at(21));
    expect(rotated?.why).toBe('the CA is near expiry');
    const { ca, caBundle, serving } = rotated!.material;
    expect(caBundle).toEqual([ca.cert, old.ca.cert]);
    expect(cert(serving.cert).checkIssued(cert(ca.cert))).toBe(true);
    expect(new Date(cert(serving.cert).validTo).getTime()).toBeLessThanOrEqual(new Date(cert(ca.cert).validTo).getTime());
    // Later, the expired CA is dropped and nothing else changes.
    const pruned = await renewal({ material: rotated!.material }, NAMES, LIFETIMES, at(31));
    expect(pruned).toEqual({ material: { ...rotated!.material, caBundle: [ca.cert] }, why: 'an old CA has expired' });
  });

  it('refuses a Secret whose keys do not belong to its certificates', async () => {
    const other = await material(300, 30);
    const mixed = toSecretData({ ...fresh, serving: { cert: fresh.serving.cert, key: other.serving.key } });
    expect(fromSecretData(mixed)).toMatchObject({ problem: 'tls.key is not the key of tls.crt' });
    expect(fromSecretData({ ...toSecretData(fresh), 'ca.key': toSecretData(other)['ca.key']! })).toEqual({ problem: 'ca.key is not the key of the first certificate in ca.crt' });
    expect(fromSecretData({ 'tls.crt': '' })).toEqual({ problem: 'it lacks one of tls.crt, tls.key, ca.crt, ca.key' });
  });

  it('keeps a good CA when only the serving pair is broken, so the caBundle, and replicas still serving, stay trusted', async () => {
    const other = await material(300, 30);
    const broken: Record<string, string>[] = [
      { ...toSecretData(fresh), 'tls.crt': Buffer.from('garbage').toString('base64') },
      { ...toSecretData(fresh), 'tls.key': toSecretData(other)['tls.key']! },
      { 'ca.crt': toSecretData(fresh)['ca.crt']!, 'ca.key': toSecretData(fresh)['ca.key']! },
    ];
    for (const data of broken) {
      const next = await renewal(fromSecretData(data), NAMES, LIFETIMES, at(1));
      expect(next!.material.ca).toEqual(fresh.ca);
      expect(next!.material.caBundle).toEqual(fresh.caBundle);
      expect(cert(next!.material.serving.cert).checkIssued(cert(fresh.ca.cert))).toBe(true);
      expect(next!.why).toMatch(/tls\.crt|tls\.key/);
    }
  });

  it('replaces a CA it could not sign with (an EC key, as openssl or cert-manager make them) instead of failing every round', async () => {
    const tls = await makeTlsFiles();
    try {
      const file = (path: string) => readFileSync(path).toString('base64');
      const ecData = { 'ca.crt': file(tls.caFile), 'ca.key': file(join(tls.dir, 'ca.key')), 'tls.crt': file(tls.certFile), 'tls.key': file(tls.keyFile) };
      const read = fromSecretData(ecData);
      expect(read).toEqual({ problem: 'ca.key is not an RSA key: the injector signs with RSA keys only' });
      const next = await renewal(read, NAMES, LIFETIMES, at(0));
      expect(dnsNamesOf(cert(next!.material.serving.cert))).toEqual(NAMES);
      expect(cert(next!.material.serving.cert).checkIssued(cert(next!.material.ca.cert))).toBe(true);
    } finally {
      tls.remove();
    }
  });
});

describe('two replicas renewing the same Secret at once', () => {
  let tls: TlsFiles;
  let server: KubeApiServer;
  beforeAll(async () => {
    tls = await makeTlsFiles();
    server = await startKubeApi(tls);
  });
  afterAll(async () => {
    await server?.close();
    tls?.remove();
  });

  it('write once; the one refused (409 Conflict) reads and uses what the other wrote', async () => {
    const due = await material(300, 30);
    server.secrets.set('sluice-system/sluice-injector-tls', {
      metadata: { name: 'sluice-injector-tls', namespace: 'sluice-system', resourceVersion: '3' },
      type: 'kubernetes.io/tls',
      data: toSecretData(due),
    });
    server.holdSecretReads = 2;
    const api = inClusterApi(server.env(), server.serviceAccountDir);
    const results = await Promise.all([1, 2].map(() => convergeSecret(api, 'sluice-system', 'sluice-injector-tls', NAMES, LIFETIMES, () => at(25))));
    expect(server.calls.filter((c) => c.method === 'PUT').map((c) => c.status).sort()).toEqual([200, 409]);
    expect(results.map((r) => r.wrote).sort()).toEqual([null, 'the serving certificate is near expiry'].sort());
    expect(results[0]!.material).toEqual(results[1]!.material);
    expect(results[0]!.material.serving.cert).not.toBe(due.serving.cert);
  });
});
