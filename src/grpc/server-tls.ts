// TLS on the gRPC port from files (server.tls), watched: when the certificate, its key or the
// client CA change (written in place, renamed over, or a Kubernetes Secret's `..data` symlink
// swapped), the handshakes from then on use the new ones, without a restart; connections already
// open keep theirs. A set that does not load (a key that is not the certificate's, a file half
// written) is logged, and the set being served stays. SIGHUP reads them again too.
//
// grpc-js's FileWatcherCertificateProvider is not used: it polls, and it hands grpc-js "no
// certificate" while a file is missing or "a certificate that does not load" when a pair is
// half swapped, on which grpc-js closes every new connection until the next poll. Here a set is
// loaded before grpc-js is given it, so grpc-js is only ever given one that loads.
import { dirname } from 'node:path';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ServerTls } from '../config/policy.js';
import { parseCertificate, readKeyPair, readPem } from '../config/pem.js';
import { DirectoryWatch } from '../config/watch.js';

/** grpc-js server credentials whose certificate, key and CA can be replaced while it serves. */
class ReplaceableCredentials extends ServerCredentials {
  constructor(options: { requestCert: boolean; rejectUnauthorized: boolean; handshakeTimeout: number }, context: SecureContextOptions) {
    super(options, context);
  }

  /** grpc-js makes the TLS server's context of it: new handshakes use it. */
  replace(context: SecureContextOptions): void {
    this.updateSecureContextOptions(context);
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

/** The texts of the files, as served. */
interface TlsTexts {
  cert: string;
  key: string;
  ca: string | null;
}

/** Quiet time after the last change before the files are read: a swap of several files is one. */
const DEBOUNCE_MS = 200;
/** How soon to try watching a directory again when the watch fails. */
const REWATCH_MS = 1_000;

export class ServerCertificates {
  private readonly replaceable: ReplaceableCredentials;
  private served: TlsTexts;
  private readonly watches: DirectoryWatch[];

  /** Throws, naming the file, when the files do not load now. */
  constructor(
    private readonly tls: ServerTls,
    /** The TLS handshake must be done within this (server.handshake_timeout). */
    handshakeTimeoutMs: number,
    private readonly log: Logger,
  ) {
    this.served = readTexts(tls);
    // Without client_ca_file no client certificate is asked for, as upstream.
    const clientCertificates = tls.clientCaFile !== null;
    this.replaceable = new ReplaceableCredentials(
      { requestCert: clientCertificates, rejectUnauthorized: clientCertificates, handshakeTimeout: handshakeTimeoutMs },
      contextOf(this.served),
    );
    const dirs = new Set([tls.certFile, tls.keyFile, ...(tls.clientCaFile === null ? [] : [tls.clientCaFile])].map((file) => dirname(file)));
    this.watches = [...dirs].map(
      (dir) =>
        new DirectoryWatch(dir, {
          debounceMs: DEBOUNCE_MS,
          rewatchMs: REWATCH_MS,
          onChange: () => this.reload(),
          onWatchError: (err) => log.warn({ err, dir }, 'cannot watch the directory of server.tls files; trying again every second (SIGHUP reloads)'),
        }),
    );
    this.logServed('gRPC TLS certificate loaded');
  }

  get credentials(): ServerCredentials {
    return this.replaceable;
  }

  /** Reads the files again soon (SIGHUP), once for a burst of calls. */
  requestReload(): void {
    this.watches[0]!.changed();
  }

  close(): void {
    for (const watch of this.watches) watch.close();
  }

  private reload(): void {
    let next: TlsTexts;
    try {
      next = readTexts(this.tls);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'server.tls files not reloaded: still serving the previous certificate');
      return;
    }
    if (next.cert === this.served.cert && next.key === this.served.key && next.ca === this.served.ca) return;
    this.served = next;
    this.replaceable.replace(contextOf(next));
    this.logServed('gRPC TLS certificate reloaded');
  }

  /** What is served now; a warning if the certificate is not valid today. */
  private logServed(msg: string): void {
    const cert = parseCertificate(this.served.cert)!;
    const now = Date.now();
    const fields = { cert: this.tls.certFile, subject: cert.subject, subjectAltName: cert.subjectAltName, notAfter: cert.validTo, fingerprint256: cert.fingerprint256 };
    this.log.info(fields, msg);
    if (new Date(cert.validTo).getTime() < now || new Date(cert.validFrom).getTime() > now) this.log.warn(fields, 'the gRPC TLS certificate is not valid now: clients will refuse it');
  }
}

/** The files' texts, checked as the TLS server will load them; throws naming what is wrong. */
function readTexts(tls: ServerTls): TlsTexts {
  const texts = { ...readKeyPair(tls.certFile, tls.keyFile), ca: tls.clientCaFile === null ? null : readPem(tls.clientCaFile) };
  if (texts.ca !== null && parseCertificate(texts.ca) === null) throw new Error(`${tls.clientCaFile} does not hold a PEM certificate`);
  try {
    createSecureContext(contextOf(texts));
  } catch (err) {
    throw new Error(`${tls.certFile}, ${tls.keyFile}: ${(err as Error).message}`);
  }
  return texts;
}

function contextOf(texts: TlsTexts): SecureContextOptions {
  return texts.ca === null ? { cert: texts.cert, key: texts.key } : { cert: texts.cert, key: texts.key, ca: texts.ca };
}
