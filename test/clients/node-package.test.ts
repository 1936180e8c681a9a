// The Node client as a package: what `npm pack` ships (its code, declarations and the proto it
// loads; the root package none of it), and a project that installs it, typechecks against its
// declarations through "exports", and runs against a sidecar found by SLUICE_ADDR.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { run } from '../support/command.js';
import { useSidecar } from '../support/sidecar.js';

const CLIENT = join(packageRoot, 'clients', 'node');

/** The paths `npm pack` would put in the package at `dir`. */
async function packed(dir: string): Promise<string[]> {
  const [pack] = JSON.parse(await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir })) as [{ files: { path: string }[] }];
  return pack.files.map((file) => file.path).sort();
}

describe('npm pack', () => {
  it('ships the built ESM, its declarations, the README and the proto it loads', async () => {
    const files = await packed(CLIENT);
    expect(files).toEqual(expect.arrayContaining(['README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'proto/sluice/v1/sluice.proto']));
    expect(files.filter((path) => !/^(dist\/[\w-]+\.(js|d\.ts)|proto\/sluice\/v1\/sluice\.proto|README\.md|package\.json)$/.test(path))).toEqual([]);
  });

  it("ships the repository's proto unchanged", () => {
    const shipped = readFileSync(join(CLIENT, 'proto', 'sluice', 'v1', 'sluice.proto'), 'utf8');
    expect(shipped).toBe(readFileSync(join(packageRoot, 'proto', 'sluice', 'v1', 'sluice.proto'), 'utf8'));
  });

  it('of the sidecar ships nothing of the clients', async () => {
    const files = await packed(packageRoot);
    expect(files).toContain('dist/src/cli/main.js');
    expect(files.filter((path) => path.startsWith('clients/'))).toEqual([]);
  });
});

const POLICY = `
resources:
  - name: slot
    keys: [tenant]
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 60s }
`;

// Types through "exports" ("types"), `await using` as a user writes it (TypeScript's own lib
// settings, with @types/node), the target from SLUICE_ADDR.
const CONSUMER = `
import { Client, Denied, type DecidedBy } from 'sluice-client';

const sluice = new Client();
const seen: { decidedBy: DecidedBy; deniedInside?: string }[] = [];
{
  await using permit = await sluice.acquire({ resource: 'slot', descriptors: { tenant: 'consumer' } });
  const inside = await sluice.acquire({ resource: 'slot', descriptors: { tenant: 'consumer' } }).catch((err: unknown) => err);
  seen.push({ decidedBy: permit.decidedBy, deniedInside: inside instanceof Denied ? inside.limitName : 'not denied' });
}
const after = await sluice.withPermit({ resource: 'slot', descriptors: { tenant: 'consumer' } }, (permit) => permit.decidedBy);
console.log(JSON.stringify({ target: sluice.target, seen, after }));
sluice.close();
`;

describe('a project that installs sluice-client', () => {
  const running = useSidecar(() => POLICY);

  it('typechecks against its declarations, imports its ESM and calls the sidecar at SLUICE_ADDR', async () => {
    const project = mkdtempSync(join(tmpdir(), 'sluice-client-user-'));
    try {
      mkdirSync(join(project, 'node_modules'));
      symlinkSync(CLIENT, join(project, 'node_modules', 'sluice-client'));
      writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module' }));
      writeFileSync(join(project, 'main.ts'), CONSUMER);
      const compilerOptions = {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        outDir: 'out',
        types: ['node'],
        typeRoots: [join(packageRoot, 'node_modules', '@types')],
      };
      writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['main.ts'] }));
      await run(process.execPath, [join(packageRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project]);
      const out = await run(process.execPath, [join(project, 'out', 'main.js')], { cwd: project, env: { ...process.env, SLUICE_ADDR: running.sidecar.address } });
      expect(JSON.parse(out)).toEqual({ target: running.sidecar.address, seen: [{ decidedBy: 'STORE', deniedInside: 'inflight' }], after: 'STORE' });
    } finally {
      rmSync(project, { recursive: true, force: true });
    }
  });
});
