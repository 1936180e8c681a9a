// server.tls.client_san: every call must come from a client whose certificate carries this SAN,
// matched as envoyproxy/ratelimit matches GRPC_CLIENT_TLS_SAN (Go's x509 VerifyHostname): an IP
// address against the certificate's IP SANs, a name against its DNS SANs, case-insensitively, a
// `*` standing for a whole first label only. The subject's CN is not read, nor are URI SANs.
//
// Upstream refuses such a client in the TLS handshake, so all it sees is a connection that
// failed. sluice lets the handshake finish and answers each call PERMISSION_DENIED, naming the
// SAN it requires: the certificate was verified against client_ca_file, so the client is
// authenticated (not UNAUTHENTICATED); it is not one that may call.
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';

/** Verdicts remembered, by certificate: a client presents the same one on every call. */
const MAX_REMEMBERED = 1_000;

/** True when `cert` carries `san` (a DNS name or an IP address) as upstream would find it. */
export function carriesSan(cert: X509Certificate, san: string): boolean {
  if (isIP(san) !== 0) return cert.checkIP(san) !== undefined;
  return cert.checkHost(san, { subject: 'never', wildcards: true, partialWildcards: false, multiLabelWildcards: false, singleLabelSubdomains: false }) !== undefined;
}

/** `refused` is told of each call refused: the peer's address and the SANs its certificate carries. */
export function clientSanInterceptor(san: string, refused: (peer: string, subjectAltName: string) => void): ServerInterceptor {
  const verdicts = new Map<string, boolean>();
  const allowed = (peer: PeerCertificate | undefined): boolean => {
    if (!peer?.raw) return false;
    let verdict = verdicts.get(peer.fingerprint256);
    if (verdict === undefined) {
      verdict = carriesSan(new X509Certificate(peer.raw), san);
      if (verdicts.size >= MAX_REMEMBERED) verdicts.clear();
      verdicts.set(peer.fingerprint256, verdict);
    }
    return verdict;
  };
  const details = `the client certificate does not carry the SAN ${san} that this sidecar requires (server.tls.client_san)`;
  return (_method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, forward) => {
            const peer = call.getAuthContext().sslPeerCertificate;
            if (allowed(peer)) {
              forward(metadata);
              return;
            }
            refused(call.getPeer(), peer?.subjectaltname ?? 'none');
            call.sendStatus({ code: status.PERMISSION_DENIED, details });
          },
        }),
    });
}
