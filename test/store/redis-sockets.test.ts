// A client socket that errs twice must not end the process: ioredis hears a socket's errors only
// once (see guardSockets), and a TLS socket can fail twice (the handshake alert, then the reset).
import type { Duplex } from 'node:stream';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { closeRedis, connectionFromUrl, connectRedis } from '../../src/store/redis/connect.js';
import { useRedis } from '../support/use-redis.js';

const world = useRedis();
let client: Redis;

beforeAll(() => {
  client = connectRedis(connectionFromUrl(world.redis.url)) as Redis;
});
afterAll(() => closeRedis(client));

it('a second error on a connection is heard, and the client connects again', async () => {
  await client.ping();
  const socket = (client as unknown as { stream: Duplex }).stream;
  expect(() => {
    socket.emit('error', new Error('the handshake alert'));
    socket.emit('error', new Error('the reset after it'));
  }).not.toThrow();
  socket.destroy();
  expect(await client.ping()).toBe('PONG');
});
