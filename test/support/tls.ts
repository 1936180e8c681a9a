// A throwaway certificate authority and certificates, made with openssl at test time in a temp dir,
// and what a client needs to call a server that presents them.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';

const run = promisify(execFile);

export interface TlsFiles {
  dir: string;
  /** The CA certificate that signed the others (PEM). */
  caFile: string;
  /** A server certificate for 127.0.0.1 and localhost, and its key. */
  certFile: string;
  keyFile: string;
  /** A server certificate from the same CA for another name only (redis.elsewhere.example), and its key. */
  otherNameCertFile: string;
  otherNameKeyFile: string;
  /** A client certificate (for servers that ask for one), and its key. */
  clientCertFile: string;
  clientKeyFile: string;
  /** A second CA that signed nothing here: trusting only it must fail. */
  otherCaFile: string;
  remove(): void;
}

export interface IssueOptions {
  /** The subjectAltName extension's value (`DNS:localhost,IP:127.0.0.1`); none when absent. */
  san?: string;
  /** What the certificate is for (extendedKeyUsage). Default client. */
  usage?: 'client' | 'server';
  /** Signed by the CA (default) or by the other CA. */
  by?: 'ca' | 'other';
  /** The subject's common name. Default `sluice NAME`. */
  cn?: string;
}

/** One more certificate and its key, `NAME.crt` and `NAME.key` in the files' directory. */
export async function issueCertificate(files: TlsFiles, name: string, options: IssueOptions = {}): Promise<{ certFile: string; keyFile: string }> {
  const usage = options.usage === 'server' ? 'serverAuth' : 'clientAuth';
  const ca = options.by === 'other' ? 'other-ca' : 'ca';
  const ext = `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=${usage}\n${options.san ? `subjectAltName=${options.san}\n` : ''}`;
  await sign(files.dir, ca, name, options.cn ?? `sluice ${name}`, ext);
  return { certFile: join(files.dir, `${name}.crt`), keyFile: join(files.dir, `${name}.key`) };
}

/** EC keys: quick to make on a slow machine. */
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** `dir/NAME.crt` and `dir/NAME.key`, signed by `dir/CA.crt`, with the extensions in `ext`. */
async function sign(dir: string, ca: string, name: string, cn: string, ext: string): Promise<void> {
  const at = (file: string) => join(dir, file);
  writeFileSync(at(`${name}.ext`), ext);
  await run('openssl', ['req', '-new', ...NEW_KEY, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', `/CN=${cn}`]);
  await run('openssl', [
    'x509', '-req', '-in', at(`${name}.csr`), '-CA', at(`${ca}.crt`), '-CAkey', at(`${ca}.key`), '-CAcreateserial',
    '-out', at(`${name}.crt`), '-days', '2', '-extfile', at(`${name}.ext`),
  ]);
}

/** Throws a clear error when openssl is missing (Debian package `openssl`). */
export async function makeTlsFiles(): Promise<TlsFiles> {
  await run('openssl', ['version']).catch((err: Error) => {
    throw new Error(`openssl is needed to make test certificates (Debian package openssl): ${err.message}`);
  });
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
  const at = (name: string) => join(dir, name);
  try {
    await run('openssl', ['req', '-x509', ...NEW_KEY, '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '2', '-subj', '/CN=sluice test CA']);
    await run('openssl', ['req', '-x509', ...NEW_KEY, '-keyout', at('other-ca.key'), '-out', at('other-ca.crt'), '-days', '2', '-subj', '/CN=sluice other CA']);
    await sign(
      dir,
      'ca',
      'server',
      'localhost',
      'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n',
    );
    await sign(
      dir,
      'ca',
      'other-name',
      'redis.elsewhere.example',
      'subjectAltName=DNS:redis.elsewhere.example\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
    );
    await sign(dir, 'ca', 'client', 'sluice client', 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    caFile: at('ca.crt'),
    certFile: at('server.crt'),
    keyFile: at('server.key'),
    otherNameCertFile: at('other-name.crt'),
    otherNameKeyFile: at('other-name.key'),
    clientCertFile: at('client.crt'),
    clientKeyFile: at('client.key'),
    otherCaFile: at('other-ca.crt'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The name every test server certificate carries, and that clients check. */
const SERVER_NAME = 'localhost';

export interface ClientTls {
  /** The CAs the client trusts. */
  caFile: string;
  /** A client certificate to present, and its key. */
  certFile?: string;
  keyFile?: string;
}

/** grpc-js channel credentials and options for a TLS server at an IP address whose certificate says localhost. */
export function tlsChannel(tls: ClientTls): { credentials: ChannelCredentials; options: ChannelOptions } {
  const read = (file: string | undefined) => (file === undefined ? null : readFileSync(file));
  return {
    credentials: credentials.createSsl(read(tls.caFile), read(tls.keyFile), read(tls.certFile)),
    options: { 'grpc.ssl_target_name_override': SERVER_NAME },
  };
}

/**
 * A TLS handshake with the server at `address` (HTTP/2 offered, as a gRPC client offers it),
 * trusting only `caFile`: the fingerprint of the certificate it presented, or the error.
 */
export function handshake(address: string, caFile: string): Promise<{ fingerprint256: string } | { error: string }> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), servername: SERVER_NAME, ca: readFileSync(caFile), ALPNProtocols: ['h2'] }, () => {
      resolve({ fingerprint256: socket.getPeerCertificate().fingerprint256 });
      socket.destroy();
    });
    socket.on('error', (err) => resolve({ error: err.message }));
  });
}
