// clients/python as committed: its generated stubs are what generate.sh makes from proto/ now
// (the drift test), and the package passes mypy --strict (Debian's mypy).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { run } from '../support/command.js';
import { PYTHON, pythonEnv } from '../support/python.js';

const CLIENT = join(packageRoot, 'clients', 'python');
const COMMITTED = join(CLIENT, 'src', 'sluice_client', 'v1');
/** Written by hand beside the generated files. */
const HANDWRITTEN = ['__init__.py'];

/** Where two texts first differ, line by line; null when they are the same. */
function firstDifference(committed: string, fresh: string): string | null {
  const [a, b] = [committed.split('\n'), fresh.split('\n')];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `line ${i + 1}: committed ${JSON.stringify(a[i]?.slice(0, 200))}, generated ${JSON.stringify(b[i]?.slice(0, 200))}`;
  }
  return null;
}

describe('the committed stubs in sluice_client/v1', () => {
  const fresh = mkdtempSync(join(tmpdir(), 'sluice-pystubs-fresh-'));
  afterAll(() => rmSync(fresh, { recursive: true, force: true }));

  it('are exactly what clients/python/generate.sh makes from proto/ (run it after changing the proto)', async () => {
    await run('bash', [join(CLIENT, 'generate.sh'), fresh]);
    const generated = readdirSync(fresh).sort();
    expect(generated).toEqual(['sluice_pb2.py', 'sluice_pb2.pyi', 'sluice_pb2_grpc.py']);
    // Nothing else: a file no longer generated would still ship.
    expect(readdirSync(COMMITTED).filter((name) => !HANDWRITTEN.includes(name)).sort()).toEqual(generated);
    for (const name of generated) {
      const difference = firstDifference(readFileSync(join(COMMITTED, name), 'utf8'), readFileSync(join(fresh, name), 'utf8'));
      expect(difference, `${name} differs from a fresh generation: run clients/python/generate.sh`).toBeNull();
    }
  });

  it('import each other inside the package, not as the top-level sluice.v1', () => {
    expect(readFileSync(join(COMMITTED, 'sluice_pb2_grpc.py'), 'utf8')).toContain('\nfrom . import sluice_pb2 as ');
    expect(readFileSync(join(COMMITTED, 'sluice_pb2.py'), 'utf8')).not.toMatch(/sluice\.v1\.sluice_pb2|^from sluice\.v1/m);
  });
});

describe('sluice_client types', () => {
  it('pass mypy --strict (the settings in clients/python/pyproject.toml)', async () => {
    // No cache: it would be written into the tree.
    const said = await run(PYTHON, ['-m', 'mypy', '--cache-dir=/dev/null'], { cwd: CLIENT, env: pythonEnv() }).catch((err: Error) => {
      throw new Error(`${err.message}\n(mypy is Debian's: apt-get install -y mypy)`);
    });
    expect(said).toMatch(/^Success: no issues found in \d+ source files/m);
  });
});
