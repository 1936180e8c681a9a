// The Redis store on Redis Sentinel: one master, one replica, three sentinels, all real processes.
// The data nodes and the sentinels each have their own password, as store.redis gives them. The
// master is killed at the end; the store must find the promoted replica by itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { scopeOf } from '../../src/decide/scope.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { waitFor } from '../support/redis-server.js';
import { startSentinel, type SentinelSetup } from '../support/redis-sentinel.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';
import { outageSummary, probeDecisions, storeSemantics, take, testResource, within } from '../support/store-checks.js';

let sentinel: SentinelSetup;
let store: RedisStore;
const extraStores: RedisStore[] = [];

function sentinelStore(sentinelPassword: string, setup = sentinel, ...more: string[]): RedisStore {
  const yaml = [
    'store:',
    '  redis:',
    '    sentinel:',
    `      master: ${setup.name}`,
    `      nodes: [${setup.sentinelNodes.join(', ')}]`,
    `      password: ${sentinelPassword}`,
    '    password: data-pw',
    ...more.map((line) => `    ${line}`),
    'resources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]',
    '',
  ].join('\n');
  return new RedisStore(parsePolicy(yaml, 'policy.yaml').store.redis!);
}

beforeAll(async () => {
  sentinel = await startSentinel({ password: 'data-pw', sentinelPassword: 'sentinel-pw' });
  store = sentinelStore('sentinel-pw');
});

afterAll(async () => {
  await Promise.all([store, ...extraStores].map((s) => s?.close()));
  await sentinel?.stop();
});

describe('Sentinel', () => {
  storeSemantics(() => store);

  it('talks to the master the sentinels name', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    const scope = scopeOf(res, ['where']);
    expect((await take(store, res, scope)).granted).toBe(true);
    const [key] = store.keysOf(res, scope);
    expect(await sentinel.masterAddress()).toBe(`127.0.0.1:${sentinel.master.port}`);
    expect(await sentinel.master.client.exists(key!)).toBe(1);
  });

  it('a wrong sentinel password fails with a clear error, not a hang, and the store keeps trying', async () => {
    const bad = sentinelStore('later-pw');
    extraStores.push(bad);
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    const scope = scopeOf(res, ['t']);
    await expect(within(10_000, bad.acquire(res, scope, 1, 'p1'))).rejects.toThrow(/All sentinels are unreachable.*WRONGPASS/);
    // Once the sentinels accept that password too, the same store gets through by itself.
    for (const s of sentinel.sentinels) await s.client.call('ACL', 'SETUSER', 'default', '>later-pw');
    const granted = await waitFor('the store to reach the master once its sentinel password works', 15_000, async () => {
      const v = await within(10_000, bad.acquire(res, scope, 1, 'p2')).catch(() => undefined);
      return v?.granted ? v : undefined;
    });
    expect(granted.remaining).toBe(2);
  });

  it('no reachable sentinel: decisions fail with a clear error, not a hang', async () => {
    const yaml = 'store:\n  redis:\n    sentinel: { master: mymaster, nodes: [127.0.0.1:1, 127.0.0.1:2] }\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n';
    const dead = new RedisStore(parsePolicy(yaml, 'policy.yaml').store.redis!);
    extraStores.push(dead);
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    await expect(within(10_000, dead.acquire(res, scopeOf(res, ['t']), 1, 'p'))).rejects.toThrow(/All sentinels are unreachable/);
  });

  it('after the master is killed and the replica promoted, decisions work again on the new master', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 5/1d }']);
    const scope = scopeOf(res, ['failover']);
    expect((await take(store, res, scope, 2)).granted).toBe(true);
    // Make sure the replica has the charge before the master dies (replication is asynchronous).
    expect(await sentinel.master.client.call('WAIT', '1', '5000')).toBe(1);

    const probe = probeDecisions(store);
    await waitFor('the probe to get answers', 10_000, async () => (probe.succeeded() >= 3 ? true : undefined), 10);
    const killedAt = Date.now() - probe.startedAt;
    const { promotedAfterMs } = await sentinel.killMaster(30_000);
    // Decisions work again: poll (bounded) until one is granted.
    const after = await waitFor('a decision after the failover', 20_000, async () => {
      const v = await take(store, res, scope, 1);
      return v.granted ? v : undefined;
    });
    // A probe call that started before the promotion may still fail after it: wait for a fresh answer.
    await waitFor('the probe to be answered again', 20_000, async () => (probe.lastOk() ? true : undefined), 10);
    const records = await probe.stop();
    const summary = outageSummary(records, killedAt);
    console.log(`sentinel failover: replica promoted ${promotedAfterMs} ms after the kill; store calls: ${JSON.stringify(summary)}`);

    // The charge made before the failover survived it: 5 - 2 - 1 left.
    expect(after.remaining).toBe(2);
    expect(await sentinel.masterAddress()).toBe(`127.0.0.1:${sentinel.replica.port}`);
    const [key] = store.keysOf(res, scope);
    expect(await sentinel.replica.client.exists(key!)).toBe(1);
    // No call hung: every one was answered or failed, and calls succeed again at the end.
    expect(summary.hung).toBe(0);
    expect(records.at(-1)?.ok).toBe(true);
  });
});

describe('Sentinel over TLS (sentinels and data nodes alike)', () => {
  let files: TlsFiles;
  let setup: SentinelSetup;
  let tlsStore: RedisStore;
  beforeAll(async () => {
    files = await makeTlsFiles();
    setup = await startSentinel({ password: 'data-pw', sentinelPassword: 'sentinel-pw', tls: files });
    tlsStore = sentinelStore('sentinel-pw', setup, `tls: { ca_file: ${files.caFile} }`);
  });
  afterAll(async () => {
    await tlsStore?.close();
    await setup?.stop();
    files?.remove();
  });

  storeSemantics(() => tlsStore);

  it('the decisions reach the master over TLS', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    const scope = scopeOf(res, ['tls']);
    expect((await take(tlsStore, res, scope)).granted).toBe(true);
    expect(await setup.master.client.exists(store.keysOf(res, scope)[0]!)).toBe(1);
    expect(setup.master.url).toMatch(/^rediss:/); // the master has no plain port at all
  });

  it('without the CA the sentinels are not trusted: a clear error, not a hang', async () => {
    const bad = sentinelStore('sentinel-pw', setup, 'tls: {}');
    extraStores.push(bad);
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    // ioredis does not keep the TLS reason of a sentinel connection; it says the sentinels are unreachable.
    await expect(within(10_000, bad.acquire(res, scopeOf(res, ['t']), 1, 'p'))).rejects.toThrow(/All sentinels are unreachable/);
  });

  it('skip_hostname_verification reaches the sentinels and the master under a name their certificates do not carry; without it they are refused', async () => {
    const named = sentinelStore('sentinel-pw', setup, `tls: { ca_file: ${files.caFile}, server_name: elsewhere.example, skip_hostname_verification: true }`);
    const refused = sentinelStore('sentinel-pw', setup, `tls: { ca_file: ${files.caFile}, server_name: elsewhere.example }`);
    extraStores.push(named, refused);
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    expect((await take(named, res, scopeOf(res, ['named']))).granted).toBe(true);
    await expect(within(10_000, refused.acquire(res, scopeOf(res, ['t']), 1, 'p'))).rejects.toThrow(/All sentinels are unreachable/);
  });
});
