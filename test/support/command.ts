// Runs a command to the end: a setup command (debootstrap, podman, npm) that fails with what it
// said on stderr, or one whose exit code and output are what is tested.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

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

export interface Exit {
  code: number;
  stdout: string;
  stderr: string;
}

/** How `command args` exited, and what it printed; rejects only when it could not run or was killed. */
export async function exitOf(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<Exit> {
  try {
    const { stdout, stderr } = await promisify(execFile)(command, args, { ...options, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
