// Builds the ioredis client for a compiled store.redis: a `Redis` for one server or a
// Sentinel-watched master, a `Cluster` for Redis Cluster. AUTH and TLS apply to every data node.
import type { Duplex } from 'node:stream';
import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisConfig, RedisTls } from '../../config/policy.js';
import { parseRedisUrl } from '../../config/schema.js';

export type RedisClient = Redis | Cluster;

/** What connecting needs: the compiled store.redis without the key prefix. */
export type RedisConnection = Pick<RedisConfig, 'topology' | 'username' | 'password' | 'tls'>;

/**
 * Every connection gives a command one retry after a lost connection before it fails, so a dead
 * store fails decisions instead of queueing them. (On one server or a Sentinel master the store
 * batches script calls itself, see batcher.ts; on a Cluster each call goes out by itself.)
 */
const COMMON: RedisOptions = { maxRetriesPerRequest: 1 };

export function connectRedis(config: RedisConnection, extra: RedisOptions = {}): RedisClient {
  const tls = config.tls ? tlsOptions(config.tls) : undefined;
  const auth: RedisOptions = {
    ...(config.username !== null ? { username: config.username } : {}),
    ...(config.password !== null ? { password: config.password } : {}),
    ...(tls ? { tls } : {}),
  };
  const topology = config.topology;
  switch (topology.kind) {
    case 'standalone':
      return openRedis({ ...COMMON, ...auth, host: topology.node.host, port: topology.node.port, db: topology.db, ...extra });
    case 'socket':
      return openRedis({ ...COMMON, ...auth, path: topology.path, ...extra });
    case 'sentinel':
      return keepConnecting(openRedis({
        ...COMMON,
        ...auth,
        sentinels: topology.sentinels.map(({ host, port }) => ({ host, port })),
        name: topology.master,
        role: 'master',
        ...(topology.username !== null ? { sentinelUsername: topology.username } : {}),
        ...(topology.password !== null ? { sentinelPassword: topology.password } : {}),
        // TLS, when on, covers the sentinels and the master alike.
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
        // Drop the master connection as soon as a sentinel announces +switch-master, instead of
        // waiting for the old master's socket to fail.
        failoverDetector: true,
        // A write that reached a demoted master changed nothing: reconnect (asking the sentinels
        // anew) and send it again.
        reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
        // When no sentinel answers (all down, wrong sentinel password, unknown master name),
        // ioredis would retry forever with every command queued behind it. Give up after a few
        // rounds instead: the queued commands fail with the reason, and a fresh attempt follows.
        sentinelRetryStrategy: (times) => (times > ROUNDS ? null : times * 100),
        ...extra,
      }));
    case 'cluster': {
      const options: ClusterOptions = {
        // Not auto-pipelined: ioredis groups an auto-pipeline by the slot of a command's first
        // argument, which for a script defined without a fixed key count is the key count, not
        // a key; a pipeline mixing nodes is then refused ("All keys in the pipeline should belong
        // to the same slots allocation group"). Sent one by one, each call is routed by its real
        // first key and follows MOVED, ASK and failovers by itself.
        enableAutoPipelining: false,
        // When no node answers, ioredis would retry forever with every command queued behind it.
        // Give up after a few attempts instead: the queued commands fail, and a fresh attempt follows.
        clusterRetryStrategy: (times) => (times > ROUNDS ? null : Math.min(100 * times, 1_000)),
        redisOptions: { ...COMMON, ...auth, ...clusterNodeOptions(extra) },
      };
      const cluster = new Cluster(topology.nodes.map(({ host, port }) => ({ host, port })), options);
      // Node connections are made lazily, so each is guarded before its first socket.
      cluster.on('+node', (node: Redis) => guardSockets(node));
      return keepConnecting(cluster);
    }
  }
}

type Connect = (...args: unknown[]) => Promise<Duplex>;

/**
 * ioredis hears a socket's errors with `once('error')` (redis/ioredis#961, never merged): a socket
 * that errs twice, as a TLS socket can (the handshake alert, then the reset), emits the second
 * error to no listener, and that ends the process. Each socket this client opens gets a lasting
 * listener as well; ioredis is still told the first error, which is the one that matters (the
 * socket is finished by then).
 */
function guardSockets(redis: Redis): Redis {
  const connector = (redis as unknown as { connector: { connect: Connect } }).connector;
  const connect: Connect = connector.connect.bind(connector);
  connector.connect = async (...args) => {
    const socket = await connect(...args);
    socket.on('error', ignoreRepeatedError);
    return socket;
  };
  return redis;
}

function ignoreRepeatedError(): void {}

/** A Redis client guarded before its first socket: ioredis opens one in its constructor otherwise. */
function openRedis(options: RedisOptions): Redis {
  const redis = guardSockets(new Redis({ ...options, lazyConnect: true }));
  if (!options.lazyConnect) redis.connect().catch(() => undefined);
  return redis;
}

/**
 * Rounds over all sentinels, or connection attempts to a cluster, before ioredis gives up and fails
 * the commands queued meanwhile; a new attempt starts after a pause (see keepConnecting).
 */
const ROUNDS = 3;
const RESTART_MS = 500;

/** Clients closed on purpose: never restarted. */
const closed = new WeakSet<RedisClient>();

/**
 * Once ioredis gives a connection up ('end': no sentinel answered, no cluster node answered),
 * start again after a pause, until the client is closed. Commands sent during the pause fail at
 * once ("Connection is closed."), so nothing waits on a store that is gone.
 */
function keepConnecting<T extends RedisClient>(client: T): T {
  client.on('end', () => {
    if (closed.has(client)) return;
    setTimeout(() => {
      if (!closed.has(client) && client.status === 'end') client.connect().catch(() => undefined);
    }, RESTART_MS).unref();
  });
  return client;
}

/**
 * QUIT when connected (bounded: a server that stops answering is disconnected after timeoutMs),
 * else disconnect at once: a client still connecting would queue QUIT behind the connection.
 */
export async function closeRedis(client: RedisClient, timeoutMs = 1_000): Promise<void> {
  closed.add(client);
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  await Promise.race([client.quit().then(() => undefined, () => undefined), timeout]);
  clearTimeout(timer);
  client.disconnect();
}

/** A plain redis:// or rediss:// url as a connection (for tests and tools). */
export function connectionFromUrl(url: string): RedisConnection {
  const parsed = parseRedisUrl(url);
  if (typeof parsed === 'string') throw new Error(`${parsed}: ${url.replace(/\/\/[^@/]*@/, '//***@')}`);
  return {
    topology: { kind: 'standalone', node: { host: parsed.host, port: parsed.port }, db: parsed.db },
    username: parsed.username ?? null,
    password: parsed.password ?? null,
    tls: parsed.tls ? { ca: null, cert: null, key: null, serverName: null, verify: 'full' } : null,
  };
}

function tlsOptions(tls: RedisTls): ConnectionOptions {
  return {
    ...(tls.ca !== null ? { ca: tls.ca } : {}),
    ...(tls.cert !== null ? { cert: tls.cert } : {}),
    ...(tls.key !== null ? { key: tls.key } : {}),
    ...(tls.serverName !== null ? { servername: tls.serverName } : {}),
    ...VERIFY[tls.verify],
  };
}

/**
 * Node checks a server's certificate in two steps: its chain, against the CAs (rejectUnauthorized,
 * on by default), then its name, by checkServerIdentity. 'chain' keeps the first and skips only
 * the second, for servers reached by a name their certificate does not carry.
 */
const VERIFY: Readonly<Record<RedisTls['verify'], ConnectionOptions>> = {
  full: {},
  chain: { checkServerIdentity: () => undefined },
  none: { rejectUnauthorized: false, checkServerIdentity: () => undefined },
};

/** The extra options a cluster node connection may take (its address comes from the cluster). */
function clusterNodeOptions(extra: RedisOptions): NonNullable<ClusterOptions['redisOptions']> {
  const { port: _port, host: _host, path: _path, sentinels: _sentinels, retryStrategy: _retry, enableOfflineQueue: _queue, readOnly: _readOnly, ...rest } =
    extra;
  return rest;
}
