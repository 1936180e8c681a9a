// Real redis-server processes on free ports, started and stopped by the tests themselves.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Redis, type RedisOptions } from 'ioredis';
import { freePort } from './ports.js';

export interface RedisProcess {
  port: number;
  url: string;
  child: ChildProcess;
  /** A plain client for inspecting state (authenticated as the default user); closed by stop(). */
  client: Redis;
  /** SIGSTOP / SIGCONT: the server stops answering without closing connections. */
  pause(): void;
  resume(): void;
  /** SIGKILL, and waits for the exit. Safe to call twice. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** `--requirepass`: the default user's password (the inspecting client uses it). */
  password?: string;
  /** ACL users, each a rule as `--user` takes it, e.g. `alice on >secret ~* &* +@all`. */
  users?: string[];
  /** Serve TLS only (`--port 0 --tls-port P`) with these files. */
  tls?: {
    certFile: string;
    keyFile: string;
    caFile: string;
    /** Ask clients for a certificate signed by caFile. Default false. */
    authClients?: boolean;
  };
}

export async function startRedis(extraArgs: string[] = [], options: RedisServerOptions = {}): Promise<RedisProcess> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      return await launchRedis({ port, args: [...serverArgs(port, options), ...extraArgs], options });
    } catch (err) {
      if (attempt >= 3) throw err; // someone else took the port between probe and bind
    }
  }
}

/** The arguments startRedis gives redis-server before the caller's own. */
export function serverArgs(port: number, options: RedisServerOptions = {}): string[] {
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--logfile', ''];
  if (options.tls) {
    const tls = options.tls;
    args.push('--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile);
    args.push('--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', tls.authClients ? 'yes' : 'no');
  } else {
    args.push('--port', String(port));
  }
  if (options.password !== undefined) args.push('--requirepass', options.password);
  for (const user of options.users ?? []) args.push('--user', ...user.split(' '));
  return args;
}

export interface LaunchOptions {
  port: number;
  /** Every argument for redis-server (a config file first, for a sentinel). */
  args: string[];
  options?: RedisServerOptions;
  /** The log line that says the process is ready. Default: Ready to accept connections. */
  ready?: RegExp;
  /** Options for the inspecting client (a sentinel's password, say). */
  client?: RedisOptions;
}

/**
 * Gives a redis-server the CPU before the test's own processes (nice -15), as a Redis on a host
 * of its own would have it: for load tests that must not starve Redis on a small machine.
 */
export function prioritise(redis: RedisProcess): void {
  execFileSync('renice', ['-n', '-15', '-p', String(redis.child.pid)], { stdio: 'ignore' });
}

/** Every process started here and still running. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * A watchdog that SIGKILLs every redis-server still running when this test process goes away,
 * however it goes (a worker killed after a timeout fires no 'exit' event): it reads `+pid` and
 * `-pid` lines on a pipe from us, and kills what is left when the pipe closes.
 */
let watchdog: ChildProcess | undefined;
function watch(op: '+' | '-', pid: number | undefined): void {
  if (pid === undefined) return;
  if (!watchdog) {
    const script = 'pids=" "; while read op pid; do case $op in +) pids="$pids$pid ";; -) pids=$(echo "$pids" | sed "s/ $pid / /");; esac; done; for p in $pids; do kill -9 $p 2>/dev/null; done';
    watchdog = spawn('sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'] });
    watchdog.unref();
    (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
    watchdog.stdin!.on('error', () => {});
  }
  watchdog.stdin!.write(`${op} ${pid}\n`);
}

/** Starts redis-server with exactly these arguments and waits until it says it is ready. */
export async function launchRedis(launch: LaunchOptions): Promise<RedisProcess> {
  const { port, options = {} } = launch;
  const child = spawn('redis-server', launch.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  watch('+', child.pid);
  child.once('exit', () => {
    live.delete(child);
    watch('-', child.pid);
  });
  const lines = createInterface({ input: child.stdout! });
  const output: string[] = [];
  const ready = launch.ready ?? /Ready to accept connections/;
  try {
    await new Promise<void>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`redis-server exited (${code}) on port ${port}:\n${output.join('\n')}`));
      child.once('exit', onExit);
      child.once('error', reject);
      lines.on('line', (line) => {
        output.push(line);
        if (ready.test(line)) {
          child.off('exit', onExit);
          resolve();
        }
      });
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  lines.removeAllListeners('line');
  child.stdout!.resume();
  child.stderr!.resume();
  // A server that asks for a client certificate gets its own (it is good for clientAuth too):
  // without one, this client's endless failed handshakes would only add noise.
  const tls = options.tls
    ? {
        ca: readFileSync(options.tls.caFile),
        ...(options.tls.authClients ? { cert: readFileSync(options.tls.certFile), key: readFileSync(options.tls.keyFile) } : {}),
      }
    : undefined;
  const url = `${tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`;
  const client = new Redis({
    host: '127.0.0.1',
    port,
    maxRetriesPerRequest: 1,
    ...(options.password !== undefined ? { password: options.password } : {}),
    ...(tls ? { tls } : {}),
    ...launch.client,
  });
  client.on('error', () => {}); // the tests kill servers on purpose
  const exited = once(child, 'exit');
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
      await exited;
    },
  };
}

/** Polls `check` until it returns a value (not undefined), or throws after deadlineMs. */
export async function waitFor<T>(what: string, deadlineMs: number, check: () => Promise<T | undefined>, everyMs = 50): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}${last ? `; last error: ${(last as Error).message}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
