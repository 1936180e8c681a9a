// The CA and serving certificate that every injector replica shares, kept in one Secret (keys
// tls.crt, tls.key, ca.crt, ca.key). Whoever finds it missing or due makes the next one and writes
// it with the resourceVersion it read; a replica that loses the race reads and uses the winner's.
import type { X509Certificate } from 'node:crypto';
import {
  createAuthority,
  dnsNamesOf,
  dueForRenewal,
  expired,
  isRsaKey,
  issueServing,
  keyMatches,
  parseCertificate,
  signedBy,
  splitPem,
  type KeyPair,
} from './certificates.js';
import { KubeApiError, type KubeApi, type Secret } from './kube-api.js';

export interface TlsMaterial {
  /** The CA that signs now, and its key. */
  ca: KeyPair;
  /** What the API server should trust: the current CA first, then older ones still valid while a rotation settles. */
  caBundle: string[];
  serving: KeyPair;
}

export interface Lifetimes {
  caMs: number;
  servingMs: number;
}

const CA_NAME = 'sluice-injector CA';

/** Tries before giving up on a Secret that keeps changing under us; the next round tries again. */
const MAX_TRIES = 5;

/** The CA, its key and the bundle it heads. */
type Authority = Pick<TlsMaterial, 'ca' | 'caBundle'>;

/**
 * What a Secret holds: everything, good; or what is wrong with it, and its CA when that is good
 * (only the serving pair is then made anew: a new CA would leave the replicas still serving a
 * certificate from the old one untrusted until they read the Secret again).
 */
export type Read = { material: TlsMaterial } | { problem: string; authority?: Authority };

const MISSING = 'it lacks one of tls.crt, tls.key, ca.crt, ca.key';

/** The material in a Secret's data (base64 values), checked: each key belongs to its certificate. */
export function fromSecretData(data: Record<string, string> | undefined): Read {
  const text = (key: string) => (data?.[key] === undefined ? undefined : Buffer.from(data[key]!, 'base64').toString('utf8'));
  const [caPem, caKey, cert, key] = ['ca.crt', 'ca.key', 'tls.crt', 'tls.key'].map(text);
  if (caPem === undefined || caKey === undefined) return { problem: MISSING };
  const caBundle = splitPem(caPem);
  const ca = caBundle[0] === undefined ? null : parseCertificate(caBundle[0]);
  if (ca === null || !caBundle.every((pem) => parseCertificate(pem) !== null)) return { problem: 'ca.crt does not hold certificates' };
  if (!keyMatches(ca, caKey)) return { problem: 'ca.key is not the key of the first certificate in ca.crt' };
  // A CA made elsewhere (openssl's, cert-manager's) may have an EC key, which could sign nothing here.
  if (!isRsaKey(caKey)) return { problem: 'ca.key is not an RSA key: the injector signs with RSA keys only' };
  const authority = { ca: { cert: caBundle[0]!, key: caKey }, caBundle };
  if (cert === undefined || key === undefined) return { problem: MISSING, authority };
  const serving = parseCertificate(cert);
  if (serving === null) return { problem: 'tls.crt does not hold a certificate', authority };
  if (!keyMatches(serving, key)) return { problem: 'tls.key is not the key of tls.crt', authority };
  return { material: { ...authority, serving: { cert, key } } };
}

export function toSecretData(material: TlsMaterial): Record<string, string> {
  const base64 = (text: string) => Buffer.from(text).toString('base64');
  return {
    'tls.crt': base64(material.serving.cert),
    'tls.key': base64(material.serving.key),
    'ca.crt': base64(material.caBundle.join('')),
    'ca.key': base64(material.ca.key),
  };
}

/**
 * The material to write instead of `current`, and why; null when `current` is good as it is.
 * The serving certificate is renewed when less than a third of its lifetime is left, the CA
 * likewise (with a new serving certificate signed by it, while the old CA stays in the bundle
 * until it expires, for the API servers and replicas that have not seen the new one yet).
 */
export async function renewal(current: Read, dnsNames: string[], lifetimes: Lifetimes, now: Date): Promise<{ material: TlsMaterial; why: string } | null> {
  if ('problem' in current && current.authority === undefined) {
    const ca = await createAuthority(CA_NAME, now, lifetimes.caMs);
    return { material: { ca, caBundle: [ca.cert], serving: await issueServing(ca, dnsNames, now, lifetimes.servingMs) }, why: current.problem };
  }
  const authority: Authority = 'material' in current ? current.material : current.authority!;
  const stillValid = (pem: string) => !expired(parseCertificate(pem)!, now);
  const caCert = parseCertificate(authority.ca.cert)!;
  if (dueForRenewal(caCert, now)) {
    const ca = await createAuthority(CA_NAME, now, lifetimes.caMs);
    return {
      material: { ca, caBundle: [ca.cert, ...authority.caBundle.filter(stillValid)], serving: await issueServing(ca, dnsNames, now, lifetimes.servingMs) },
      why: 'the CA is near expiry',
    };
  }
  const why = 'material' in current ? servingProblem(parseCertificate(current.material.serving.cert)!, caCert, dnsNames, now) : current.problem;
  const caBundle = authority.caBundle.filter(stillValid);
  if (why !== null) return { material: { ca: authority.ca, caBundle, serving: await issueServing(authority.ca, dnsNames, now, lifetimes.servingMs) }, why };
  if ('material' in current && caBundle.length < authority.caBundle.length) return { material: { ...current.material, caBundle }, why: 'an old CA has expired' };
  return null;
}

function servingProblem(serving: X509Certificate, ca: X509Certificate, dnsNames: string[], now: Date): string | null {
  if (dueForRenewal(serving, now)) return 'the serving certificate is near expiry';
  if (!signedBy(serving, ca)) return 'the serving certificate is not signed by the CA';
  const has = new Set(dnsNamesOf(serving));
  if (!dnsNames.every((name) => has.has(name))) return `the serving certificate does not name ${dnsNames.join(', ')}`;
  return null;
}

export interface Converged {
  material: TlsMaterial;
  /** Why this replica wrote the Secret; null when it used what was there. */
  wrote: string | null;
}

/** Reads the Secret and makes it good, creating or renewing as needed; the result is what it holds. */
export async function convergeSecret(api: KubeApi, namespace: string, name: string, dnsNames: string[], lifetimes: Lifetimes, now: () => Date): Promise<Converged> {
  for (let attempt = 1; ; attempt++) {
    const secret = await api.getSecret(namespace, name);
    const current = secret ? fromSecretData(secret.data) : { problem: 'there is no Secret yet' };
    const next = await renewal(current, dnsNames, lifetimes, now());
    if (next === null) return { material: (current as { material: TlsMaterial }).material, wrote: null };
    try {
      if (secret === null) await api.createSecret(namespace, newSecret(namespace, name, next.material));
      else await api.updateSecret(namespace, { ...secret, type: secret.type ?? 'kubernetes.io/tls', data: toSecretData(next.material) });
      return { material: next.material, wrote: next.why };
    } catch (err) {
      // Another replica wrote first (AlreadyExists, or Conflict on the resourceVersion): use its.
      if (!(err instanceof KubeApiError && err.status === 409) || attempt >= MAX_TRIES) throw err;
    }
  }
}

function newSecret(namespace: string, name: string, material: TlsMaterial): Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/name': 'sluice-injector', 'app.kubernetes.io/part-of': 'sluice' } },
    type: 'kubernetes.io/tls',
    data: toSecretData(material),
  };
}
