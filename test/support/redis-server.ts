// Real redis-server processes on free ports, started and stopped by the tests themselves.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';

export interface RedisProcess {
  port: number;
  url: string;
  child: ChildProcess;
  /** A plain client for inspecting state; closed by stop(). */
  client: Redis;
  /** SIGSTOP / SIGCONT: the server stops answering without closing connections. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

export async function startRedis(extraArgs: string[] = []): Promise<RedisProcess> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      return await launch(port, extraArgs);
    } catch (err) {
      if (attempt >= 3) throw err; // someone else took the port between probe and bind
    }
  }
}

async function launch(port: number, extraArgs: string[]): Promise<RedisProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--logfile', '', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const output: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`redis-server exited (${code}) on port ${port}:\n${output.join('\n')}`));
    child.once('exit', onExit);
    child.once('error', reject);
    lines.on('line', (line) => {
      output.push(line);
      if (line.includes('Ready to accept connections')) {
        child.off('exit', onExit);
        resolve();
      }
    });
  });
  lines.removeAllListeners('line');
  child.stdout!.resume();
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  return {
    port,
    url,
    child,
    client,
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    async stop() {
      client.disconnect();
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}
