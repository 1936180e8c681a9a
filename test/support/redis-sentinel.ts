// Redis Sentinel on free ports: one master, one replica and three sentinels watching them, each a
// real redis-server process. killMaster() kills the master and waits until the sentinels have
// promoted the replica.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { launchRedis, startRedis, waitFor, type RedisProcess } from './redis-server.js';

export interface SentinelOptions {
  /** The name the sentinels monitor. Default mymaster. */
  name?: string;
  /** Data nodes' default-user password (`--requirepass`, and `--masterauth` for the replica). */
  password?: string;
  /** The sentinels' own password (`requirepass` in sentinel.conf). */
  sentinelPassword?: string;
  /** TLS only, everywhere: clients, replication, and sentinels to nodes and to each other. */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

export interface SentinelSetup {
  name: string;
  master: RedisProcess;
  replica: RedisProcess;
  sentinels: RedisProcess[];
  /** `host:port` of each sentinel, as a policy lists them. */
  sentinelNodes: string[];
  /** Where the sentinels say the master is now. */
  masterAddress(): Promise<string>;
  /**
   * Kills the current master (SIGKILL) and waits, polling every sentinel, until a majority name
   * the replica as master and the replica says it is one. Resolves with the time it took.
   */
  killMaster(deadlineMs?: number): Promise<{ promotedAfterMs: number }>;
  stop(): Promise<void>;
}

export async function startSentinel(options: SentinelOptions = {}): Promise<SentinelSetup> {
  const name = options.name ?? 'mymaster';
  const dir = mkdtempSync(join(tmpdir(), 'sluice-sentinel-'));
  const started: RedisProcess[] = [];
  const stopAll = async () => {
    await Promise.all(started.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const auth = { ...(options.password !== undefined ? { password: options.password } : {}), ...(options.tls ? { tls: options.tls } : {}) };
    const nodeArgs = [
      // A replica writes the RDB it syncs from its master into --dir: keep it out of the cwd.
      '--dir', dir,
      ...(options.password !== undefined ? ['--masterauth', options.password] : []),
      ...(options.tls ? ['--tls-replication', 'yes'] : []),
    ];
    const master = await startRedis(nodeArgs, auth);
    started.push(master);
    const replica = await startRedis([...nodeArgs, '--replicaof', '127.0.0.1', String(master.port)], auth);
    started.push(replica);
    await waitFor('the replica to sync with the master', 15_000, async () => {
      const info = await replica.client.info('replication');
      return /master_link_status:up/.test(info) ? true : undefined;
    });

    // Started together; allSettled so none is left running if another fails to start.
    const settled = await Promise.allSettled([0, 1, 2].map((i) => startOneSentinel(dir, i, name, master.port, options)));
    const sentinels: RedisProcess[] = [];
    for (const result of settled) if (result.status === 'fulfilled') sentinels.push(result.value);
    started.push(...sentinels);
    const failed = settled.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    // Ready when every sentinel knows the replica and the other two sentinels: only then can
    // they agree the master is down and elect one of them to fail over.
    await waitFor('the sentinels to discover the replica and each other', 20_000, async () => {
      for (const sentinel of sentinels) {
        const master = (await sentinel.client.call('SENTINEL', 'MASTER', name)) as string[];
        const fields = pairs(master);
        if (Number(fields['num-slaves']) < 1 || Number(fields['num-other-sentinels']) < 2) return undefined;
      }
      return true;
    });

    const masterAddress = async () => {
      for (const sentinel of sentinels) {
        try {
          const [host, port] = (await sentinel.client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as [string, string];
          return `${host}:${port}`;
        } catch {
          // ask the next one
        }
      }
      throw new Error('no sentinel answered');
    };

    let current = master;
    let standby = replica;
    return {
      name,
      master,
      replica,
      sentinels,
      sentinelNodes: sentinels.map((s) => `127.0.0.1:${s.port}`),
      masterAddress,
      async killMaster(deadlineMs = 30_000) {
        const before = Date.now();
        const old = `127.0.0.1:${current.port}`;
        const next = `127.0.0.1:${standby.port}`;
        await current.stop();
        await waitFor(`the sentinels to promote ${next} after ${old} was killed`, deadlineMs, async () => {
          let agree = 0;
          for (const sentinel of sentinels) {
            const [host, port] = (await sentinel.client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as [string, string];
            if (`${host}:${port}` === next) agree++;
          }
          if (agree < 2) return undefined;
          const role = (await standby.client.call('ROLE')) as [string];
          return role[0] === 'master' ? true : undefined;
        }, 100);
        [current, standby] = [standby, current];
        return { promotedAfterMs: Date.now() - before };
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function startOneSentinel(dir: string, index: number, name: string, masterPort: number, options: SentinelOptions): Promise<RedisProcess> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    // A sentinel rewrites its config file, so each gets its own in the temp dir.
    const file = join(dir, `sentinel-${index}-${attempt}.conf`);
    const lines = [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `sentinel parallel-syncs ${name} 1`,
    ];
    if (options.password !== undefined) lines.push(`sentinel auth-pass ${name} ${options.password}`);
    if (options.sentinelPassword !== undefined) lines.push(`requirepass ${options.sentinelPassword}`);
    if (options.tls) {
      lines[0] = 'port 0';
      lines.push(`tls-port ${port}`, `tls-cert-file ${options.tls.certFile}`, `tls-key-file ${options.tls.keyFile}`);
      lines.push(`tls-ca-cert-file ${options.tls.caFile}`, 'tls-auth-clients no', 'tls-replication yes');
    }
    writeFileSync(file, `${lines.join('\n')}\n`);
    try {
      return await launchRedis({
        port,
        args: [file, '--sentinel', '--logfile', ''],
        ready: /\+monitor master/,
        client: {
          ...(options.sentinelPassword !== undefined ? { password: options.sentinelPassword } : {}),
          ...(options.tls ? { tls: { ca: readFileSync(options.tls.caFile) } } : {}),
        },
      });
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}
