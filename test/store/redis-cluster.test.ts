// The Redis store on Redis Cluster: three masters and three replicas, real processes, every node
// with a password. Scopes spread over the masters; each decision stays on its scope's slot. A
// master is killed at the end; the store must follow its replica's promotion by itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from 'ioredis';
import { parsePolicy } from '../../src/config/load.js';
import type { Resource } from '../../src/config/policy.js';
import { scopeOf } from '../../src/decide/scope.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { connect, type SluiceClient } from '../support/client.js';
import { startCluster, type ClusterSetup } from '../support/redis-cluster.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';
import { waitFor } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import {
  checkAllOrNothing,
  checkLimit,
  checkRefundOnce,
  checkRelease,
  outageSummary,
  PROBE_RESOURCE,
  probeDecisions,
  storeSemantics,
  take,
  testResource,
  within,
} from '../support/store-checks.js';

let cluster: ClusterSetup;
let store: RedisStore;

function clusterYaml(nodes: string[], ...more: string[]): string {
  return ['store:', '  redis:', `    cluster: { nodes: [${nodes.join(', ')}] }`, '    password: cluster-pw', ...more.map((line) => `    ${line}`)].join('\n');
}

beforeAll(async () => {
  cluster = await startCluster({ password: 'cluster-pw' });
  // Two seed nodes are enough: the rest of the cluster is discovered from them.
  const yaml = `${clusterYaml(cluster.nodes.slice(0, 2))}\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n`;
  store = new RedisStore(parsePolicy(yaml, 'policy.yaml').store.redis!);
});

afterAll(async () => {
  await store?.close();
  await cluster?.stop();
});

describe('Cluster', () => {
  storeSemantics(() => store);

  it('is a Cluster client', () => {
    expect(store.client).toBeInstanceOf(Cluster);
    expect(store.batcher).toBeNull();
  });

  it('hears a second error on a node connection (see guardSockets) instead of ending the process', async () => {
    await take(store, testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']), 'sockets', 1);
    const nodes = (store.client as Cluster).nodes('all');
    expect(nodes.length).toBeGreaterThan(0);
    for (const node of nodes.filter((each) => each.status === 'ready')) {
      const socket = (node as unknown as { stream: NodeJS.EventEmitter }).stream;
      expect(() => {
        socket.emit('error', new Error('first'));
        socket.emit('error', new Error('second'));
      }).not.toThrow();
    }
  });

  it('scopes spread over every master, and acquire, release and refund work on each', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }', '{ name: inflight, algorithm: concurrency, max: 2, ttl: 1h }']);
    const masters = new Map<string, string[]>();
    const enough = () => masters.size === 3 && [...masters.values()].every((tenants) => tenants.length >= 4);
    for (let i = 0; !enough(); i++) {
      expect(i).toBeLessThan(200);
      const tenant = `tenant-${i}`;
      const scope = scopeOf(res, [tenant]);
      const keys = store.keysOf(res, scope);
      const slots = new Set(await Promise.all(keys.map((key) => cluster.keySlot(key))));
      expect(slots.size).toBe(1); // every key of a scope in one slot
      const owner = await cluster.ownerOf([...slots][0]!);
      masters.set(owner.address, [...(masters.get(owner.address) ?? []), tenant]);
      // The decision's keys land on that master and nowhere else.
      const granted = await take(store, res, scope, 1);
      expect(granted.granted).toBe(true);
      expect(await owner.process.client.exists(keys[0]!)).toBe(1);
    }
    expect(masters.size).toBe(3);
    // On every master: to the limit, all-or-nothing, a release, a refund once.
    await Promise.all(
      [...masters.values()].map(async ([first, second, third, fourth]) => {
        await checkLimit(store, first!);
        await checkAllOrNothing(store, second!);
        await checkRelease(store, third!);
        await checkRefundOnce(store, fourth!);
      }),
    );
  });

  it.each(['{', '}', '{x}', '}{', 'a|b', '|', '{|}', '%7B'])('a scope value %j keeps one slot and decides normally', async (value) => {
    const res = testResource([
      '{ name: daily, algorithm: fixed_window, rate: 2/1d }',
      '{ name: inflight, algorithm: concurrency, max: 2, ttl: 1h }',
      '{ name: rpm, algorithm: token_bucket, rate: 5/1h }',
    ]);
    const scope = scopeOf(res, [value]);
    const keys = store.keysOf(res, scope);
    const slots = new Set(await Promise.all(keys.map((key) => cluster.keySlot(key))));
    expect(slots.size).toBe(1);
    expect([...slots][0]).toBe(await cluster.keySlot(`{${scope}}`));
    const a = await take(store, res, scope);
    const b = await take(store, res, scope);
    expect(a.granted && b.granted).toBe(true);
    expect((await take(store, res, scope)).granted).toBe(false);
    await store.release(res, scope, a.grant, 0);
    // The release freed the slot but daily (2/1d) is spent: denied by daily, not inflight.
    const c = await take(store, res, scope);
    expect(c.granted).toBe(false);
    expect(c.limitName).toBe('daily');
    expect(await store.refund(res, scope, `refund-${value}`, [1, 0, 0], a.now)).toBe(true);
    expect((await take(store, res, scope)).granted).toBe(true);
  });

  it('no reachable node: decisions fail with a clear error, not a hang', async () => {
    const yaml = `${clusterYaml(['127.0.0.1:1'])}\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n`;
    const dead = new RedisStore(parsePolicy(yaml, 'policy.yaml').store.redis!);
    try {
      const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
      await expect(within(10_000, dead.acquire(res, scopeOf(res, ['t']), 1, 'p'))).rejects.toThrow(/None of startup nodes is available/);
      // While it tries again in the background, calls fail at once instead of queueing.
      await expect(within(10_000, dead.acquire(res, scopeOf(res, ['t']), 1, 'p'))).rejects.toThrow(/None of startup nodes|Connection is closed/);
    } finally {
      await dead.close();
    }
  });

  it('NOSCRIPT: after SCRIPT FLUSH on every node the next decisions still work', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 100/1d }']);
    const scopes = Array.from({ length: 12 }, (_, i) => scopeOf(res, [`flush-${i}`]));
    for (const scope of scopes) expect((await take(store, res, scope)).granted).toBe(true);
    await Promise.all(cluster.processes.map((p) => p.client.call('SCRIPT', 'FLUSH')));
    for (const p of cluster.processes) expect(await p.client.call('SCRIPT', 'EXISTS', sha1OfAcquire(store))).toEqual([0]);
    for (const scope of scopes) {
      const v = await take(store, res, scope);
      expect(v.granted).toBe(true);
      expect(v.remaining).toBe(98);
    }
    // Settlement uses the other script: it reloads too.
    expect(await store.refund(res, scopes[0]!, 'after-flush', [1], Date.now())).toBe(true);
  });

  describe('through a sidecar process', () => {
    let sidecar: SidecarProcess | undefined;
    let client: SluiceClient | undefined;
    afterAll(async () => {
      client?.close();
      await sidecar?.stop('SIGKILL');
    });

    it('acquires over gRPC with a policy naming the cluster', async () => {
      const policy = [
        clusterYaml(cluster.nodes.slice(0, 3)),
        // The first call on each master loads the scripts: on a busy machine that can take past
        // the default 20 ms, and this test is about routing, not the deadline.
        '  timeout: 2s',
        'resources:',
        '  - name: e2e',
        '    keys: [tenant]',
        '    lease: { enabled: false }',
        '    limits: [{ name: daily, algorithm: fixed_window, rate: 3/1d }]',
        '',
      ].join('\n');
      sidecar = await startSidecar(policy);
      client = connect(sidecar.address);
      for (const tenant of ['acme', 'globex', 'initech']) {
        for (let i = 1; i <= 3; i++) {
          const res = await client.acquire({ resource: 'e2e', descriptors: { tenant }, cost: 1 });
          expect(res.granted).toBe(true);
          expect(res.decided_by).toBe('STORE');
          expect(res.remaining).toBe(3 - i);
        }
        const denied = await client.acquire({ resource: 'e2e', descriptors: { tenant } });
        expect(denied.granted).toBe(false);
        expect(denied.limit_name).toBe('daily');
      }
      // The sidecar's keys are in the cluster, on the master that owns each tenant's slot.
      for (const tenant of ['acme', 'globex', 'initech']) {
        const key = `sluice:{e2e|${tenant}}:daily|fw`;
        const owner = await cluster.ownerOf(await cluster.keySlot(key));
        expect(Number(await owner.process.client.hget(key, 'c'))).toBe(3);
      }
    });
  });

  it('after a master is killed and its replica promoted, decisions work again', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 5/1d }']);
    const scope = scopeOf(res, ['failover']);
    expect((await take(store, res, scope, 2)).granted).toBe(true);
    const [key] = store.keysOf(res, scope);
    const owner = await cluster.ownerOf(await cluster.keySlot(key!));
    // The charge is on the replica before the master dies (replication is asynchronous).
    expect(await owner.process.client.call('WAIT', '1', '5000')).toBe(1);
    // Probe scopes on the master that dies and on another one.
    const scopeOn = async (res: Resource, same: boolean) => {
      for (let i = 0; ; i++) {
        const candidate = scopeOf(res, [`probe-${i}`]);
        const owns = (await cluster.ownerOf(await cluster.keySlot(store.keysOf(res, candidate)[0]!))).id === owner.id;
        if (owns === same) return candidate;
      }
    };
    const [onDead, onOther] = [await scopeOn(PROBE_RESOURCE, true), await scopeOn(PROBE_RESOURCE, false)];
    const probes = [probeDecisions(store, { scope: () => onDead }), probeDecisions(store, { scope: () => onOther })];
    await waitFor('the probes to get answers', 10_000, async () => (probes.every((p) => p.succeeded() >= 3) ? true : undefined), 10);
    const killedAt = Date.now();
    const { promotedAfterMs, promoted } = await cluster.killMaster(owner, 30_000);
    const after = await waitFor('a decision on the failed-over slot', 20_000, async () => {
      const v = await take(store, res, scope, 1);
      return v.granted ? v : undefined;
    });
    // A probe call that started before the promotion may still fail after it: wait for a fresh answer.
    await waitFor('the probes to be answered again', 20_000, async () => (probes.every((p) => p.lastOk()) ? true : undefined), 10);
    const [dead, other] = await Promise.all(probes.map((p) => p.stop()));
    const summaries = [dead!, other!].map((records, i) => outageSummary(records, killedAt - probes[i]!.startedAt));
    console.log(
      `cluster failover: replica promoted and cluster_state ok ${promotedAfterMs} ms after the kill; ` +
        `calls on the dead master's slots: ${JSON.stringify(summaries[0])}; on another master's: ${JSON.stringify(summaries[1])}`,
    );

    expect(after.remaining).toBe(2); // 5 - 2 - 1: the charge survived the failover
    expect(await promoted.process.client.exists(key!)).toBe(1);
    for (const [i, records] of [dead!, other!].entries()) {
      expect(summaries[i]!.hung).toBe(0); // every call was answered or failed; none hung
      expect(records.at(-1)?.ok).toBe(true);
    }
  });
});

/** The SHA1 of acquire.lua, as ioredis registered it. */
function sha1OfAcquire(s: RedisStore): string {
  return (s.client as unknown as { scriptsSet: Record<string, { sha: string }> }).scriptsSet.sluiceAcquire!.sha;
}

describe('Cluster over TLS (clients, replication and the cluster bus)', () => {
  let files: TlsFiles;
  let setup: ClusterSetup;
  let tlsStore: RedisStore;
  const others: RedisStore[] = [];
  beforeAll(async () => {
    files = await makeTlsFiles();
    setup = await startCluster({ password: 'cluster-pw', tls: files });
    const yaml = `${clusterYaml(setup.nodes.slice(0, 1), `tls: { ca_file: ${files.caFile} }`)}\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n`;
    tlsStore = new RedisStore(parsePolicy(yaml, 'policy.yaml').store.redis!);
  });
  afterAll(async () => {
    await Promise.all([tlsStore, ...others].map((s) => s?.close()));
    await setup?.stop();
    files?.remove();
  });

  storeSemantics(() => tlsStore);

  it('reaches every master over TLS', async () => {
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    const owners = new Set<string>();
    for (let i = 0; owners.size < 3; i++) {
      expect(i).toBeLessThan(200);
      const scope = scopeOf(res, [`tls-${i}`]);
      expect((await take(tlsStore, res, scope)).granted).toBe(true);
      const [key] = tlsStore.keysOf(res, scope);
      const owner = await setup.ownerOf(await setup.keySlot(key!));
      expect(await owner.process.client.exists(key!)).toBe(1);
      owners.add(owner.id);
    }
    for (const p of setup.processes) expect(p.url).toMatch(/^rediss:/);
  });

  it('skip_hostname_verification reaches the nodes under a name their certificates do not carry; without it they are refused', async () => {
    const storeNamed = (...tls: string[]) => {
      const yaml = `${clusterYaml(setup.nodes.slice(0, 1), `tls: { ca_file: ${files.caFile}, server_name: elsewhere.example${tls.map((t) => `, ${t}`).join('')} }`)}\nresources: [{ name: r, limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n`;
      const named = new RedisStore(parsePolicy(yaml, 'policy.yaml').store.redis!);
      others.push(named);
      return named;
    };
    await checkLimit(storeNamed('skip_hostname_verification: true'));
    const res = testResource(['{ name: daily, algorithm: fixed_window, rate: 3/1d }']);
    await expect(within(10_000, storeNamed().acquire(res, scopeOf(res, ['t']), 1, 'p'))).rejects.toThrow(/None of startup nodes|Connection is closed/);
  });
});
