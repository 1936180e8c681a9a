// How `sluice serve` starts, as a person sees it: an address in use is named with the setting to
// change, in one line; `npm start` at a terminal prints where it listens and what to try next,
// while logs collected from a pipe stay JSON lines only.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { requireTools } from '../support/command.js';
import { runCli } from '../support/run-cli.js';
import { CLI, watchSidecar, writePolicy } from '../support/sidecar.js';

/** This process's environment, but for SLUICE_ADDR: the line for a person names --addr unless it is the default. */
const { SLUICE_ADDR: _inherited, ...ENV } = process.env;
const POLICY = 'resources: [{ name: api, keys: [tenant], limits: [{ name: l, algorithm: fixed_window, rate: 1/s }] }]\n';

describe('an address already in use', () => {
  let held: Server;
  let address: string;
  beforeAll(async () => {
    held = createServer();
    held.listen(0, '127.0.0.1');
    await once(held, 'listening');
    address = `127.0.0.1:${(held.address() as { port: number }).port}`;
  });
  afterAll(() => held.close());

  it('for gRPC, from SLUICE_LISTEN: one line naming the address and the variable, exit 1', async () => {
    const exit = await runCli(['serve', '--config', writePolicy(POLICY)], { SLUICE_LISTEN: address, SLUICE_ADMIN: 'off' });
    expect(exit).toMatchObject({ code: 1, stderr: `sluice: ${address} (gRPC) is in use: set SLUICE_LISTEN to another address\n` });
    expect(exit.stdout).not.toContain('listening');
  });

  it('for gRPC, from the policy file: the variable or the key in that file', async () => {
    const policy = writePolicy(`server: { listen: "${address}", admin: "off" }\n${POLICY}`);
    const exit = await runCli(['serve', '--config', policy]);
    expect(exit).toMatchObject({ code: 1, stderr: `sluice: ${address} (gRPC) is in use: set SLUICE_LISTEN, or server.listen in ${policy}, to another address\n` });
  });

  it('for admin HTTP, once gRPC listens: the admin variable, or off; the process still exits', async () => {
    const exit = await runCli(['serve', '--config', writePolicy(POLICY)], { SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: address });
    expect(exit).toMatchObject({ code: 1, stderr: `sluice: ${address} (admin HTTP) is in use: set SLUICE_ADMIN to another address (or to off)\n` });
  });

  it('for the Envoy HTTP port, once gRPC listens: envoy.http_listen in the policy file, or remove it', async () => {
    const policy = writePolicy(`envoy:\n  config_dir: ${mkdtempSync(join(tmpdir(), 'sluice-envoy-'))}\n  http_listen: "${address}"\n`);
    const exit = await runCli(['serve', '--config', policy], { SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: 'off' });
    expect(exit).toMatchObject({ code: 1, stderr: `sluice: ${address} (Envoy HTTP) is in use: set envoy.http_listen in ${policy} to another address (or remove it)\n` });
  });
});

describe('the line for a person at a terminal', () => {
  it('npm start at a terminal prints where it listens and what to try next', async () => {
    await requireTools(['script'], 'bsdutils');
    // What `npm start` runs once the build is done, with node spelt out and free ports.
    const start = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).scripts.start as string;
    const command = start.split(' && ').at(-1)!;
    expect(command).toMatch(/^node .* bin\/sluice\.js serve --config examples\/quickstart\.yaml$/);
    // script(1) runs it on a terminal of its own and copies what it prints to its stdout.
    const terminal = spawn('script', ['-qefc', command.replace(/^node /, `${process.execPath} `), '/dev/null'], {
      cwd: packageRoot,
      env: { ...ENV, SLUICE_LOG_LEVEL: 'info', SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: '127.0.0.1:0' },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    let pid: number | undefined;
    try {
      const printed = createInterface({ input: terminal.stdout! });
      const logs: Record<string, unknown>[] = [];
      let human: string | undefined;
      // The JSON log line on stdout and the line on stderr, in whichever order the terminal has them.
      await new Promise<void>((resolve, reject) => {
        terminal.once('exit', (code) => reject(new Error(`script exited (${code}) before the lines:\n${lines.join('\n')}`)));
        printed.on('line', (text) => {
          const line = text.replace(/\r$/, '');
          lines.push(line);
          if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>);
          else human = line;
          pid ??= logs[0]?.pid as number | undefined;
          if (human !== undefined && logs.some((entry) => entry.msg === 'listening')) resolve();
        });
      });
      const { address, admin } = logs.find((entry) => entry.msg === 'listening') as { address: string; admin: string };
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(admin).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(human).toBe(`sluice listening on ${address} (admin http://${admin}); try: npx sluice acquire partner-api tenant=acme --addr ${address}`);
      expect(lines.filter((line) => !line.startsWith('{'))).toEqual([human]);
    } finally {
      const exited = once(terminal, 'exit');
      if (pid !== undefined) process.kill(pid, 'SIGTERM');
      else terminal.kill();
      const [code] = await exited;
      if (pid !== undefined) expect(code).toBe(0);
    }
  });

  it('is not printed when stderr is not a terminal: logs collected from pipes are JSON lines only', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--config', writePolicy(POLICY)], {
      env: { ...ENV, SLUICE_LOG_LEVEL: 'info', SLUICE_LISTEN: '127.0.0.1:0', SLUICE_ADMIN: '127.0.0.1:0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const sidecar = await watchSidecar(child);
    expect(await sidecar.stop()).toBe(0);
    expect(stderr).toBe('');
    expect(sidecar.logs.every((line) => !('raw' in line))).toBe(true);
  });
});
