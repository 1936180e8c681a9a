// Certificate files made by someone else (cert-manager, mounted from its Secret): read at start,
// read again periodically, and served anew when they change. Kubelet swaps a Secret volume's
// files at once (a symlink flip), so polling the contents sees either the old pair or the new.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { throttledWarn } from '../log.js';
import { keyMatches, parseCertificate, type KeyPair } from './certificates.js';

/** The pair in the files; throws with a message naming the file that is wrong. */
export function readKeyPair(certFile: string, keyFile: string): KeyPair {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const pair = { cert: read(certFile), key: read(keyFile) };
  const cert = parseCertificate(pair.cert);
  if (cert === null) throw new Error(`${certFile} does not hold a PEM certificate`);
  if (!keyMatches(cert, pair.key)) throw new Error(`${keyFile} is not the private key of ${certFile}`);
  return pair;
}

/** Polls the files every `everyMs`; `serve` gets each new pair that is whole and matching. */
export function watchKeyPair(certFile: string, keyFile: string, first: KeyPair, everyMs: number, serve: (pair: KeyPair) => void, log: Logger): { stop(): void } {
  const warn = throttledWarn(log, 60_000);
  let current = first;
  const timer = setInterval(() => {
    let pair: KeyPair;
    try {
      pair = readKeyPair(certFile, keyFile);
    } catch (err) {
      warn({ err: (err as Error).message }, 'certificate files unusable; still serving the last good pair');
      return;
    }
    if (pair.cert === current.cert && pair.key === current.key) return;
    serve(pair);
    current = pair;
    log.info({ cert: certFile, notAfter: parseCertificate(pair.cert)?.validTo }, 'certificate files changed: serving the new pair');
  }, everyMs).unref();
  return { stop: () => clearInterval(timer) };
}
