// The Redis store over a Unix socket (store.redis.socket; upstream's REDIS_SOCKET_TYPE=unix, its
// default): a real redis-server listening on a socket of its own, with a password.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar } from '../support/sidecar.js';
import { checkLimit, storeSemantics, testResource, within } from '../support/store-checks.js';
import { connectEnvoy, desc } from '../envoy/client.js';
import { configDir } from '../envoy/support.js';

const RESOURCES = 'resources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n';
const socket = join(mkdtempSync(join(tmpdir(), 'sluice-redis-socket-')), 'redis.sock');

let server: RedisProcess;
const stores: RedisStore[] = [];
function storeFor(...lines: string[]): RedisStore {
  const yaml = `store:\n  redis:\n${lines.map((line) => `    ${line}`).join('\n')}\n${RESOURCES}`;
  const store = new RedisStore(parsePolicy(yaml, 'policy.yaml').store.redis!);
  stores.push(store);
  return store;
}

beforeAll(async () => {
  server = await startRedis(['--unixsocket', socket, '--unixsocketperm', '700'], { password: 'socket-pw' });
});
afterAll(async () => {
  await Promise.all(stores.map((store) => store.close()));
  await server?.stop();
});

describe('store.redis.socket', () => {
  let shared: RedisStore;
  beforeAll(() => {
    shared = storeFor(`socket: ${socket}`, 'password: socket-pw');
  });
  storeSemantics(() => shared);

  it('decides through the socket, not the TCP port', async () => {
    await checkLimit(shared);
    const clients = String(await server.client.call('CLIENT', 'LIST'));
    expect(clients).toContain(`laddr=${socket}`);
  });

  it('a socket that is not there fails the decision at once, naming the path', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    const missing = storeFor(`socket: ${socket}.missing`, 'password: socket-pw');
    await expect(within(5_000, missing.acquire(res, `${res.name}|t`, 1, 'p'))).rejects.toThrow(/ENOENT|redis\.sock\.missing/);
  });
});

describe('REDIS_URL as a socket path, under envoy.upstream_env', () => {
  it('decides Envoy requests in the Redis behind the socket', async () => {
    const dir = configDir({ 'api.yaml': 'domain: api\ndescriptors:\n  - key: user\n    rate_limit: { unit: hour, requests_per_unit: 2 }\n' });
    const sidecar = await startSidecar(`store:\n  timeout: 5s\nenvoy:\n  upstream_env: true\n  config_dir: ${dir}\n  lease: { enabled: false }\n`, { REDIS_URL: socket, REDIS_AUTH: 'socket-pw' });
    const client = connectEnvoy(sidecar.address);
    try {
      const codes: string[] = [];
      for (let i = 0; i < 3; i++) codes.push((await client.shouldRateLimit('api', [desc('user', 'ann')])).overall_code);
      expect(codes).toEqual(['OK', 'OK', 'OVER_LIMIT']);
      expect((await server.client.keys('*user*')).length).toBe(1);
    } finally {
      client.close();
      await sidecar.stop();
    }
  });
});
