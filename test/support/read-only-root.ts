// Runs an image's command from its mounted files the way a container runtime would, since podman
// cannot start containers on these machines: in new mount and PID namespaces (the command is PID
// 1), chrooted into the files with the root bind-mounted onto itself read-only, as the image's
// user, in its working directory, with exactly the image's environment plus what the caller adds.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { ImageConfig } from './podman.js';
import { run } from './command.js';

// Runs as root inside the new namespaces; execs into the command, which keeps PID 1. The root is
// made read-only here whatever mounted the files (podman image mount does already; a container's
// mount would not).
const SETUP = `
root=$1 user=$2 workdir=$3; shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
while [ "$1" != -- ]; do mount --bind -o ro "\${1%%:*}" "$root\${1#*:}"; shift; done; shift
exec chroot --userspec="$user" "$root" env -i -C "$workdir" "$@"
`;

export interface ReadOnlyRootOptions {
  /** Added to (or replacing) the image's environment. */
  env?: Record<string, string>;
  /** Host directories mounted read-only at paths inside, e.g. a policy at /etc/sluice. */
  mounts?: Record<string, string>;
}

/** Starts the image's entrypoint and default command; stdout and stderr are piped. */
export function startReadOnly(rootfs: string, image: ImageConfig, options: ReadOnlyRootOptions = {}): ChildProcess {
  const env = assignments({ ...image.env, ...options.env });
  const mounts = Object.entries(options.mounts ?? {}).map(([inside, host]) => `${host}:${inside}`);
  return spawn(
    'unshare',
    ['--mount', '--pid', '--fork', '--kill-child', 'sh', '-euc', SETUP, 'sh', rootfs, image.user, image.workingDir, ...mounts, '--', ...env, ...image.entrypoint, ...image.cmd],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

/** The host PID of the namespace's PID 1, the image's command (unshare waits as its parent). */
export function commandPid(launcher: ChildProcess): number {
  const children = readFileSync(`/proc/${launcher.pid}/task/${launcher.pid}/children`, 'utf8').trim();
  if (!children) throw new Error(`unshare (pid ${launcher.pid}) has not started the command`);
  return Number(children.split(' ')[0]);
}

/**
 * Runs `args` beside the running command as `docker exec` would: in its namespaces, root and
 * directory, as the image's (numeric) user, with the image's environment.
 */
export function execBeside(pid: number, image: ImageConfig, args: string[]): Promise<string> {
  const [uid = '0', gid = uid] = image.user.split(':');
  return run('nsenter', ['--target', String(pid), '--mount', '--pid', '--root', '--wd', '--setuid', uid, '--setgid', gid, '--', 'env', '-i', ...assignments(image.env), ...args]);
}

function assignments(env: Record<string, string>): string[] {
  return Object.entries(env).map(([name, value]) => `${name}=${value}`);
}
