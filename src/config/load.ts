// Reads a policy file, applies environment overrides, validates, and compiles it. Every problem
// is reported with its place in the file, all at once, so one run of `sluice check` shows them all.
import { readFileSync, statSync } from 'node:fs';
import type { z } from 'zod';
import { duplicateProblems, policySchema, type PolicyFile } from './schema.js';
import { compilePolicy, type Policy } from './policy.js';
import { describeIssue, placeText, type CheckedPolicy } from './problems.js';
import { parseYaml, sizeProblem } from './yaml.js';
import { applyUpstreamEnv, type Environment, type UpstreamEnvResult } from './upstream-env.js';

export class PolicyError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: invalid policy\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'PolicyError';
  }
}

/**
 * The environment the policy is read with: SLUICE_LISTEN, SLUICE_ADMIN, SLUICE_REDIS_URL and
 * SLUICE_REDIS_PASSWORD override the file, as a newcomer would set them in a pod spec; with
 * envoy.upstream_env, upstream's variables are read too (upstream-env.ts), and SLUICE_* win.
 */
export type Overrides = Environment;

/** Problems listed at once: enough to fix a file by, few enough to read. */
const MAX_PROBLEMS = 100;
/**
 * Values the schema checks in one pass over resources: it keeps every problem it finds, about
 * 700 bytes each, so a file of wrong values checked at once would not fit the deployed heap.
 */
const VALUES_PER_PASS = 20_000;

export function loadPolicyFile(file: string, env: Overrides = {}): Policy {
  let text: string;
  try {
    // Refused before it is read, so a huge file costs nothing.
    const tooBig = sizeProblem(statSync(file).size);
    if (tooBig) throw new PolicyError(file, [tooBig]);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof PolicyError) throw err;
    throw new PolicyError(file, [`cannot read: ${(err as Error).message}`]);
  }
  return parsePolicy(text, file, env);
}

export function parsePolicy(text: string, file: string, env: Overrides = {}): Policy {
  const parsed = parseYaml(text);
  if (Array.isArray(parsed)) throw new PolicyError(file, parsed);
  let raw: unknown = parsed.value ?? {};
  let upstream: UpstreamEnvResult | null = null;
  if (isObject(raw) && isObject(raw.envoy) && raw.envoy.upstream_env === true) {
    upstream = applyUpstreamEnv(raw, env);
    if (upstream.problems.length > 0) throw new PolicyError(file, upstream.problems);
    raw = upstream.policy;
  }
  raw = applyOverrides(raw, env);
  const result = validate(raw);
  // A value from the environment is named by its variable: SLUICE_* (applied last), else upstream's.
  const fromEnv = (path: readonly PropertyKey[]) => overriddenBy(path, env) ?? upstreamSource(path, upstream);
  const source: CheckedPolicy = { parsed, raw, overriddenBy: fromEnv };
  if (result.success) {
    const where = (path: readonly PropertyKey[]) => {
      const variable = fromEnv(path);
      return variable === undefined ? placeText(path, parsed.positionOf(path)) : `${placeText(path, undefined)} (from ${variable})`;
    };
    return compilePolicy(result.data, where, upstream?.report ?? null);
  }
  // In file order; what is not in the file (given by the environment) first.
  const problems = result.issues.map((issue) => describeIssue(issue, source)).sort((a, b) => (a.offset ?? -1) - (b.offset ?? -1));
  const shown = problems.slice(0, MAX_PROBLEMS).map((problem) => problem.text);
  if (result.count > MAX_PROBLEMS) shown.push(`... and ${result.count - MAX_PROBLEMS} more`);
  throw new PolicyError(file, shown);
}

type Validated = { success: true; data: PolicyFile } | { success: false; issues: z.core.$ZodIssue[]; count: number };

/**
 * The policy checked against the schema; with problems, at most MAX_PROBLEMS of each kind (the
 * first in file order) and how many in all. Names given twice are found whatever else is wrong.
 */
function validate(raw: unknown): Validated {
  const duplicates = duplicateProblems(raw);
  const found = resourceProblems(raw);
  if (found.count === 0) {
    const whole = policySchema.safeParse(raw);
    if (whole.success && duplicates.length === 0) return whole;
    const issues = whole.success ? [] : whole.error.issues;
    return { success: false, issues: [...issues.slice(0, MAX_PROBLEMS), ...duplicates.slice(0, MAX_PROBLEMS)], count: issues.length + duplicates.length };
  }
  // The rest of the policy, checked without its resources.
  const rest = policySchema.safeParse({ ...(raw as object), resources: [] });
  const others = rest.success ? [] : rest.error.issues.filter((issue) => issue.path[0] !== 'resources');
  return {
    success: false,
    issues: [...others.slice(0, MAX_PROBLEMS), ...found.first, ...duplicates.slice(0, MAX_PROBLEMS)],
    count: others.length + found.count + duplicates.length,
  };
}

/**
 * The resources checked on their own, a few at a time, so that the problems the schema keeps
 * stay few whatever the file: the first of them and how many. Only a policy whose resources are
 * each right is checked whole, for what spans resources (names given twice).
 */
function resourceProblems(raw: unknown): { first: z.core.$ZodIssue[]; count: number } {
  const found = { first: [] as z.core.$ZodIssue[], count: 0 };
  const resources = isObject(raw) ? raw.resources : undefined;
  if (!Array.isArray(resources)) return found;
  let from = 0;
  while (from < resources.length) {
    let to = from;
    for (let values = 0; to < resources.length && (to === from || values < VALUES_PER_PASS); to++) {
      values += countValues(resources[to], VALUES_PER_PASS);
    }
    const part = policySchema.safeParse({ resources: resources.slice(from, to) });
    for (const issue of part.success ? [] : part.error.issues) {
      if (issue.path[0] !== 'resources' || typeof issue.path[1] !== 'number') continue;
      if (++found.count <= MAX_PROBLEMS) found.first.push({ ...issue, path: ['resources', issue.path[1] + from, ...issue.path.slice(2)] });
    }
    from = to;
  }
  return found;
}

/** Values in this one (itself, and all it holds), counted up to `upTo`. */
function countValues(value: unknown, upTo: number): number {
  let count = 1;
  if (typeof value !== 'object' || value === null) return count;
  for (const inner of Object.values(value)) {
    if (count >= upTo) break;
    count += countValues(inner, upTo - count);
  }
  return count;
}

function applyOverrides(raw: unknown, env: Overrides): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  // A copy, so that the parsed values keep the lines they were read from.
  const policy = { ...(raw as Record<string, any>) };
  if (env.SLUICE_LISTEN || env.SLUICE_ADMIN) {
    policy.server = { ...(policy.server ?? {}) };
    if (env.SLUICE_LISTEN) policy.server.listen = env.SLUICE_LISTEN;
    if (env.SLUICE_ADMIN) policy.server.admin = env.SLUICE_ADMIN;
  }
  if (env.SLUICE_REDIS_URL) {
    // One server at this url, whatever topology the file names.
    policy.store = { ...(policy.store ?? {}) };
    const { sentinel: _sentinel, cluster: _cluster, ...rest } = isObject(policy.store.redis) ? policy.store.redis : {};
    policy.store.redis = { ...rest, url: env.SLUICE_REDIS_URL };
  }
  if (env.SLUICE_REDIS_PASSWORD && isObject(policy.store) && isObject(policy.store.redis)) {
    // Replaces every password the file gives the data nodes: password, password_file, the url's.
    const { password_file: _file, ...rest } = policy.store.redis;
    policy.store = { ...policy.store, redis: { ...rest, password: env.SLUICE_REDIS_PASSWORD } };
    if (typeof rest.url === 'string' && URL.canParse(rest.url)) {
      const url = new URL(rest.url);
      if (url.password !== '') {
        url.password = '';
        policy.store.redis.url = url.href;
      }
    }
  }
  return policy;
}

/** Where each variable's value goes in the policy, so that a problem with it names the variable. */
const OVERRIDDEN_PATHS: Readonly<Record<string, readonly string[]>> = {
  SLUICE_LISTEN: ['server', 'listen'],
  SLUICE_ADMIN: ['server', 'admin'],
  SLUICE_REDIS_URL: ['store', 'redis', 'url'],
  SLUICE_REDIS_PASSWORD: ['store', 'redis', 'password'],
};

function overriddenBy(path: readonly PropertyKey[], env: Overrides): string | undefined {
  for (const [name, at] of Object.entries(OVERRIDDEN_PATHS)) {
    if (env[name] && at.every((part, i) => path[i] === part)) return name;
  }
  return undefined;
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The upstream variables a value at `path` (or the map holding it) was set from, if any. */
function upstreamSource(path: readonly PropertyKey[], upstream: UpstreamEnvResult | null): string | undefined {
  if (!upstream) return undefined;
  for (let n = path.length; n > 0; n--) {
    const names = upstream.sources.get(path.slice(0, n).join('.'));
    if (names !== undefined) return names;
  }
  return undefined;
}
