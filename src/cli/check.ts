// `sluice check FILE`: the policy validated as serve would load it, every problem printed.
import { loadPolicyFile, PolicyError } from '../config/load.js';
import { lowestUsable, type Resource } from '../config/policy.js';
import { EnvoyConfigError, loadEnvoyDirectory } from '../envoy/runtime.js';
import type { UpstreamEnvReport } from '../config/upstream-env.js';
import { parseCommandLine, UsageError } from './args.js';
import { logLevel, stopDelayMs } from './environment.js';
import { CHECK_USAGE } from './usage.js';

export function check(args: string[]): number {
  const { values, positionals } = parseCommandLine(
    'sluice check',
    args,
    { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
    CHECK_USAGE,
    1,
  );
  if (values.help) {
    process.stdout.write(CHECK_USAGE);
    return 0;
  }
  const file = positionals[0] ?? values.config;
  if (!file) throw new UsageError('sluice check: name the policy file: sluice check FILE', CHECK_USAGE);
  // The same environment serve reads, so that a pod's env can be checked with its policy.
  if (logLevel() === null || stopDelayMs() === undefined) return 1;
  try {
    const policy = loadPolicyFile(file, process.env);
    if (policy.envoy?.configDir) loadEnvoyDirectory(policy.envoy);
    const xds = policy.envoy?.xds;
    // The management server is not asked: what it sends is checked when it sends it.
    const domains = policy.envoy ? `, Envoy config from ${xds ? `the xDS management server ${xds.server} (node ${xds.nodeId})` : policy.envoy.configDir}` : '';
    process.stdout.write(`${file}: ok, ${policy.resources.size} resource(s)${domains}\n`);
    const upstream = policy.envoy?.upstreamEnv;
    if (upstream) process.stdout.write(describeUpstreamEnv(upstream));
    for (const resource of policy.resources.values()) {
      if (resource.reserve.length > 0) process.stdout.write(`${describeReserve(resource)}\n`);
      if (resource.lanes.length > 0) process.stdout.write(`${describeLanes(resource)}\n`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`${invalidPolicy(file, err).message}\n`);
    return 1;
  }
}

const percent = (fraction: number) => `${Number((fraction * 100).toFixed(4))}%`;

/** `openai: reserve 20% for priority >= 5, 10% for priority >= 9 (priority < 5 may use 70% of every limit)` */
function describeReserve(resource: Resource): string {
  const entries = resource.reserve.map((entry) => `${percent(entry.fraction)} for priority >= ${entry.minPriority}`);
  return `  ${resource.name}: reserve ${entries.join(', ')} (priority < ${resource.reserve[0]!.minPriority} may use ${percent(lowestUsable(resource))} of every limit)`;
}

/** `openai: lanes interactive 70% (the default), batch 30%` */
function describeLanes(resource: Resource): string {
  const lanes = resource.lanes.map((lane, i) => `${lane} ${percent(resource.laneShares[i]!)}${i === 0 ? ' (the default)' : ''}`);
  return `  ${resource.name}: lanes ${lanes.join(', ')}`;
}

/** What envoy.upstream_env read: a line per variable applied or ignored, and the warnings. */
function describeUpstreamEnv(report: UpstreamEnvReport): string {
  const lines = [
    ...report.applied.map(({ name, setting }) => `  ${name} -> ${setting}`),
    ...report.ignored.map(({ name, reason }) => `  ${name} ignored: ${reason}`),
    ...report.warnings.map((warning) => `  warning: ${warning}`),
  ];
  return lines.length > 0 ? `envoy.upstream_env:\n${lines.join('\n')}\n` : 'envoy.upstream_env: no envoyproxy/ratelimit variable is set\n';
}

/** A bad Envoy config directory is reported as a problem of the policy that names it. */
export function invalidPolicy(file: string, err: unknown): Error {
  return err instanceof EnvoyConfigError ? new PolicyError(file, err.problems) : (err as Error);
}
