// The Redis store behind AUTH (a password, an ACL user) and TLS (a CA file, a client certificate),
// each on a real redis-server of its own, configured through store.redis as a policy file says it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import type { RedisConfig } from '../../src/config/policy.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { checkLimit, storeSemantics, testResource, within } from '../support/store-checks.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';

const RESOURCES = 'resources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n';

/** store.redis compiled from these YAML lines, exactly as a policy file would give it. */
function redisConfig(...lines: string[]): RedisConfig {
  const yaml = `store:\n  redis:\n${lines.map((line) => `    ${line}`).join('\n')}\n${RESOURCES}`;
  return parsePolicy(yaml, 'policy.yaml').store.redis!;
}

const stores: RedisStore[] = [];
function storeFor(...lines: string[]): RedisStore {
  const store = new RedisStore(redisConfig(...lines));
  stores.push(store);
  return store;
}

/** A store that cannot work: its first decision must fail quickly with this error, not hang. */
async function expectFailure(store: RedisStore, message: RegExp): Promise<void> {
  const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
  await expect(within(5_000, store.acquire(res, `${res.name}|t`, 1, 'p'))).rejects.toThrow(message);
}

let tls: TlsFiles;
let password: RedisProcess;
let acl: RedisProcess;
let tlsServer: RedisProcess;
let mtlsServer: RedisProcess;
/** A TLS server whose certificate names redis.elsewhere.example, not the address it is reached at. */
let otherNameServer: RedisProcess;

beforeAll(async () => {
  tls = await makeTlsFiles();
  const serverTls = { certFile: tls.certFile, keyFile: tls.keyFile, caFile: tls.caFile };
  [password, acl, tlsServer, mtlsServer, otherNameServer] = await Promise.all([
    startRedis([], { password: 'default-pw' }),
    // The default user has a password too, so only the ACL user's own credentials get in; the
    // user may touch sluice's keys and no others.
    startRedis([], { password: 'default-pw', users: ['sluice on >sluice-pw ~sluice:* &* +@all'] }),
    startRedis([], { tls: serverTls }),
    startRedis([], { tls: { ...serverTls, authClients: true } }),
    startRedis([], { tls: { ...serverTls, certFile: tls.otherNameCertFile, keyFile: tls.otherNameKeyFile } }),
  ]);
});

afterAll(async () => {
  await Promise.all(stores.map((store) => store.close()));
  await Promise.all([password, acl, tlsServer, mtlsServer, otherNameServer].map((server) => server?.stop()));
  tls?.remove();
});

describe('AUTH with a password', () => {
  let shared: RedisStore;
  beforeAll(() => {
    shared = storeFor(`url: redis://127.0.0.1:${password.port}`, 'password: default-pw');
  });
  storeSemantics(() => shared);

  it('a password in the url works too', async () => {
    await checkLimit(storeFor(`url: redis://:default-pw@127.0.0.1:${password.port}`));
  });

  it('a wrong password fails at once with WRONGPASS', async () => {
    await expectFailure(storeFor(`url: redis://127.0.0.1:${password.port}`, 'password: wrong'), /WRONGPASS/);
  });

  it('no password fails at once with NOAUTH', async () => {
    await expectFailure(storeFor(`url: redis://127.0.0.1:${password.port}`), /NOAUTH/);
  });
});

describe('AUTH as an ACL user', () => {
  let shared: RedisStore;
  beforeAll(() => {
    shared = storeFor(`url: redis://127.0.0.1:${acl.port}`, 'username: sluice', 'password: sluice-pw');
  });
  storeSemantics(() => shared);

  it('the connection is that user, and its ACL (sluice:* keys only) lets every script through', async () => {
    const clients = (await acl.client.call('CLIENT', 'LIST')) as string;
    expect(clients).toMatch(/ user=sluice /);
    const keys = await acl.client.keys('*');
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) expect(key.startsWith('sluice:')).toBe(true);
  });

  it('a user and password in the url work too', async () => {
    await checkLimit(storeFor(`url: redis://sluice:sluice-pw@127.0.0.1:${acl.port}`));
  });

  it('a wrong password for the user fails at once with WRONGPASS', async () => {
    await expectFailure(storeFor(`url: redis://127.0.0.1:${acl.port}`, 'username: sluice', 'password: default-pw'), /WRONGPASS/);
  });
});

describe('TLS', () => {
  let shared: RedisStore;
  beforeAll(() => {
    shared = storeFor(`url: rediss://127.0.0.1:${tlsServer.port}`, `tls: { ca_file: ${tls.caFile} }`);
  });
  storeSemantics(() => shared);

  it('a redis:// url with a tls block is TLS too, and server_name is checked against the certificate', async () => {
    await checkLimit(storeFor(`url: redis://127.0.0.1:${tlsServer.port}`, `tls: { ca_file: ${tls.caFile}, server_name: localhost }`));
    await expectFailure(
      storeFor(`url: redis://127.0.0.1:${tlsServer.port}`, `tls: { ca_file: ${tls.caFile}, server_name: elsewhere.example }`),
      /last connection error: Hostname\/IP does not match certificate's altnames/,
    );
  });

  it('without the CA file the server is not trusted: a clear error, not a hang', async () => {
    await expectFailure(storeFor(`url: rediss://127.0.0.1:${tlsServer.port}`), /last connection error: self-signed certificate in certificate chain/);
  });

  it('a CA that did not sign the server is not trusted either', async () => {
    await expectFailure(
      storeFor(`url: rediss://127.0.0.1:${tlsServer.port}`, `tls: { ca_file: ${tls.otherCaFile} }`),
      /last connection error: (self-signed certificate in certificate chain|unable to verify)/,
    );
  });

  it('skip_hostname_verification accepts a certificate for another name, still checking that the CA signed it', async () => {
    const url = `url: rediss://127.0.0.1:${otherNameServer.port}`;
    await checkLimit(storeFor(url, `tls: { ca_file: ${tls.caFile}, skip_hostname_verification: true }`));
    await expectFailure(storeFor(url, `tls: { ca_file: ${tls.caFile} }`), /last connection error: Hostname\/IP does not match certificate's altnames/);
    await expectFailure(
      storeFor(url, `tls: { ca_file: ${tls.otherCaFile}, skip_hostname_verification: true }`),
      /last connection error: (self-signed certificate in certificate chain|unable to verify)/,
    );
  });

  it('insecure_skip_verify connects without checking', async () => {
    await checkLimit(storeFor(`url: rediss://127.0.0.1:${tlsServer.port}`, 'tls: { insecure_skip_verify: true }'));
  });

  it('plain redis:// to a TLS port fails, it does not hang', async () => {
    await expectFailure(storeFor(`url: redis://127.0.0.1:${tlsServer.port}`), /max retries/);
  });

  it('a server that asks for a client certificate gets cert_file and key_file', async () => {
    await checkLimit(
      storeFor(`url: rediss://127.0.0.1:${mtlsServer.port}`, `tls: { ca_file: ${tls.caFile}, cert_file: ${tls.clientCertFile}, key_file: ${tls.clientKeyFile} }`),
    );
    await expectFailure(storeFor(`url: rediss://127.0.0.1:${mtlsServer.port}`, `tls: { ca_file: ${tls.caFile} }`), /max retries|ECONNRESET|certificate/);
  });
});
