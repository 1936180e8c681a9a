// The built CLI as a real process: the sidecar (`node dist/src/cli/main.js serve`) on free ports,
// or any other command that logs when it listens.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { connect, type SluiceClient } from './client.js';

export const CLI = join(packageRoot, 'dist', 'src', 'cli', 'main.js');

export interface CliProcess {
  child: ChildProcess;
  /** The log line that says it listens. */
  listening: Record<string, unknown>;
  /** Every log line so far, parsed. */
  logs: Record<string, unknown>[];
  /** Sends the signal (SIGTERM by default) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface SidecarProcess extends CliProcess {
  address: string;
  admin: string | null;
}

export function writePolicy(yaml: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-policy-')), 'policy.yaml');
  writeFileSync(file, yaml);
  return file;
}

export { DEPLOYED_NODE_FLAGS } from './deployed.js';

/** `nodeFlags` go to node before the script, e.g. DEPLOYED_NODE_FLAGS. */
export function startSidecar(policyYaml: string, env: Record<string, string> = {}, nodeFlags: string[] = []): Promise<SidecarProcess> {
  return startSidecarOn(writePolicy(policyYaml), env, nodeFlags);
}

/** A sidecar serving the policy file at `policyFile` (which it watches). */
export async function startSidecarOn(policyFile: string, env: Record<string, string> = {}, nodeFlags: string[] = []): Promise<SidecarProcess> {
  return asSidecar(await startCli(['serve', '--config', policyFile], { SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: '127.0.0.1:0', ...env }, nodeFlags));
}

/** `sluice ARGS...` as a process (logging at info), once it has logged that it listens. */
export function startCli(args: string[], env: Record<string, string> = {}, nodeFlags: string[] = []): Promise<CliProcess> {
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...args], {
    env: { ...process.env, SLUICE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return watchCli(child);
}

/**
 * A started `sluice serve` (stdout and stderr piped), once it logs that it listens. `signal`
 * reaches the sidecar itself: the child unless the child is a launcher that runs it.
 */
export async function watchSidecar(child: ChildProcess, signal?: (name: NodeJS.Signals) => void): Promise<SidecarProcess> {
  return asSidecar(await watchCli(child, signal));
}

function asSidecar(started: CliProcess): SidecarProcess {
  return { ...started, address: started.listening.address as string, admin: (started.listening.admin as string | null) ?? null };
}

async function watchCli(child: ChildProcess, signal: (name: NodeJS.Signals) => void = (name) => child.kill(name)): Promise<CliProcess> {
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const lines = createInterface({ input: child.stdout! });
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`sluice exited (${code}) before listening:\n${stderr}${logs.map((l) => JSON.stringify(l)).join('\n')}`)));
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === 'listening') resolve(entry);
      } catch {
        logs.push({ raw: line });
      }
    });
  });
  child.removeAllListeners('exit');
  const exited = once(child, 'exit');
  return {
    child,
    listening,
    logs,
    async stop(name = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) signal(name);
      const [code] = await exited;
      return code as number | null;
    },
  };
}

/**
 * Several sidecars, each with a client, for the enclosing describe block (or file), one per
 * policy; read when they start, so they may name servers an earlier beforeAll started.
 */
export function useSidecars(policies: () => string[], env: () => Record<string, string> = () => ({}), nodeFlags: string[] = []): SidecarWithClient[] {
  const all: SidecarWithClient[] = [];
  beforeAll(async () => {
    for (const policy of policies()) {
      const sidecar = await startSidecar(policy, env(), nodeFlags);
      all.push({ sidecar, client: connect(sidecar.address) });
    }
  });
  afterAll(async () => {
    for (const { client } of all) client.close();
    await Promise.all(all.map(({ sidecar }) => sidecar.stop()));
  });
  return all;
}

export interface SidecarWithClient {
  sidecar: SidecarProcess;
  client: SluiceClient;
}

/**
 * A sidecar and a client for the enclosing describe block (or file): started in beforeAll,
 * stopped in afterAll. The policy and environment are read when it starts, so they may name
 * servers an earlier beforeAll started; after hooks run in reverse, so it stops before those.
 */
export function useSidecar(policy: () => string, env: () => Record<string, string> = () => ({}), nodeFlags: string[] = []): SidecarWithClient {
  const held = {} as SidecarWithClient;
  beforeAll(async () => {
    held.sidecar = await startSidecar(policy(), env(), nodeFlags);
    held.client = connect(held.sidecar.address);
  });
  afterAll(async () => {
    held.client?.close();
    await held.sidecar?.stop();
  });
  return held;
}

/**
 * A figure from the sidecar's /metrics: the sum of every series of `name` whose labels contain
 * each of `labels` (e.g. `outcome="granted"`); 0 when there is none.
 */
export async function metric(sidecar: SidecarProcess, name: string, ...labels: string[]): Promise<number> {
  const text = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
  let sum = 0;
  for (const match of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`, 'gm'))) {
    if (labels.every((label) => (match[1] ?? '').includes(label))) sum += Number(match[2]);
  }
  return sum;
}
