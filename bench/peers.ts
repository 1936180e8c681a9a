// Peer libraries driven in this process, on the same Redis (through the same proxy) as sluice, on
// one hot key, with limits the load stays under. Latency is timed around consume() / schedule(),
// as sluice's is timed around the gRPC call. Clients use ioredis's defaults, as a user would.
import Bottleneck from 'bottleneck';
import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { DENIED, FAILED, GRANTED, type Complete, type Target } from './load.js';

const HOT_KEY = 'hot';

async function readyClient(url: string): Promise<Redis> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  if (client.status !== 'ready') await new Promise((resolve, reject) => client.once('ready', resolve).once('error', reject));
  return client;
}

/** rate-limiter-flexible: RateLimiterRedis.consume(key), 1e9 points per second. */
export async function rateLimiterFlexibleTarget(redisUrl: string, slots: number): Promise<Target> {
  const client = await readyClient(redisUrl);
  const limiter = new RateLimiterRedis({ storeClient: client, keyPrefix: 'bench-rlf', points: 1e9, duration: 1 });
  let complete: Complete = () => undefined;
  // One pair of callbacks per slot, made once.
  const onGrant = Array.from({ length: slots }, (_, slot) => () => complete(slot, GRANTED));
  // A denial rejects with a RateLimiterRes; an error with an Error.
  const onReject = Array.from({ length: slots }, (_, slot) => (err: unknown) => complete(slot, err instanceof Error ? FAILED : DENIED));
  return {
    decidedBy: {},
    bind(fn) {
      complete = fn;
    },
    issue(slot) {
      limiter.consume(HOT_KEY, 1).then(onGrant[slot], onReject[slot]);
    },
    async close() {
      await client.quit().catch(() => client.disconnect());
    },
  };
}

/**
 * Bottleneck in Redis clustering mode (datastore ioredis): schedule(job) with a job that returns
 * at once. A reservoir of 1e12 is kept in Redis and never runs out; no minTime, no maxConcurrent.
 */
export async function bottleneckTarget(redisUrl: string, slots: number): Promise<Target> {
  const { hostname, port } = new URL(redisUrl);
  const limiter = new Bottleneck({
    id: 'bench-bottleneck',
    datastore: 'ioredis',
    clearDatastore: true,
    clientOptions: { host: hostname, port: Number(port), maxRetriesPerRequest: 1 },
    reservoir: 1e12,
    maxConcurrent: null,
    minTime: 0,
  });
  limiter.on('error', () => undefined);
  await limiter.ready();
  let complete: Complete = () => undefined;
  const job = () => Promise.resolve(true);
  const onGrant = Array.from({ length: slots }, (_, slot) => () => complete(slot, GRANTED));
  const onFail = Array.from({ length: slots }, (_, slot) => () => complete(slot, FAILED));
  return {
    decidedBy: {},
    bind(fn) {
      complete = fn;
    },
    issue(slot) {
      limiter.schedule(job).then(onGrant[slot], onFail[slot]);
    },
    async close() {
      await limiter.disconnect(true).catch(() => undefined);
    },
  };
}
