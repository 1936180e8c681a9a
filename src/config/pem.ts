// Certificates and keys as sluice reads them from PEM files, for every server that serves TLS
// from files (the gRPC port, the injector's webhook): parsed with node:crypto, a key checked
// against its certificate, and a pair read whole or not at all.
import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate } from 'node:crypto';

/** A certificate and its private key, both PEM. */
export interface KeyPair {
  cert: string;
  key: string;
}

/** Parsed, or null when the PEM is not one certificate. */
export function parseCertificate(pem: string): X509Certificate | null {
  try {
    return new X509Certificate(pem);
  } catch {
    return null;
  }
}

/** True when `keyPem` is the private key of `cert`. */
export function keyMatches(cert: X509Certificate, keyPem: string): boolean {
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** The pair in the files; throws with a message naming the file that is wrong. */
export function readKeyPair(certFile: string, keyFile: string): KeyPair {
  const pair = { cert: readPem(certFile), key: readPem(keyFile) };
  const cert = parseCertificate(pair.cert);
  if (cert === null) throw new Error(`${certFile} does not hold a PEM certificate`);
  if (!keyMatches(cert, pair.key)) throw new Error(`${keyFile} is not the private key of ${certFile}`);
  return pair;
}

/** A file's text; throws with a message naming the file. */
export function readPem(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
}
