// YAML abuse and oversized policies are refused with the file, line and column, never by a crash; a
// policy of 10,000 resources checks and serves within the deployed heap.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadPolicyFile, parsePolicy, PolicyError } from '../../src/config/load.js';
import { CLI, DEPLOYED_NODE_FLAGS, startSidecar, writePolicy } from '../support/sidecar.js';
import { connect } from '../support/client.js';

const run = promisify(execFile);

function problems(yaml: string): string[] {
  try {
    parsePolicy(yaml, 'policy.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).message).toContain('policy.yaml: invalid policy');
    return (err as PolicyError).problems;
  }
  throw new Error('expected the policy to be rejected');
}

const ONE_LIMIT = '[{ name: l, algorithm: fixed_window, rate: 10/1s }]';

/** n resources, one limit each, in flow style: the densest way to write them. */
function manyResources(n: number): string {
  let yaml = 'resources:\n';
  for (let i = 0; i < n; i++) yaml += `  - { name: r${i}, limits: ${ONE_LIMIT} }\n`;
  return yaml;
}

/** n resources as they are usually written: block style, a key, two limits (about 200 bytes each). */
function verboseResources(n: number): string {
  const lines = ['resources:'];
  for (let i = 0; i < n; i++) {
    lines.push(`  - name: r${i}`, '    keys: [tenant]', '    on_store_failure: open', '    limits:');
    lines.push('      - { name: rpm, algorithm: token_bucket, rate: 60/1m }', '      - { name: daily, algorithm: fixed_window, rate: 10000/1d }');
  }
  return `${lines.join('\n')}\n`;
}

/** Exit code, stdout and stderr of the CLI under the deployed heap. */
async function checkUnderDeployedHeap(file: string): Promise<{ code: number; signal: string | null; out: string }> {
  try {
    const { stdout } = await run(process.execPath, [...DEPLOYED_NODE_FLAGS, CLI, 'check', file]);
    return { code: 0, signal: null, out: stdout };
  } catch (err) {
    const e = err as { code: number; signal: string | null; stdout: string; stderr: string };
    return { code: e.code, signal: e.signal, out: e.stdout + e.stderr };
  }
}

describe('YAML limits', () => {
  it('more than 100 aliases: refused at the 101st, with its line', () => {
    const yaml = `x: &one 1\nresources:\n${Array.from({ length: 101 }, (_, i) => `  - { name: r${i}, limits: [{ name: l, algorithm: fixed_window, rate: 1/s, n: *one }] }`).join('\n')}\n`;
    expect(problems(yaml)).toEqual(['line 103, column 78: more than 100 YAML aliases (this one is *one); write the values out']);
  });

  it('aliases of aliases that expand past 100: refused at the first alias of an anchor holding aliases', () => {
    const yaml = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'resources: [*c]',
    ].join('\n');
    expect(problems(yaml)).toEqual([expect.stringMatching(/^line 3, column 8: aliases of aliases expand to more than 100 aliases \(\*b repeats aliases of its own; write the values out\)$/)]);
  });

  it('an anchor that holds its own alias, or aliases repeating more than 100,000 values: refused with the line', () => {
    expect(problems('a: &a [*a]\nresources: []\n')).toEqual(['line 1, column 8: *a is inside its own anchor &a; a policy cannot refer to itself']);
    expect(problems('a: &a\n  b: *a\nresources: []\n')).toEqual(['line 2, column 6: *a is inside its own anchor &a; a policy cannot refer to itself']);
    // 2,000 keys and their list: 2,001 values a copy, so the 50th copy passes 100,000.
    const keys = `[${Array.from({ length: 2000 }, (_, i) => `k${i}`).join(', ')}]`;
    const resources = Array.from({ length: 50 }, (_, i) => `  - { name: r${i}, keys: *keys, limits: ${ONE_LIMIT} }`);
    expect(problems(`x: &keys ${keys}\nresources:\n${resources.join('\n')}\n`)).toEqual([
      'line 52, column 24: aliases repeat more than 100000 values (this one is *keys); write the values out',
    ]);
  });

  it("problems inside an anchored value name the anchor's place; an empty value is placed after its key", () => {
    expect(problems('std: &std { name: l, algorithm: fixed_window, rate: 1/x }\nresources:\n  - name: r\n    limits: [*std]\n')).toEqual([
      '(top level) (line 1, column 1): unknown key "std" (known keys: server, store, resources, envoy, tracing)',
      'resources[0].limits[0].rate (line 1, column 53): "1/x": the unit must be one of ms, s, m, h, d, as in 1/s, 1/1m or 1/30s',
    ]);
    expect(problems(`server:\n  listen:\n  admin: 127.0.0.1:9464\nresources: [{ name: r, limits: ${ONE_LIMIT} }]\n`)).toEqual([
      'server.listen (line 2, column 10): empty: expected host:port, :port (every interface) or unix:/path',
    ]);
  });

  it('flow collections nested more than 64 deep: refused with the line', () => {
    expect(problems(`resources:\n  - ${'['.repeat(65)}${']'.repeat(65)}\n`)).toEqual(['line 2, column 69: [ and { nested more than 64 deep']);
    expect(problems(`resources:\n  - name: ${'['.repeat(64)}${']'.repeat(64)}\n    limits: ${ONE_LIMIT}\n`)).toEqual([
      'resources[0].name (line 2, column 11): expected a name of 1 to 64 of A-Z a-z 0-9 _ . : / -',
    ]);
  });

  it('duplicate keys and a second document: named with their line and column', () => {
    expect(problems(`resources: []\nstore: {}\nresources: []\n`)).toEqual(['line 3, column 1: duplicated mapping key']);
    expect(problems(`resources: [{ name: r, limits: ${ONE_LIMIT} }]\n---\nresources: []\n`)).toEqual(['line 2, column 1: a policy is one YAML document; this file has more']);
  });

  it('a list of more than 10,000 items or a map of more than 10,000 keys: refused with its line', () => {
    expect(problems(`resources:\n  - name: r\n    keys: [${'k, '.repeat(10_000)}k]\n`)).toEqual(['line 3, column 11: a list of more than 10000 items; a policy needs fewer']);
    const keys = Array.from({ length: 10_001 }, (_, i) => `    k${i}: 1`).join('\n');
    expect(problems(`resources:\n  - name: r\n${keys}\n`)).toEqual(['line 2, column 5: a map of more than 10000 keys; a policy needs fewer']);
  });

  it('a file over 4,000,000 bytes is refused before it is read', () => {
    const file = writePolicy(`# ${'x'.repeat(4_000_000)}\n`);
    expect(() => loadPolicyFile(file)).toThrow(/the file has 4000003 bytes; a policy may have at most 4000000/);
  });

  it('10,000 resources check under the deployed heap, written densely or the usual verbose way', async () => {
    const dense = await checkUnderDeployedHeap(writePolicy(manyResources(10_000)));
    expect(dense).toMatchObject({ code: 0, out: expect.stringContaining('ok, 10000 resource(s)') });
    const verbose = verboseResources(10_000);
    expect(verbose.length).toBeGreaterThan(1_900_000);
    const usual = await checkUnderDeployedHeap(writePolicy(verbose));
    expect(usual).toMatchObject({ code: 0, out: expect.stringContaining('ok, 10000 resource(s)') });
  }, 120_000);

  it('a bigger policy is refused with a message, never an abort', async () => {
    // 60,000 resources in block style, 13 MB: refused by size, unread.
    let huge = 'resources:\n';
    const block = (i: number) => `  - name: tenant-api-${i}\n    keys: [tenant]\n    limits:\n      - { name: rpm, algorithm: token_bucket, rate: 600/1m, burst: 20 }\n      - { name: daily, algorithm: fixed_window, rate: 100000/1d }\n`;
    for (let i = 0; i < 60_000; i++) huge += block(i);
    const hugeFile = writePolicy('');
    writeFileSync(hugeFile, huge);
    const refused = await checkUnderDeployedHeap(hugeFile);
    expect(refused).toMatchObject({ code: 1, signal: null });
    expect(refused.out).toMatch(/the file has \d+ bytes; a policy may have at most 4000000/);

    // Just under the size cap: refused for its count while it is parsed.
    const tooMany = writePolicy(huge.slice(0, 3_900_000).replace(/\n[^\n]*$/, '\n'));
    const counted = await checkUnderDeployedHeap(tooMany);
    expect(counted).toMatchObject({ code: 1, signal: null });
    expect(counted.out).toContain('line 2, column 3: a list of more than 10000 items; a policy needs fewer');
  }, 120_000);

  it('400,000 wrong values under the deployed heap: the first problems and their count, never an abort', async () => {
    // The schema keeps every problem it finds, so the resources are checked a few at a time.
    let yaml = 'resources:\n';
    for (let i = 0; i < 40; i++) yaml += `  - name: r${i}\n    limits: [${'1, '.repeat(9_999)}1]\n`;
    const refused = await checkUnderDeployedHeap(writePolicy(yaml));
    expect(refused).toMatchObject({ code: 1, signal: null });
    expect(refused.out).toContain('resources[0].limits[0] (line 3, column 14): 1: expected a limit');
    expect(refused.out).toContain('resources[0].limits[99] (line 3, column 311): 1: expected a limit');
    expect(refused.out).toContain('... and 399900 more');
  }, 120_000);

  it('10,000 resources serve under the deployed heap: the last one answers', async () => {
    const sidecar = await startSidecar(manyResources(10_000), {}, DEPLOYED_NODE_FLAGS);
    const client = connect(sidecar.address);
    try {
      const res = await client.acquire({ resource: 'r9999' });
      expect(res).toMatchObject({ granted: true, limit: 10, remaining: 9, limit_name: 'l' });
    } finally {
      client.close();
      expect(await sidecar.stop()).toBe(0);
    }
  }, 60_000);

  it('10,000 verbose resources serve under the deployed heap: the last one answers', async () => {
    const sidecar = await startSidecar(verboseResources(10_000), {}, DEPLOYED_NODE_FLAGS);
    const client = connect(sidecar.address);
    try {
      const res = await client.acquire({ resource: 'r9999', descriptors: { tenant: 'acme' } });
      expect(res).toMatchObject({ granted: true, limit: 60, remaining: 59, limit_name: 'rpm' });
    } finally {
      client.close();
      expect(await sidecar.stop()).toBe(0);
    }
  }, 60_000);
});
