// The injector's own certificate authority and serving certificate: made with node-forge (X.509),
// keys by node:crypto, read back with node:crypto's X509Certificate.
import { generateKeyPair, randomBytes, X509Certificate, createPrivateKey } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';
import type { KeyPair } from '../config/pem.js';

export { keyMatches, parseCertificate, type KeyPair } from '../config/pem.js';

const newRsaKey = promisify(generateKeyPair);

/** A certificate may be used a little before it was made: clocks in a cluster differ. */
const MAX_BACKDATE_MS = 5 * 60_000;

async function rsaKey(): Promise<{ privatePem: string; publicPem: string }> {
  const { privateKey, publicKey } = await newRsaKey('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privatePem: privateKey, publicPem: publicKey };
}

function validity(cert: forge.pki.Certificate, now: Date, lifetimeMs: number, notAfterCap?: Date): void {
  const backdate = Math.min(MAX_BACKDATE_MS, lifetimeMs / 10);
  cert.validity.notBefore = new Date(now.getTime() - backdate);
  const notAfter = now.getTime() + lifetimeMs;
  cert.validity.notAfter = new Date(notAfterCap ? Math.min(notAfter, notAfterCap.getTime()) : notAfter);
  // A positive serial of 16 random bytes.
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  cert.serialNumber = serial.toString('hex');
}

/** A self-signed certificate authority that signs serving certificates and nothing else. */
export async function createAuthority(commonName: string, now: Date, lifetimeMs: number): Promise<KeyPair> {
  const { privatePem, publicPem } = await rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem);
  validity(cert, now, lifetimeMs);
  const name = [{ name: 'commonName', value: `${commonName} ${now.toISOString()}` }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(privatePem), forge.md.sha256.create());
  return { cert: toPem(cert), key: privatePem };
}

/** A serving certificate for `dnsNames`, signed by `ca`, never valid longer than `ca`. */
export async function issueServing(ca: KeyPair, dnsNames: string[], now: Date, lifetimeMs: number): Promise<KeyPair> {
  const { privatePem, publicPem } = await rsaKey();
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem);
  validity(cert, now, lifetimeMs, caCert.validity.notAfter);
  cert.setSubject([{ name: 'commonName', value: dnsNames[0]! }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: dnsNames.map((value) => ({ type: 2, value })) },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(ca.key), forge.md.sha256.create());
  return { cert: toPem(cert), key: privatePem };
}

/** PEM with \n line ends, as node:crypto writes keys and splitPem gives certificates back. */
function toPem(cert: forge.pki.Certificate): string {
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}

/** The names the serving certificate must carry: every way the API server may call the Service. */
export function serviceNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
}

/** The PEM blocks of a bundle, in order. */
export function splitPem(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.map((pem) => `${pem}\n`) ?? [];
}

/** True when less than a third of the certificate's lifetime is left (or it has expired). */
export function dueForRenewal(cert: X509Certificate, now: Date): boolean {
  const notBefore = new Date(cert.validFrom).getTime();
  const notAfter = new Date(cert.validTo).getTime();
  return notAfter - now.getTime() < (notAfter - notBefore) / 3;
}

export function expired(cert: X509Certificate, now: Date): boolean {
  return new Date(cert.validTo).getTime() <= now.getTime();
}

/** DNS names in the certificate's subjectAltName. */
export function dnsNamesOf(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ').filter((entry) => entry.startsWith('DNS:')).map((entry) => entry.slice(4));
}

/** True for an RSA private key: the only kind node-forge signs certificates with. */
export function isRsaKey(keyPem: string): boolean {
  try {
    return createPrivateKey(keyPem).asymmetricKeyType === 'rsa';
  } catch {
    return false;
  }
}

/** True when `ca` signed `cert`. */
export function signedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}
