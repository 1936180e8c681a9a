// Helpers for the Envoy tests: a domain file parsed with default options, temporary config dirs,
// a sidecar's log lines and a call's gRPC error.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvoyOptions } from '../../src/config/policy.js';
import { RESPONSE_HEADER_DEFAULTS } from '../../src/config/schema.js';
import { loadEnvoyConfig, parseDomainFile, type Domain, type EnvoyConfig } from '../../src/envoy/config.js';
import type { SidecarProcess } from '../support/sidecar.js';

export function options(overrides: Partial<EnvoyOptions> = {}): EnvoyOptions {
  return {
    configDir: '/nonexistent',
    configDirAt: 'envoy.config_dir',
    responseHeaders: false,
    responseHeaderNames: { ...RESPONSE_HEADER_DEFAULTS },
    responseDynamicMetadata: false,
    quotaMode: false,
    onStoreFailure: 'error',
    shadowMode: false,
    nearLimitRatio: 0.8,
    requireDomains: false,
    lease: { enabled: true, maxFraction: 0.1, ttlMs: 1_000 },
    upstreamEnv: null,
    ...overrides,
  };
}

/** The domain of one file's text; throws with every problem when it does not load. */
export function domainOf(yaml: string, opts: EnvoyOptions = options()): Domain {
  const parsed = parseDomainFile(yaml, 'test.yaml', opts);
  if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
  return parsed.value;
}

/** Every problem of one file's text (empty when it loads). */
export function problemsOf(yaml: string): string[] {
  const parsed = parseDomainFile(yaml, 'test.yaml', options());
  return parsed.ok ? [] : parsed.problems;
}

/** A fresh directory holding these files. */
export function configDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-envoy-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** The config of a directory holding these files; throws with every problem when it does not load. */
export function configOf(files: Record<string, string>, opts: Partial<EnvoyOptions> = {}): EnvoyConfig {
  const loaded = loadEnvoyConfig(options({ ...opts, configDir: configDir(files) }));
  if (!loaded.ok) throw new Error(loaded.problems.join('\n'));
  return loaded.value;
}

/** The first log line with this message after the first `after` lines, as soon as the sidecar logs it. */
export async function waitForLog(sidecar: SidecarProcess, msg: string, after: number, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = sidecar.logs.slice(after).find((l) => l.msg === msg);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no "${msg}" log line in time; logs: ${JSON.stringify(sidecar.logs.slice(after))}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The gRPC error a call ends with; throws if it succeeds. */
export async function grpcError(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('expected a gRPC error');
}
