// deploy/Dockerfile built for real on a local Node 24 base, and the image's entrypoint started from
// its own files the way a pod with readOnlyRootFilesystem and runAsNonRoot starts it. Needs root,
// podman and debootstrap; runs with `npm run test:image`, not with `npm test`.
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { nodeBaseImage } from '../support/base-image.js';
import { connect, type SluiceClient } from '../support/client.js';
import { DEPLOYED_ENTRYPOINT_FLAGS, DEPLOYED_NODE_OPTIONS } from '../support/deployed.js';
import { buildImage, inspectImage, mountImage, unmountImage, type ImageConfig } from '../support/podman.js';
import { freePort } from '../support/ports.js';
import { commandPid, execBeside, startReadOnly } from '../support/read-only-root.js';
import { watchSidecar, writePolicy, type SidecarProcess } from '../support/sidecar.js';
import { ConfigMapVolume } from '../support/configmap-volume.js';
import { inject } from '../../src/kube/inject.js';
import fastJsonPatch from 'fast-json-patch';

const TAG = 'localhost/sluice:test';
const POLICY = `
resources:
  - name: image-check
    keys: [tenant]
    limits:
      - { name: hourly, algorithm: fixed_window, rate: 2/1h }
`;

const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { files: string[] };
const lock = JSON.parse(readFileSync(join(packageRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };

let base: string;
let image: ImageConfig;
let rootfs: string | undefined;

beforeAll(async () => {
  base = await nodeBaseImage();
  await buildImage(TAG, 'deploy/Dockerfile', { BASE: base });
  image = await inspectImage(TAG);
  rootfs = await mountImage(TAG);
});

afterAll(async () => {
  if (rootfs) await unmountImage(TAG);
});

describe('the image', () => {
  it('runs sluice as uid 1000 with the deployed heap flags, the policy from /etc/sluice', () => {
    expect(image.user).toBe('1000:1000');
    expect(image.entrypoint).toEqual(['node', ...DEPLOYED_ENTRYPOINT_FLAGS, 'bin/sluice.js']);
    expect(image.cmd).toEqual(['serve', '--config', '/etc/sluice/policy.yaml']);
    expect(image.workingDir).toBe('/app');
    expect(image.env.NODE_OPTIONS).toBe(DEPLOYED_NODE_OPTIONS.join(' '));
    expect(image.env.NODE_ENV).toBe('production');
  });

  it('ships what package.json "files" lists, and no test or bench code', () => {
    const app = join(rootfs!, 'app');
    for (const entry of pkg.files) expect(existsSync(join(app, entry)), entry).toBe(true);
    const topLevel = new Set(['package.json', 'node_modules', ...pkg.files.map((entry) => entry.split('/')[0]!)]);
    expect(readdirSync(app).sort()).toEqual([...topLevel].sort());
    expect(readdirSync(join(app, 'dist'))).toEqual(['src']);
    expect(existsSync(join(app, 'dist', 'src', 'cli', 'main.js'))).toBe(true);
  });

  it('carries exactly the production dependencies of package-lock.json', () => {
    const installed = packagesUnder(join(rootfs!, 'app', 'node_modules'), 'node_modules');
    for (const dev of ['vitest', 'typescript', 'kubernetes-models', 'bottleneck', 'rate-limiter-flexible']) expect(installed).not.toContain(`node_modules/${dev}`);
    const production = Object.entries(lock.packages)
      .filter(([path, entry]) => path.startsWith('node_modules/') && !entry.dev)
      .map(([path]) => path);
    expect(installed.sort()).toEqual(production.sort());
  });

  // OpenTelemetry's SDK and OTLP exporters (loaded only with tracing on) are about half of it.
  it('adds less than 60 MB to its base', async () => {
    const baseSize = (await inspectImage(base)).size;
    const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
    console.log(`image ${TAG}: ${mb(image.size)}, of which ${mb(image.size - baseSize)} over its base ${base} (${mb(baseSize)})`);
    expect(image.size - baseSize).toBeLessThan(60e6);
  });
});

describe('started from its own files, root filesystem read-only', () => {
  let launcher: ChildProcess | undefined;
  let sidecar: SidecarProcess | undefined;
  let client: SluiceClient;
  let listen: string;
  let admin: string;

  beforeAll(async () => {
    const policyDir = dirname(writePolicy(POLICY));
    chmodSync(policyDir, 0o755); // read by uid 1000, as a ConfigMap volume is
    listen = `127.0.0.1:${await freePort()}`;
    admin = `127.0.0.1:${await freePort()}`;
    const started = startReadOnly(rootfs!, image, { env: { SLUICE_LISTEN: listen, SLUICE_ADMIN: admin }, mounts: { '/etc/sluice': policyDir } });
    launcher = started;
    sidecar = await watchSidecar(started, (signal) => process.kill(commandPid(started), signal));
    client = connect(sidecar.address);
  });

  afterAll(async () => {
    client?.close();
    if (sidecar) await sidecar.stop();
    else launcher?.kill('SIGKILL'); // unshare --kill-child takes the command with it
  });

  it('serves the mounted policy on the addresses SLUICE_LISTEN and SLUICE_ADMIN name', async () => {
    expect(sidecar!.address).toBe(listen);
    expect(sidecar!.admin).toBe(admin);
    const acquire = () => client.acquire({ resource: 'image-check', descriptors: { tenant: 'acme' } });
    expect((await acquire()).granted).toBe(true);
    expect((await acquire()).granted).toBe(true);
    const third = await acquire();
    expect(third.granted).toBe(false);
    expect(third.limit_name).toBe('hourly');
    expect((await fetch(`http://${admin}/readyz`)).status).toBe(200);
    expect(sidecar!.logs.find((entry) => entry.msg === 'listening')).toMatchObject({ policy: '/etc/sluice/policy.yaml', store: 'memory' });
    expect(sidecar!.logs.filter((entry) => Number(entry.level) >= 40)).toEqual([]);
  });

  it('runs as uid and gid 1000, as PID 1 of its namespace, on Node 24', async () => {
    const status = readFileSync(`/proc/${commandPid(launcher!)}/status`, 'utf8');
    expect(status).toMatch(/^Uid:\t1000\t1000\t1000\t1000$/m);
    expect(status).toMatch(/^Gid:\t1000\t1000\t1000\t1000$/m);
    expect(status).toMatch(/^NSpid:\t\d+\t1$/m);
    expect(await execBeside(commandPid(launcher!), image, ['node', '--version'])).toMatch(/^v24\./);
  });

  it('cannot write to its root filesystem, even where uid 1000 may write', async () => {
    const probe = `
      const codes = {};
      for (const dir of ['/tmp', '/home/node']) {
        try { require('node:fs').writeFileSync(dir + '/write-probe', ''); codes[dir] = 'written'; } catch (err) { codes[dir] = err.code; }
      }
      console.log(JSON.stringify(codes));`;
    expect(JSON.parse(await execBeside(commandPid(launcher!), image, ['node', '-e', probe]))).toEqual({ '/tmp': 'EROFS', '/home/node': 'EROFS' });
  });

  it('exits 0 on SIGTERM', async () => {
    expect(await sidecar!.stop()).toBe(0);
    expect(sidecar!.logs.at(-1)?.msg).toBe('stopped');
  });
});

describe('as the injector puts it into a pod', () => {
  // The sidecar container the injector writes, run from the image as the kubelet would run it:
  // the image's entrypoint with the container's args and env, the policy ConfigMap as a volume
  // at its mountPath, probed where its probes point; then the ConfigMap is updated.
  let launcher: ChildProcess | undefined;
  let sidecar: SidecarProcess | undefined;
  let client: SluiceClient;
  let volume: ConfigMapVolume;
  let container: Record<string, any>;
  let appEnv: { name: string; value?: string }[];

  beforeAll(async () => {
    const review = JSON.parse(readFileSync(join(packageRoot, 'test', 'kube', 'fixtures', 'native.review.json'), 'utf8'));
    const pod = review.request.object;
    // Free ports, through the annotations, since this machine's 50051 and 9464 may be taken.
    const [port, adminPort] = [await freePort(), await freePort()];
    pod.metadata.annotations = { ...pod.metadata.annotations, 'sluice.dev/port': String(port), 'sluice.dev/admin-port': String(adminPort) };
    const injection = inject(pod, review.request.namespace, false, { namespace: 'sluice-system', defaultImage: TAG });
    if (!('patch' in injection)) throw new Error(`not injected: ${injection.skip}`);
    const patched = fastJsonPatch.applyPatch(structuredClone(pod), injection.patch).newDocument;
    container = patched.spec.initContainers.find((each: { name: string }) => each.name === 'sluice');
    appEnv = patched.spec.containers[0].env;
    expect(container.image).toBe(TAG);

    volume = new ConfigMapVolume(POLICY);
    const env = Object.fromEntries(container.env.map((each: { name: string; value: string }) => [each.name, each.value]));
    const mounts = Object.fromEntries(container.volumeMounts.map((mount: { mountPath: string }) => [mount.mountPath, volume.dir]));
    // A container's args replace the image's CMD; its entrypoint stays.
    const started = startReadOnly(rootfs!, { ...image, cmd: container.args }, { env, mounts });
    launcher = started;
    sidecar = await watchSidecar(started, (signal) => process.kill(commandPid(started), signal));
    client = connect(appEnv.find((each) => each.name === 'SLUICE_ADDR')!.value!);
  });

  afterAll(async () => {
    client?.close();
    if (sidecar) await sidecar.stop();
    else launcher?.kill('SIGKILL');
  });

  it('passes the probes the injector wrote, and answers the app at SLUICE_ADDR', async () => {
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const { path, port } = container[probe].httpGet;
      expect((await fetch(`http://127.0.0.1:${port}${path}`)).status, probe).toBe(200);
    }
    const acquire = () => client.acquire({ resource: 'image-check', descriptors: { tenant: 'acme' } });
    expect((await acquire()).granted).toBe(true);
    expect((await acquire()).granted).toBe(true);
    expect((await acquire()).granted).toBe(false);
  });

  it('serves an updated ConfigMap within 2 s, with the budget already spent', async () => {
    volume.update(POLICY.replace('2/1h', '3/1h'));
    const start = Date.now();
    let granted = false;
    while (!granted && Date.now() - start < 2_000) {
      granted = (await client.acquire({ resource: 'image-check', descriptors: { tenant: 'acme' } })).granted;
      if (!granted) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(granted).toBe(true);
    expect((await client.acquire({ resource: 'image-check', descriptors: { tenant: 'acme' } })).granted).toBe(false);
    expect(sidecar!.logs.some((entry) => entry.msg === 'policy reloaded')).toBe(true);
  });
});

/** Every package directory under a node_modules, nested ones too, as package-lock.json names them. */
function packagesUnder(dir: string, prefix: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.')) continue;
    const names = name.startsWith('@') ? readdirSync(join(dir, name)).map((scoped) => `${name}/${scoped}`) : [name];
    for (const each of names) {
      found.push(`${prefix}/${each}`);
      const nested = join(dir, each, 'node_modules');
      if (existsSync(nested)) found.push(...packagesUnder(nested, `${prefix}/${each}/node_modules`));
    }
  }
  return found;
}
