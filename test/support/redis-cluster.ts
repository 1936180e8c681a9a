// Redis Cluster on free ports: three masters and three replicas, each a real redis-server process,
// joined with `redis-cli --cluster create`. killMaster() kills a master and waits until its replica
// has taken over and the cluster is whole again.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { launchRedis, serverArgs, waitFor, type RedisProcess, type RedisServerOptions } from './redis-server.js';

const run = promisify(execFile);

export interface ClusterOptions {
  /** Every node's default-user password (`--requirepass`, `--masterauth`). */
  password?: string;
  /** `cluster-require-full-coverage` (Redis's default is yes: no slot is served while one is uncovered). */
  requireFullCoverage?: boolean;
  /** TLS only, everywhere: clients, replication and the cluster bus. */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

export interface ClusterNode {
  id: string;
  address: string;
  role: 'master' | 'replica';
  /** For a replica, its master's id. */
  masterId: string | null;
  /** [first, last] slot ranges a master serves. */
  slots: [number, number][];
  process: RedisProcess;
}

export interface ClusterSetup {
  /** Every node started, dead or alive. */
  processes: RedisProcess[];
  /** `host:port` of every node, as a policy lists them. */
  nodes: string[];
  /** The cluster as a live node sees it now. */
  topology(): Promise<ClusterNode[]>;
  /** The master serving a slot now. */
  ownerOf(slot: number): Promise<ClusterNode>;
  /** CLUSTER KEYSLOT, asked of a live node. */
  keySlot(key: string): Promise<number>;
  /**
   * Kills a master (SIGKILL) once its replica has its writes, and waits until the replica says it
   * is a master and every live node says cluster_state:ok. Resolves with the time that took and
   * the new master.
   */
  killMaster(master: ClusterNode, deadlineMs?: number): Promise<{ promotedAfterMs: number; promoted: ClusterNode }>;
  stop(): Promise<void>;
}

const NODES = 6;

export async function startCluster(options: ClusterOptions = {}): Promise<ClusterSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cluster-'));
  const processes: RedisProcess[] = [];
  const stop = async () => {
    await Promise.all(processes.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const serverOptions = { ...(options.password !== undefined ? { password: options.password } : {}), ...(options.tls ? { tls: options.tls } : {}) };
    // Started together; allSettled so none is left running if another fails to start.
    const coverage = ['--cluster-require-full-coverage', options.requireFullCoverage === false ? 'no' : 'yes'];
    const settled = await Promise.allSettled(Array.from({ length: NODES }, () => startNode(dir, serverOptions, coverage)));
    for (const result of settled) if (result.status === 'fulfilled') processes.push(result.value);
    const failed = settled.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    const nodes = processes.map((p) => `127.0.0.1:${p.port}`);
    const auth = [
      ...(options.password !== undefined ? ['-a', options.password, '--no-auth-warning'] : []),
      ...(options.tls ? ['--tls', '--cacert', options.tls.caFile] : []),
    ];
    await run('redis-cli', [...auth, '--cluster', 'create', ...nodes, '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 }).catch(
      (err: Error & { stdout?: string; stderr?: string }) => {
        throw new Error(`redis-cli --cluster create failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
      },
    );
    const live = () => processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
    const whole = (what: string, deadlineMs: number) =>
      waitFor(what, deadlineMs, async () => {
        for (const p of live()) {
          const info = (await p.client.call('CLUSTER', 'INFO')) as string;
          if (!/cluster_state:ok/.test(info)) return undefined;
        }
        return true;
      }, 100);
    await whole('cluster_state:ok on every node', 30_000);

    const topology = async (): Promise<ClusterNode[]> => {
      let last: unknown;
      for (const p of live()) {
        try {
          return parseNodes((await p.client.call('CLUSTER', 'NODES')) as string, processes);
        } catch (err) {
          last = err;
        }
      }
      throw new Error(`no live node answered CLUSTER NODES: ${(last as Error)?.message}`);
    };
    // Every replica attached to a master and synced, so a failover has someone to promote.
    await waitFor('three masters with a synced replica each', 30_000, async () => {
      const view = await topology();
      const masters = view.filter((n) => n.role === 'master' && n.slots.length > 0);
      if (masters.length !== 3) return undefined;
      for (const master of masters) {
        const replica = view.find((n) => n.role === 'replica' && n.masterId === master.id);
        if (!replica) return undefined;
        const info = await replica.process.client.info('replication');
        if (!/master_link_status:up/.test(info)) return undefined;
      }
      return true;
    }, 100);

    const ownerOf = async (slot: number) => {
      const owner = (await topology()).find((n) => n.role === 'master' && n.slots.some(([a, b]) => slot >= a && slot <= b));
      if (!owner) throw new Error(`no master serves slot ${slot}`);
      return owner;
    };
    return {
      processes,
      nodes,
      topology,
      ownerOf,
      async keySlot(key) {
        return (await live()[0]!.client.call('CLUSTER', 'KEYSLOT', key)) as number;
      },
      async killMaster(master, deadlineMs = 30_000) {
        const before = Date.now();
        const replica = (await topology()).find((n) => n.role === 'replica' && n.masterId === master.id);
        if (!replica) throw new Error(`master ${master.address} has no replica`);
        // Replication is asynchronous: on a starved machine the replica can lag by every write a
        // test made just before. The tests count what sluice granted, not what Redis loses.
        await master.process.client.call('WAIT', 1, 5_000);
        await master.process.stop();
        await waitFor(`replica ${replica.address} to take over from ${master.address}`, deadlineMs, async () => {
          const role = (await replica.process.client.call('ROLE')) as [string];
          return role[0] === 'master' ? true : undefined;
        }, 100);
        await whole('cluster_state:ok again after the failover', deadlineMs);
        const promoted = (await topology()).find((n) => n.id === replica.id)!;
        return { promotedAfterMs: Date.now() - before, promoted };
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A node on a port whose cluster bus port (port + 10000) is free too. */
async function startNode(dir: string, options: RedisServerOptions, extraArgs: string[]): Promise<RedisProcess> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePortPair();
    const args = [
      ...serverArgs(port, options),
      '--dir', dir,
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', '1000',
      // A replica may take over however long ago it last heard from its master.
      '--cluster-replica-validity-factor', '0',
      ...extraArgs,
    ];
    if (options.password !== undefined) args.push('--masterauth', options.password);
    if (options.tls) args.push('--tls-cluster', 'yes', '--tls-replication', 'yes');
    try {
      return await launchRedis({ port, args, options });
    } catch (err) {
      if (attempt >= 5) throw err;
    }
  }
}

/**
 * A port P such that P and P + 10000 were both free a moment ago. Chosen below the kernel's
 * ephemeral range (32768 and up on Linux), so outgoing connections do not take them meanwhile.
 */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 12000 + Math.floor(Math.random() * 10_000);
    if ((await canBind(port)) && (await canBind(port + 10_000))) return port;
  }
  throw new Error('no free port pair (P, P + 10000) found');
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function parseNodes(text: string, processes: RedisProcess[]): ClusterNode[] {
  const nodes: ClusterNode[] = [];
  for (const line of text.trim().split('\n')) {
    const [id, addr, flags, master, , , , , ...slots] = line.trim().split(' ');
    if (!id || !addr || !flags || flags.includes('fail') || flags.includes('noaddr')) continue;
    const address = addr.split('@')[0]!;
    const port = Number(address.split(':')[1]);
    const process = processes.find((p) => p.port === port);
    if (!process) continue;
    nodes.push({
      id,
      address,
      role: flags.includes('master') ? 'master' : 'replica',
      masterId: master && master !== '-' ? master : null,
      slots: slots
        .filter((s) => !s.startsWith('['))
        .map((s) => {
          const [a, b] = s.split('-');
          return [Number(a), Number(b ?? a)] as [number, number];
        }),
      process,
    });
  }
  return nodes;
}
