// The README's raw-stub commands work as printed with Debian's tools: each sh block of its "Raw
// stubs" section runs from a directory laid out as the repository's root, and its Python
// snippet imports what they made and calls a sidecar.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { useSidecar } from '../support/sidecar.js';

/** The fenced blocks of `lang` in the README section headed `heading`. */
function blocks(heading: string, lang: string): string[] {
  const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`README has no section ${heading}`);
  const next = readme.slice(start + heading.length + 2).search(/\n#{2,3} /);
  const section = next < 0 ? readme.slice(start) : readme.slice(start, start + heading.length + 2 + next);
  return [...section.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

describe('README: raw stubs, any language', () => {
  const running = useSidecar(() => 'resources:\n  - name: partner-api\n    keys: [tenant]\n    limits: [{ name: rps, algorithm: token_bucket, rate: 5/s }]\n');
  let root: string;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'sluice-readme-'));
    symlinkSync(join(packageRoot, 'proto'), join(root, 'proto'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('the protoc commands make the Python and Go stubs', () => {
    const commands = blocks('### Raw stubs, any language', 'sh');
    expect(commands).toHaveLength(2);
    for (const command of commands) execFileSync('bash', ['-euo', 'pipefail', '-c', command], { cwd: root, stdio: 'pipe' });
    for (const file of ['python/sluice/v1/sluice_pb2.py', 'python/sluice/v1/sluice_pb2_grpc.py', 'go/sluice/v1/sluice.pb.go', 'go/sluice/v1/sluice_grpc.pb.go']) {
      expect(existsSync(join(root, 'gen', file)), file).toBe(true);
    }
  });

  it('the Python snippet calls the sidecar with them', () => {
    const [snippet] = blocks('### Raw stubs, any language', 'python');
    const script = join(root, 'snippet.py');
    writeFileSync(script, snippet!.replace('127.0.0.1:50051', running.sidecar.address));
    const out = execFileSync('/usr/bin/python3', [script], { cwd: root, encoding: 'utf8', env: { PATH: process.env.PATH ?? '', PYTHONNOUSERSITE: '1' } });
    expect(out).toBe('True STORE\n');
  });
});
