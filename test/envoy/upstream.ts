// Where the cases derived from envoyproxy/ratelimit's tests run when they concern answers: the
// built sidecar over real gRPC, on the memory store and on a real Redis with leases on and off.
// Each backend gets its own store, so the same descriptors start from fresh budgets on each.
import { afterAll, beforeAll, describe } from 'vitest';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { UNIT_SECONDS, type Unit } from '../../src/envoy/units.js';
import { connectEnvoy, type EnvoyClient, type WireDescriptor, type WireStatus } from './client.js';
import { configDir } from './support.js';

export interface Backend {
  name: string;
  redis: boolean;
  leases: boolean;
}

export const BACKENDS: readonly Backend[] = [
  { name: 'the memory store', redis: false, leases: false },
  { name: 'Redis, leases on', redis: true, leases: true },
  { name: 'Redis, leases off', redis: true, leases: false },
];

export interface Served {
  sidecar: SidecarProcess;
  client: EnvoyClient;
}

export interface World {
  backend: Backend;
  /** The config directory every sidecar of the block serves; empty when the config comes from xDS. */
  dir: string;
  /** Null on the memory store. */
  redis: RedisProcess | null;
  /** The sidecar started under this name. */
  served(name: string): Served;
}

/**
/**
 * Lines a sidecar adds to the policy's `envoy:` section (`quota_mode: true`), or a function that
 * gives them when the sidecar starts.
 */
type EnvoyLines = string[] | (() => string[]);

/** What a sidecar of a block adds to its policy: `envoy:` lines, or those and settings of `envoy.lease` beside `enabled`, which the backend decides (`ttl: 30s`). */
export type SidecarSpec = EnvoyLines | { envoy: EnvoyLines; lease: string };

/**
 * A describe block per backend. Its sidecars serve `files` from one config directory (none when
 * null: the lines say where the config comes from), one sidecar per entry of `sidecars`: its
 * name, and what it adds to the policy. On Redis, the sidecars of a block share one redis-server.
 */
export function onEveryBackend(title: string, files: Record<string, string> | null, sidecars: Record<string, SidecarSpec>, body: (world: World) => void): void {
  describe.each(BACKENDS)(`${title}, on $name`, (backend) => {
    const running = new Map<string, Served>();
    const world: World = {
      backend,
      dir: '',
      redis: null,
      served: (name) => {
        const served = running.get(name);
        if (!served) throw new Error(`no sidecar named ${name}`);
        return served;
      },
    };
    beforeAll(async () => {
      world.dir = files ? configDir(files) : '';
      if (backend.redis) world.redis = await startRedis();
      const env: Record<string, string> = world.redis ? { SLUICE_REDIS_URL: world.redis.url } : {};
      for (const [name, spec] of Object.entries(sidecars)) {
        const { envoy, lease } = Array.isArray(spec) || typeof spec === 'function' ? { envoy: spec, lease: '' } : spec;
        const sidecar = await startSidecar(policyOf(world.dir, backend, typeof envoy === 'function' ? envoy() : envoy, lease), env);
        running.set(name, { sidecar, client: connectEnvoy(sidecar.address) });
      }
    });
    afterAll(async () => {
      for (const { client } of running.values()) client.close();
      await Promise.all([...running.values()].map(({ sidecar }) => sidecar.stop()));
      await world.redis?.stop();
    });
    body(world);
  });
}

/** A policy serving `dir` (no config_dir when empty) on this backend. (A generous store timeout: the test machines are small and shared.) */
export function policyOf(dir: string, backend: Backend, envoyLines: string[] = [], lease = ''): string {
  const leaseLine = `  lease: { enabled: ${backend.leases}${lease ? `, ${lease}` : ''} }`;
  return ['store:', '  timeout: 5s', 'envoy:', ...(dir ? [`  config_dir: ${dir}`] : []), leaseLine, ...envoyLines.map((line) => `  ${line}`), ''].join('\n');
}

/**
 * Waits, if need be, until the window of `unit` that now falls in (epoch-aligned, as sluice and
 * upstream align them) has at least `marginMs` left, so that the steps that follow share one
 * window. At worst it waits for the window to end, which is the event awaited.
 */
export async function inOneWindow(unit: Unit, marginMs: number): Promise<void> {
  const periodMs = UNIT_SECONDS[unit] * 1000;
  const left = periodMs - (Date.now() % periodMs);
  if (left < marginMs) await new Promise((resolve) => setTimeout(resolve, left + 20));
}

/** A descriptor with its own hits_addend. */
export function hits(descriptor: WireDescriptor, value: number): WireDescriptor {
  return { ...descriptor, hits_addend: { value } };
}

/** A status as one line: code, requests_per_unit/unit (or -), limit_remaining. */
export function statusLine(s: WireStatus): string {
  return `${s.code} ${s.current_limit ? `${s.current_limit.requests_per_unit}/${s.current_limit.unit}` : '-'} ${s.limit_remaining}`;
}
