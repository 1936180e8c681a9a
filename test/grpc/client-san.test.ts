// server.tls.client_san matched as envoyproxy/ratelimit matches GRPC_CLIENT_TLS_SAN (Go's
// x509 VerifyHostname): an IP address against IP SANs, a name against DNS SANs, case-insensitive,
// with a wildcard only as a whole first label; never the subject's CN.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { carriesSan } from '../../src/grpc/client-san.js';
import { issueCertificate, makeTlsFiles, type IssueOptions, type TlsFiles } from '../support/tls.js';

let files: TlsFiles;
beforeAll(async () => {
  files = await makeTlsFiles();
});
afterAll(() => files?.remove());

const certificate = async (name: string, options: IssueOptions) => new X509Certificate(readFileSync((await issueCertificate(files, name, options)).certFile));

describe('carriesSan', () => {
  it('a DNS name, in any case', async () => {
    const cert = await certificate('dns', { san: 'DNS:envoy.internal,DNS:localhost' });
    expect(['envoy.internal', 'LOCALHOST', 'Envoy.Internal'].map((san) => carriesSan(cert, san))).toEqual([true, true, true]);
    expect(['internal', 'envoy.internal.example', 'other'].map((san) => carriesSan(cert, san))).toEqual([false, false, false]);
  });

  it('a wildcard DNS SAN stands for one whole first label', async () => {
    const cert = await certificate('wildcard', { san: 'DNS:*.envoy.example,DNS:f*.partial.example' });
    expect(carriesSan(cert, 'edge.envoy.example')).toBe(true);
    expect(['envoy.example', 'a.b.envoy.example', 'foo.partial.example'].map((san) => carriesSan(cert, san))).toEqual([false, false, false]);
  });

  it('an IP address against the IP SANs only', async () => {
    const cert = await certificate('ip', { san: 'IP:10.0.0.7,IP:::1,DNS:10.0.0.8' });
    expect(['10.0.0.7', '::1'].map((san) => carriesSan(cert, san))).toEqual([true, true]);
    expect(['10.0.0.8', '10.0.0.9'].map((san) => carriesSan(cert, san))).toEqual([false, false]);
  });

  it('never the subject’s CN', async () => {
    const cert = await certificate('cn-only', { cn: 'localhost' });
    expect(carriesSan(cert, 'localhost')).toBe(false);
  });
});
