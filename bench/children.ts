// Every process the bench starts: the floor, sluice sidecars, the delay proxy (and redis-server,
// adopted). Each is tracked until it exits, and whatever is left is killed when the bench exits,
// however it exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { packageRoot } from '../src/paths.js';
import { DEPLOYED_NODE_FLAGS } from '../test/support/deployed.js';

const live = new Set<ChildProcess>();
const tempDirs: string[] = [];

/** Tracks a process started elsewhere (redis-server from test/support) for the final kill. */
export function adopt(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/**
 * SIGKILLs every process this bench started that is still running, and removes its policy files.
 * Synchronous, so it can run in an 'exit' handler.
 */
export function killAll(): void {
  for (const child of live) {
    try {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

export interface Child {
  name: string;
  pid: number;
  /** host:port from its "listening" log line. */
  address: string;
  /** The admin HTTP host:port from the same line (sluice only); null when there is none. */
  admin: string | null;
  /** SIGTERM, then SIGKILL if it has not exited within graceMs. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `node [nodeFlags] script args` and waits for the JSON log line with msg "listening" and
 * an address, as sluice, the floor and the proxy all print.
 */
export async function startListening(
  name: string,
  script: string,
  args: string[],
  env: Record<string, string> = {},
  nodeFlags: string[] = [],
): Promise<Child> {
  const child = spawn(process.execPath, [...nodeFlags, script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  adopt(child);
  let stderr = '';
  child.stderr!.on('data', (chunk) => {
    if (stderr.length < 20_000) stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = createInterface({ input: child.stdout! });
  try {
    let onExit: (code: number | null, signal: string | null) => void = () => undefined;
    let admin: string | null = null;
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not report listening within 30 s:\n${stderr}`)), 30_000);
      onExit = (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code ?? signal}) before listening:\n${stderr}`));
      };
      child.once('exit', onExit);
      lines.on('line', (line) => {
        try {
          const entry = JSON.parse(line) as { msg?: string; address?: string; admin?: string | null };
          if (entry.msg === 'listening' && entry.address) {
            clearTimeout(timer);
            admin = entry.admin ?? null;
            resolve(entry.address);
          }
        } catch {
          // not a JSON line: ignore
        }
      });
    });
    child.off('exit', onExit);
    // Keep reading its output so a full pipe never blocks it.
    lines.removeAllListeners('line');
    lines.on('line', () => undefined);
    return {
      name,
      pid: child.pid!,
      address,
      admin,
      async stop(graceMs = 3_000) {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

const benchDir = join(packageRoot, 'dist', 'bench');
const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

/**
 * The no-op gRPC server, in its own process, under the same V8 flags as every sidecar: heap sizing
 * alone moves a small server's CPU per call by 10 to 30%, so a ratio between processes run
 * with different flags would measure the flags, not sluice's code.
 */
export function startFloorProcess(): Promise<Child> {
  return startListening('floor', join(benchDir, 'floor-server.js'), [], {}, DEPLOYED_NODE_FLAGS);
}

/** The delay proxy, in its own process, in front of Redis on targetPort. */
export function startProxyProcess(targetPort: number, delayMs: number): Promise<Child> {
  return startListening('tcp-delay-proxy', join(benchDir, 'tcp-delay-proxy.js'), [
    '--target-port',
    String(targetPort),
    '--delay-ms',
    String(delayMs),
  ]);
}


/** The built sidecar (`node dist/src/cli/main.js serve --config FILE`) on free ports, as deployed. */
export async function startSluiceProcess(name: string, policyYaml: string): Promise<Child> {
  // Kept until the bench exits: a sidecar may watch its policy file.
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  tempDirs.push(dir);
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, policyYaml);
  return startListening(
    name,
    CLI,
    ['serve', '--config', file],
    { SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: '127.0.0.1:0', SLUICE_LOG_LEVEL: 'info' },
    DEPLOYED_NODE_FLAGS,
  );
}
