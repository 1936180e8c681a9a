// Reloading the Envoy config when its files change: one reload per burst of writes, a bad file
// keeps the config being served, and a directory that is replaced is watched again.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvoyRuntime } from '../../src/envoy/runtime.js';
import { configDir, options } from './support.js';

const file = (rpu: number) => `domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: ${rpu} }\n`;

function logger() {
  const lines: Record<string, any>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines, messages: () => lines.map((l) => l.msg as string) };
}

const rpuOf = (runtime: EnvoyRuntime) => runtime.current.domains.get('d')?.root.keyOnly.get('k')?.rule?.main?.requestsPerUnit;

async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let runtime: EnvoyRuntime | undefined;
afterEach(() => runtime?.close());

describe('EnvoyRuntime', () => {
  it('reloads once per burst of writes, and says so', async () => {
    const dir = configDir({ 'd.yaml': file(1) });
    const { log, messages } = logger();
    runtime = new EnvoyRuntime(options({ configDir: dir }), log, { debounceMs: 100 });
    runtime.start();
    expect(messages()).toEqual(['envoy config loaded']);
    for (let rpu = 2; rpu <= 5; rpu++) writeFileSync(join(dir, 'd.yaml'), file(rpu));
    await until(() => rpuOf(runtime!) === 5, 'the reload');
    await new Promise((r) => setTimeout(r, 200));
    expect(messages()).toEqual(['envoy config loaded', 'envoy config reloaded']);
  });

  it('keeps serving the old config when a file is bad, logging every problem', async () => {
    const dir = configDir({ 'd.yaml': file(1) });
    const { log, lines } = logger();
    runtime = new EnvoyRuntime(options({ configDir: dir }), log, { debounceMs: 20 });
    runtime.start();
    writeFileSync(join(dir, 'd.yaml'), 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, nope: 1 }\n');
    await until(() => lines.some((l) => l.msg === 'envoy config reload failed; still serving the previous config'), 'the failed reload');
    const failed = lines.find((l) => l.msg === 'envoy config reload failed; still serving the previous config')!;
    expect(failed.problems).toEqual([`${join(dir, 'd.yaml')}: descriptors[0].rate_limit (line 4): unknown key "nope"`]);
    expect(rpuOf(runtime)).toBe(1);
    writeFileSync(join(dir, 'd.yaml'), file(9));
    await until(() => rpuOf(runtime!) === 9, 'the reload after the fix');
  });

  it('watches a directory again after it was removed and created anew', async () => {
    const dir = configDir({ 'd.yaml': file(1) });
    const { log } = logger();
    runtime = new EnvoyRuntime(options({ configDir: dir }), log, { debounceMs: 20, rewatchMs: 50 });
    runtime.start();
    rmSync(dir, { recursive: true });
    await new Promise((r) => setTimeout(r, 150));
    expect(rpuOf(runtime)).toBe(1);
    mkdirSync(dir);
    writeFileSync(join(dir, 'd.yaml'), file(7));
    await until(() => rpuOf(runtime!) === 7, 'the reload of the new directory');
  });
});
