// The process edge: arguments and environment are read in src/cli/ and nowhere else. This file
// runs `sluice serve` and `sluice check`, and hands `inject` and `install` to their own files.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { loadPolicyFile, PolicyError } from '../config/load.js';
import { lowestUsable, type Resource } from '../config/policy.js';
import { createLogger } from '../log.js';
import { packageRoot } from '../paths.js';
import { EnvoyConfigError, loadEnvoyDirectory } from '../envoy/runtime.js';
import type { UpstreamEnvReport } from '../config/upstream-env.js';
import { startSidecar, type Sidecar } from '../sidecar.js';
import { logLevel, packageVersion, stopDelayMs } from './environment.js';
import { USAGE } from './usage.js';

async function main(argv: string[]): Promise<number> {
  // inject and install have flags of their own, which no other command takes. They are loaded
  // only when run: the Kubernetes code and its certificate library would cost `serve` about
  // 8 MB of RSS and a little garbage collection for nothing.
  if (argv[0] === 'inject') return (await import('./inject.js')).inject(argv.slice(1));
  if (argv[0] === 'install') return (await import('./install.js')).install(argv.slice(1));
  if (argv[0] === 'acquire' || argv[0] === 'release' || argv[0] === 'inspect') return (await import('./call.js')).call(argv[0], argv.slice(1));
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, pretty: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, ...rest] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  switch (command) {
    case 'version':
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    case 'check':
      return check(rest[0] ?? values.config);
    case 'serve':
      return serve(values.config ?? process.env.SLUICE_CONFIG, values.pretty ?? false);
    default:
      process.stderr.write(`sluice: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

// The same environment serve reads, so that a pod's env can be checked with its policy.
function check(file: string | undefined): number {
  if (!file) {
    process.stderr.write('sluice check: name the policy file: sluice check FILE\n');
    return 2;
  }
  if (logLevel() === null || stopDelayMs() === undefined) return 1;
  try {
    const policy = loadPolicyFile(file, process.env);
    if (policy.envoy) loadEnvoyDirectory(policy.envoy);
    const domains = policy.envoy ? `, Envoy config from ${policy.envoy.configDir}` : '';
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
function invalidPolicy(file: string, err: unknown): Error {
  return err instanceof EnvoyConfigError ? new PolicyError(file, err.problems) : (err as Error);
}


async function serve(file: string | undefined, pretty: boolean): Promise<number> {
  const delayMs = stopDelayMs();
  if (logLevel() === null || delayMs === undefined) return 2;
  const policyFile = file ?? join(packageRoot, 'examples', 'quickstart.yaml');
  let policy;
  try {
    policy = loadPolicyFile(policyFile, process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  // Upstream's LOG_LEVEL, read with envoy.upstream_env, unless SLUICE_LOG_LEVEL says otherwise.
  const log = createLogger(logLevel(policy.envoy?.upstreamEnv?.logLevel ?? 'info')!, pretty);
  let sidecar: Sidecar | undefined;
  let stopping = false;
  // SIGHUP reads the policy file again (it is also watched) instead of Node's default, exiting;
  // one that comes before the sidecar is up is dropped.
  process.on('SIGHUP', () => {
    if (!stopping) sidecar?.reloadPolicy();
  });
  try {
    sidecar = await startSidecar(policy, log, { file: policyFile, env: process.env });
  } catch (err) {
    if (err instanceof EnvoyConfigError) process.stderr.write(`${invalidPolicy(policyFile, err).message}\n`);
    else log.fatal({ err }, 'could not start');
    return 1;
  }
  log.info(
    { address: sidecar.address, admin: sidecar.adminAddress, policy: policyFile, store: policy.store.redis ? 'redis' : 'memory' },
    'listening',
  );
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      // A repeated signal must not cut the drain short; the grace period bounds it.
      if (stopping) return;
      stopping = true;
      const drain = () => {
        log.info({ signal }, 'shutting down');
        sidecar.stop().then(resolve, (err) => {
          log.error({ err }, 'shutdown failed');
          resolve();
        });
      };
      if (signal !== 'SIGTERM' || delayMs === 0) return drain();
      // The classic sidecar: kubelet signals every container at once, and the app may still
      // need answers while it finishes; serving goes on as before until the delay is over.
      log.info({ signal, stopDelayMs: delayMs }, `still serving for ${delayMs} ms (SLUICE_STOP_DELAY), then shutting down`);
      setTimeout(drain, delayMs);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  await stopped;
  log.info('stopped');
  return 0;
}


main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`sluice: ${err instanceof PolicyError ? err.message : (err as Error).stack ?? String(err)}\n`);
    process.exitCode = 2;
  },
);
