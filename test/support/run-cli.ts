// The built CLI run to completion: what it printed and how it exited.
import { execFile } from 'node:child_process';
import { CLI } from './sidecar.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `sluice ARGS...` with `env` added to this process's environment (SLUICE_ADDR removed unless given). */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const { SLUICE_ADDR: _inherited, ...inherited } = process.env;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...inherited, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
