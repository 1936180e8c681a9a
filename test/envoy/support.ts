// Helpers for the Envoy tests: a domain file parsed with default options, temporary config dirs,
// a sidecar's log lines and a call's gRPC error.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EnvoyOptions } from '../../src/config/policy.js';
import { RESPONSE_HEADER_DEFAULTS } from '../../src/config/schema.js';
import { loadEnvoyConfig, parseDomainFile, type Domain, type EnvoyConfig } from '../../src/envoy/config.js';
import type { SidecarProcess } from '../support/sidecar.js';
import { credentials, loadPackageDefinition, type ClientReadableStream } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

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
    mergeDomains: false,
    httpListen: null,
    lease: { enabled: true, maxFraction: 0.1, ttlMs: 1_000 },
    upstreamEnv: null,
    xds: null,
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

const healthPkg = loadPackageDefinition(loadSync(healthProtoPath, { keepCase: true, enums: String })) as any;

/** The statuses a health Watch reports for `service`, as they come. */
export function watchHealth(address: string, service: string) {
  const client = new healthPkg.grpc.health.v1.Health(address, credentials.createInsecure());
  const stream: ClientReadableStream<{ status: string }> = client.Watch({ service });
  const seen: string[] = [];
  const waiting: { status: string; resolve: () => void }[] = [];
  stream.on('data', ({ status }: { status: string }) => {
    seen.push(status);
    for (const w of waiting.filter((w) => w.status === status)) w.resolve();
  });
  stream.on('error', () => undefined);
  return {
    /** Resolves once the service is reported `status` (now or later). */
    until(status: string): Promise<void> {
      if (seen.at(-1) === status) return Promise.resolve();
      return new Promise((resolve) => waiting.push({ status, resolve }));
    },
    close() {
      stream.cancel();
      client.close();
    },
  };
}

/** What grpc.health.v1 Check answers for `service` now. */
export async function healthOf(address: string, service: string): Promise<string> {
  const client = new healthPkg.grpc.health.v1.Health(address, credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) => client.Check({ service }, (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res.status))));
  } finally {
    client.close();
  }
}
