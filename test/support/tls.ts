// A throwaway certificate authority and certificates, made with openssl at test time in a temp dir.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

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

/** Throws a clear error when openssl is missing (Debian package `openssl`). */
export async function makeTlsFiles(): Promise<TlsFiles> {
  await run('openssl', ['version']).catch((err: Error) => {
    throw new Error(`openssl is needed to make test certificates (Debian package openssl): ${err.message}`);
  });
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
  const at = (name: string) => join(dir, name);
  // EC keys: quick to make on a slow machine.
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  try {
    await run('openssl', ['req', '-x509', ...newKey, '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '2', '-subj', '/CN=sluice test CA']);
    await run('openssl', ['req', '-x509', ...newKey, '-keyout', at('other-ca.key'), '-out', at('other-ca.crt'), '-days', '2', '-subj', '/CN=sluice other CA']);
    const sign = async (name: string, cn: string, ext: string) => {
      writeFileSync(at(`${name}.ext`), ext);
      await run('openssl', ['req', '-new', ...newKey, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', `/CN=${cn}`]);
      await run('openssl', [
        'x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.crt'), '-CAkey', at('ca.key'), '-CAcreateserial',
        '-out', at(`${name}.crt`), '-days', '2', '-extfile', at(`${name}.ext`),
      ]);
    };
    await sign(
      'server',
      'localhost',
      'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n',
    );
    await sign(
      'other-name',
      'redis.elsewhere.example',
      'subjectAltName=DNS:redis.elsewhere.example\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
    );
    await sign('client', 'sluice client', 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
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
