// Runs a setup command to the end (debootstrap, podman, npm) and fails with what it said on stderr.
import { execFile } from 'node:child_process';

/** stdout of `command args`; rejects with the exit status and stderr's last lines. */
export function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { ...options, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const said = `${stderr}${stdout}`.trim().split('\n').slice(-30).join('\n');
      reject(new Error(`${command} ${args.join(' ')} failed (${err.code ?? err.signal}):\n${said}`));
    });
  });
}

/** Throws, naming the Debian packages to install, when a tool is not on PATH. */
export async function requireTools(tools: string[], packages: string): Promise<void> {
  const missing = [];
  for (const tool of tools) {
    if (!(await run('sh', ['-c', 'command -v "$1"', 'sh', tool]).then(Boolean, () => false))) missing.push(tool);
  }
  if (missing.length > 0) throw new Error(`${missing.join(', ')} not found; as root: apt-get install -y ${packages}`);
}
