// Manifests as the tests get them: printed by the built `sluice install`, or rendered by
// `kubectl kustomize` (Kustomize built into kubectl), parsed into plain objects.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import type { KubeObject } from '../../src/kube/manifests.js';
import { CLI } from './sidecar.js';

const run = promisify(execFile);

export interface Exit {
  code: number;
  stdout: string;
  stderr: string;
}

async function exitOf(file: string, args: string[]): Promise<Exit> {
  try {
    const { stdout, stderr } = await run(file, args, { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `sluice install ARGS` from the built CLI, whatever it exits with. */
export function sluiceInstall(...args: string[]): Promise<Exit> {
  return exitOf(process.execPath, [CLI, 'install', ...args]);
}

/** The objects `sluice install ARGS` prints; fails the test unless it exits 0. */
export async function installed(...args: string[]): Promise<KubeObject[]> {
  const exit = await sluiceInstall(...args);
  if (exit.code !== 0) throw new Error(`sluice install ${args.join(' ')} exited ${exit.code}: ${exit.stderr}`);
  return parseManifests(exit.stdout);
}

/** What `kubectl kustomize DIR` renders. */
export async function kustomize(dir: string): Promise<KubeObject[]> {
  const exit = await exitOf('kubectl', ['kustomize', dir]);
  if (exit.code !== 0) {
    // Debian's kubernetes-client 1.20 carries Kustomize v2, which takes no directories in resources.
    throw new Error(`kubectl kustomize ${dir} exited ${exit.code} (deploy/kubernetes needs kubectl 1.21 or newer): ${exit.stderr}`);
  }
  return parseManifests(exit.stdout);
}

/** Every document of a multi-document YAML stream; a YAML error fails. */
export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`not YAML: ${doc.errors[0]!.message}`);
    const object = doc.toJS() as KubeObject | null;
    return object === null ? [] : [object];
  });
}

/** The objects keyed by kind, namespace and name: equal sets compare equal whatever their order. */
export function byIdentity(objects: KubeObject[]): Record<string, KubeObject> {
  const keyed: Record<string, KubeObject> = {};
  for (const object of objects) {
    const key = `${object.kind} ${object.metadata.namespace ?? ''}/${object.metadata.name}`;
    if (key in keyed) throw new Error(`${key} appears twice`);
    keyed[key] = object;
  }
  return keyed;
}

/** The one object of this kind (and name); fails unless there is exactly one. */
export function single(objects: KubeObject[], kind: string, name?: string): any {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''}, found ${found.length}`);
  return found[0];
}

/** Every value under `key`, however deep. */
export function valuesOf(value: unknown, key: string): unknown[] {
  if (Array.isArray(value)) return value.flatMap((item) => valuesOf(item, key));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => [...(k === key ? [v] : []), ...valuesOf(v, key)]);
}
