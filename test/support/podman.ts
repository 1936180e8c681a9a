// podman for the image test: build an image from the repository, read its config, mount its files.
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { requireTools, run } from './command.js';

export interface ImageConfig {
  /** Bytes, as `podman image inspect` counts them. */
  size: number;
  user: string;
  env: Record<string, string>;
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
}

/**
 * `podman build` of `dockerfile` with the repository root as context. Chroot isolation, because
 * podman cannot start containers on these machines; RUN steps share the host's network.
 */
export async function buildImage(tag: string, dockerfile: string, buildArgs: Record<string, string>): Promise<void> {
  await requireTools(['podman'], 'podman');
  const npmConfig = await hostNpmConfig();
  try {
    await run(
      'podman',
      [
        'build', '--isolation', 'chroot', '--force-rm',
        // npm's global config directory in a Node image (prefix /usr/local): the build's npm uses
        // this machine's registry settings, and the mount leaves nothing in the image.
        '--volume', `${npmConfig}:/usr/local/etc:ro`,
        ...Object.entries(buildArgs).flatMap(([name, value]) => ['--build-arg', `${name}=${value}`]),
        '-f', dockerfile, '-t', tag, '.',
      ],
      { cwd: packageRoot },
    );
  } finally {
    rmSync(npmConfig, { recursive: true, force: true });
  }
}

/**
 * The registry settings this machine's npm uses (registry, proxies, and the CA file that trusts
 * them, e.g. for a TLS-inspecting proxy), as a global npmrc in a fresh directory. Proxy
 * environment variables podman passes through by itself.
 */
async function hostNpmConfig(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-npmrc-'));
  const lines: string[] = [];
  const settings = await run('npm', ['config', 'get', 'registry', 'proxy', 'https-proxy', 'noproxy', 'cafile']);
  for (const line of settings.split('\n')) {
    const [, name, value] = /^([\w-]+)=(.+)$/.exec(line.trim()) ?? [];
    if (!name || !value || value === 'null' || value === 'undefined') continue;
    if (name !== 'cafile') lines.push(`${name}=${value}`);
    else if (existsSync(value)) {
      copyFileSync(value, join(dir, 'ca.crt'));
      lines.push('cafile=/usr/local/etc/ca.crt');
    }
  }
  writeFileSync(join(dir, 'npmrc'), `${lines.join('\n')}\n`);
  return dir;
}

export async function inspectImage(tag: string): Promise<ImageConfig> {
  const [image] = JSON.parse(await run('podman', ['image', 'inspect', tag])) as {
    Size: number;
    Config: { User?: string; Env?: string[]; Entrypoint?: string[]; Cmd?: string[]; WorkingDir?: string };
  }[];
  const config = image!.Config;
  return {
    size: image!.Size,
    user: config.User ?? '',
    env: Object.fromEntries((config.Env ?? []).map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)])),
    entrypoint: config.Entrypoint ?? [],
    cmd: config.Cmd ?? [],
    workingDir: config.WorkingDir || '/',
  };
}

/** The image's files, mounted read-only; unmountImage undoes it. */
export async function mountImage(tag: string): Promise<string> {
  return (await run('podman', ['image', 'mount', tag])).trim();
}

export async function unmountImage(tag: string): Promise<void> {
  await run('podman', ['image', 'unmount', tag]);
}
