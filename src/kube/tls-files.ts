// Certificate files made by someone else (cert-manager, mounted from its Secret): read at start,
// read again periodically, and served anew when they change. Kubelet swaps a Secret volume's
// files at once (a symlink flip), so polling the contents sees either the old pair or the new.
import type { Logger } from 'pino';
import { throttledWarn } from '../log.js';
import { parseCertificate, readKeyPair, type KeyPair } from '../config/pem.js';

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
