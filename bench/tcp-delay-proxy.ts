// A TCP proxy that forwards bytes both ways and holds every chunk for `delayMs` before passing it
// on, in order: a stand-in for a Redis across the network. Each direction is delayed, so a round
// trip gains about 2 x delayMs. Run as its own process, so its work does not load the measured ones:
//   node dist/bench/tcp-delay-proxy.js --target-port 6380 --delay-ms 1
//   (logs {"msg":"listening","address":"127.0.0.1:PORT"} on stdout)
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/** Writes what `from` sends to `to`, each chunk delayMs after it arrived, order preserved. */
function delayedPipe(from: Socket, to: Socket, delayMs: number): void {
  const chunks: Buffer[] = [];
  const dueAt: number[] = [];
  let head = 0;
  let timer: NodeJS.Timeout | null = null;

  const flush = () => {
    timer = null;
    const now = performance.now();
    while (head < chunks.length && dueAt[head]! <= now) {
      if (!to.destroyed) to.write(chunks[head]!);
      head++;
    }
    if (head === chunks.length) {
      chunks.length = 0;
      dueAt.length = 0;
      head = 0;
    } else {
      if (head > 1024) {
        // Under steady traffic the queue never empties: drop what was sent now and then.
        chunks.splice(0, head);
        dueAt.splice(0, head);
        head = 0;
      }
      timer = setTimeout(flush, Math.max(0, dueAt[head]! - now));
    }
  };

  from.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    dueAt.push(performance.now() + delayMs);
    timer ??= setTimeout(flush, delayMs);
  });
  from.on('end', () => {
    const wait = chunks.length > head ? Math.max(0, dueAt[dueAt.length - 1]! - performance.now()) + 1 : 0;
    setTimeout(() => to.end(), wait);
  });
}

export function startDelayProxy(targetHost: string, targetPort: number, delayMs: number, listenPort = 0): Promise<{ server: Server; port: number }> {
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = createConnection({ host: targetHost, port: targetPort, noDelay: true });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
    delayedPipe(client, upstream, delayMs);
    delayedPipe(upstream, client, delayMs);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      'target-host': { type: 'string', default: '127.0.0.1' },
      'target-port': { type: 'string' },
      'delay-ms': { type: 'string', default: '1' },
    },
  });
  const targetPort = Number(values['target-port']);
  const delayMs = Number(values['delay-ms']);
  if (!Number.isInteger(targetPort) || !(delayMs >= 0)) {
    process.stderr.write('usage: tcp-delay-proxy --target-port PORT [--target-host HOST] [--delay-ms N]\n');
    process.exit(2);
  }
  const { port } = await startDelayProxy(values['target-host']!, targetPort, delayMs);
  process.stdout.write(`${JSON.stringify({ msg: 'listening', address: `127.0.0.1:${port}`, delayMs })}\n`);
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}
