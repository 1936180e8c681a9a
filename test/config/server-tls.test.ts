// server.tls in the policy file: its files are read and checked at load (a certificate, its own
// key, the client CA), each problem named by its field, and the policy keeps their absolute paths.
import { copyFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '../../src/config/load.js';
import { run } from '../support/command.js';
import { runCli } from '../support/run-cli.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';

const RESOURCES = 'resources: [{ name: api, limits: [{ name: l, algorithm: fixed_window, rate: 1/1s }] }]\n';

/** The policy with `server.tls: { FIELDS }` on line 2. */
const withTls = (fields: string) => `server:\n  tls: { ${fields} }\n${RESOURCES}`;

function problems(yaml: string): string[] {
  try {
    parsePolicy(yaml, 'policy.yaml');
  } catch (err) {
    if (err instanceof PolicyError) return err.problems;
    throw err;
  }
  throw new Error('expected the policy to be refused');
}

let files: TlsFiles;
beforeAll(async () => {
  files = await makeTlsFiles();
});
afterAll(() => files?.remove());

describe('server.tls', () => {
  it('is off unless given', () => {
    expect(parsePolicy(RESOURCES, 'policy.yaml').server.tls).toBeNull();
  });

  it('keeps the files by absolute path, and the SAN as Go reads a host name', () => {
    const policy = parsePolicy(withTls(`cert_file: ${files.certFile}, key_file: ${files.keyFile}, client_ca_file: ${files.caFile}, client_san: localhost.`), 'policy.yaml');
    expect(policy.server.tls).toEqual({ certFile: files.certFile, keyFile: files.keyFile, clientCaFile: files.caFile, clientSan: 'localhost' });
    // A path relative to where sluice runs, and an IPv6 address in brackets.
    const relativeCert = relative(process.cwd(), files.certFile);
    const ipv6 = parsePolicy(withTls(`cert_file: ${relativeCert}, key_file: ${files.keyFile}, client_ca_file: ${files.caFile}, client_san: "[::1]"`), 'policy.yaml');
    expect(ipv6.server.tls).toMatchObject({ certFile: files.certFile, clientSan: '::1' });
    expect(parsePolicy(withTls(`cert_file: ${files.certFile}, key_file: ${files.keyFile}`), 'policy.yaml').server.tls).toEqual({
      certFile: files.certFile,
      keyFile: files.keyFile,
      clientCaFile: null,
      clientSan: null,
    });
  });

  it('needs the certificate and its key: each missing one is named', () => {
    expect(problems(withTls(`key_file: ${files.keyFile}`))).toEqual([
      "server.tls.cert_file (line 2, column 8): required (the server's certificate, and any intermediates after it: a PEM file)",
    ]);
    expect(problems(withTls(`cert_file: ${files.certFile}`))).toEqual(['server.tls.key_file (line 2, column 8): required (the private key of cert_file: a PEM file)']);
  });

  it('names a file that cannot be read, or that holds something else', () => {
    const missing = join(files.dir, 'missing.crt');
    expect(problems(withTls(`cert_file: ${missing}, key_file: ${files.dir}, client_ca_file: ${files.keyFile}`))).toEqual([
      expect.stringMatching(new RegExp(`^server\\.tls\\.cert_file \\(line 2, column \\d+\\): cannot read ${missing}: no such file$`)),
      expect.stringMatching(new RegExp(`^server\\.tls\\.key_file \\(line 2, column \\d+\\): cannot read ${files.dir}: is a directory, not a file$`)),
      expect.stringMatching(
        new RegExp(`^server\\.tls\\.client_ca_file \\(line 2, column \\d+\\): ${files.keyFile}: expected a PEM file with a certificate \\(-----BEGIN CERTIFICATE-----\\)$`),
      ),
    ]);
  });

  it('refuses a key that is not the certificate’s, or that is encrypted', async () => {
    expect(problems(withTls(`cert_file: ${files.certFile}, key_file: ${files.clientKeyFile}`))).toEqual([
      expect.stringMatching(/^server\.tls\.key_file \(line 2, column \d+\): \S+client\.key: not the private key of the certificate in cert_file$/),
    ]);
    const encrypted = join(files.dir, 'encrypted.key');
    await run('openssl', ['pkey', '-in', files.keyFile, '-aes256', '-passout', 'pass:secret', '-out', encrypted]);
    expect(problems(withTls(`cert_file: ${files.certFile}, key_file: ${encrypted}`))).toEqual([
      expect.stringMatching(/^server\.tls\.key_file \(line 2, column \d+\): \S+encrypted\.key: the key is encrypted: sluice reads unencrypted keys only$/),
    ]);
  });

  it('refuses a PEM block that is not a certificate', () => {
    const broken = join(files.dir, 'broken.crt');
    writeFileSync(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(problems(withTls(`cert_file: ${broken}, key_file: ${files.keyFile}, client_ca_file: ${broken}`))).toEqual([
      expect.stringMatching(/^server\.tls\.cert_file \(line 2, column \d+\): \S+broken\.crt: its first certificate cannot be read$/),
      expect.stringMatching(/^server\.tls\.client_ca_file \(line 2, column \d+\): \S+broken\.crt: its first certificate cannot be read$/),
    ]);
  });

  it('client_san: a DNS name or an IP address, and only with client_ca_file', () => {
    const pair = `cert_file: ${files.certFile}, key_file: ${files.keyFile}`;
    expect(problems(withTls(`${pair}, client_san: localhost`))).toEqual([
      expect.stringMatching(/^server\.tls\.client_san \(line 2, column \d+\): client_san needs client_ca_file: without it no client certificate is asked for$/),
    ]);
    for (const san of ['"two words"', '"*.example.com"', '"spiffe://cluster/ns/a"']) {
      expect(problems(withTls(`${pair}, client_ca_file: ${files.caFile}, client_san: ${san}`))).toEqual([
        expect.stringMatching(/^server\.tls\.client_san \(line 2, column \d+\): ".*": expected a DNS name or an IP address: the SAN every client certificate must carry$/),
      ]);
    }
  });

  it('is checked by sluice check, which shows what will be served', async () => {
    const policy = join(files.dir, 'policy.yaml');
    writeFileSync(policy, withTls(`cert_file: ${files.certFile}, key_file: ${files.keyFile}, client_ca_file: ${files.caFile}, client_san: localhost`));
    const ok = await runCli(['check', policy]);
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(ok.stdout).toMatch(
      new RegExp(
        `^${policy}: ok, 1 resource\\(s\\)\\n  server\\.tls: ${files.certFile} \\(CN=localhost; DNS:localhost, IP Address:127\\.0\\.0\\.1; valid until .* GMT\\); client certificates signed by ${files.caFile}, carrying the SAN localhost\\n$`,
      ),
    );
    copyFileSync(files.clientKeyFile, join(files.dir, 'wrong.key'));
    writeFileSync(policy, withTls(`cert_file: ${files.certFile}, key_file: ${join(files.dir, 'wrong.key')}`));
    const refused = await runCli(['check', policy]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/server\.tls\.key_file \(line 2, column \d+\): \S+wrong\.key: not the private key of the certificate in cert_file/);
  });
});
