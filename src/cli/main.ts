// `sluice serve`, `sluice check` and `sluice inject`: the process edge. Arguments and environment
// are read here and nowhere else.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type { LevelWithSilent } from 'pino';
import { loadPolicyFile, PolicyError } from '../config/load.js';
import { parseDuration } from '../config/units.js';
import { createLogger } from '../log.js';
import { packageRoot } from '../paths.js';
import { startSidecar } from '../sidecar.js';
import { isImageReference, isObjectName, LOG_LEVELS } from '../kube/annotations.js';
import { DEFAULT_LIFETIMES, DEFAULT_RESYNC_MS, startInjector, type InjectorConfig } from '../kube/injector.js';
import { SERVICEACCOUNT_DIR } from '../kube/kube-api.js';

const USAGE = `usage: sluice <command> [options]

commands:
  serve [--config FILE] [--pretty]   run the sidecar (default policy: examples/quickstart.yaml)
  check FILE                         validate a policy file (with the overrides below applied),
                                     print every problem, exit 1 if any
  inject [options]                   run the Kubernetes admission webhook that adds the sidecar to pods
  version                            print the version

inject options:
  --listen HOST:PORT       where the HTTPS server listens (default 0.0.0.0:8443)
  --tls-cert FILE          serve this certificate (with --tls-key), reloaded when it changes;
  --tls-key FILE           without them, a CA of its own is kept in the Secret below
  --namespace NS           the injector's namespace (default $SLUICE_NAMESPACE, else sluice-system)
  --service NAME           its Service, named in the certificate (default sluice-injector)
  --secret NAME            the Secret holding its CA and certificate (default sluice-injector-tls)
  --webhook NAME           the MutatingWebhookConfiguration whose caBundle it fills (default sluice-injector)
  --sidecar-image IMAGE    image injected when a pod names none (default $SLUICE_IMAGE, else sluice:VERSION)

environment:
  SLUICE_CONFIG          policy file for serve (--config wins)
  SLUICE_LISTEN          overrides server.listen, e.g. 127.0.0.1:50051 or unix:/run/sluice.sock
  SLUICE_ADMIN           overrides server.admin, e.g. 127.0.0.1:9464 or off
  SLUICE_REDIS_URL       overrides store.redis (one server; selects the Redis store)
  SLUICE_REDIS_PASSWORD  overrides store.redis password / password_file / the url's password
  SLUICE_LOG_LEVEL       trace, debug, info (default), warn, error, fatal or silent
  SLUICE_STOP_DELAY      serve: on SIGTERM, keep answering this long (e.g. 25s) before draining
`;

const LEVELS = new Set<string>(LOG_LEVELS);

async function main(argv: string[]): Promise<number> {
  // inject has options of its own.
  if (argv[0] === 'inject') return inject(argv.slice(1));
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
      process.stdout.write(`${version()}\n`);
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

function version(): string {
  return JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version;
}

/** The log level in SLUICE_LOG_LEVEL, or null (with the problem written) when it is not one. */
function logLevel(): LevelWithSilent | null {
  const level = process.env.SLUICE_LOG_LEVEL ?? 'info';
  if (LEVELS.has(level)) return level as LevelWithSilent;
  process.stderr.write(`sluice: SLUICE_LOG_LEVEL must be one of ${[...LEVELS].join(', ')}\n`);
  return null;
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
    const domains = policy.envoy ? `, Envoy config from ${policy.envoy.configDir}` : '';
    process.stdout.write(`${file}: ok, ${policy.resources.size} resource(s)${domains}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
}

/** SLUICE_STOP_DELAY in ms (0 when unset), or undefined (with the problem written) when it is not a duration. */
function stopDelayMs(): number | undefined {
  const text = process.env.SLUICE_STOP_DELAY;
  if (text === undefined || text === '') return 0;
  const ms = parseDuration(text);
  if (ms !== undefined && ms <= 3_600_000) return ms;
  process.stderr.write(`sluice: SLUICE_STOP_DELAY must be a duration up to 1h, such as 25s or 1500ms, not ${JSON.stringify(text)}\n`);
  return undefined;
}

async function serve(file: string | undefined, pretty: boolean): Promise<number> {
  const level = logLevel();
  const delayMs = stopDelayMs();
  if (level === null || delayMs === undefined) return 2;
  const log = createLogger(level, pretty);
  const policyFile = file ?? join(packageRoot, 'examples', 'quickstart.yaml');
  let policy;
  try {
    policy = loadPolicyFile(policyFile, process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  let sidecar;
  try {
    sidecar = await startSidecar(policy, log);
  } catch (err) {
    log.fatal({ err }, 'could not start');
    return 1;
  }
  log.info(
    { address: sidecar.address, admin: sidecar.adminAddress, policy: policyFile, store: policy.store.redis ? 'redis' : 'memory' },
    'listening',
  );
  const stopped = new Promise<void>((resolve) => {
    let stopping = false;
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

async function inject(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string', default: '0.0.0.0:8443' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        namespace: { type: 'string' },
        service: { type: 'string', default: 'sluice-injector' },
        secret: { type: 'string', default: 'sluice-injector-tls' },
        webhook: { type: 'string', default: 'sluice-injector' },
        'sidecar-image': { type: 'string' },
        pretty: { type: 'boolean' },
        // Not in the usage: for tests, which cannot wait months for a renewal.
        'ca-lifetime': { type: 'string' },
        'cert-lifetime': { type: 'string' },
        resync: { type: 'string' },
        'serviceaccount-dir': { type: 'string', default: SERVICEACCOUNT_DIR },
      },
    }));
  } catch (err) {
    process.stderr.write(`sluice inject: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const problems: string[] = [];
  const duration = (flag: string, fallback: number) => {
    const text = values[flag as keyof typeof values] as string | undefined;
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms !== undefined && ms >= 100) return ms;
    problems.push(`--${flag} must be a duration of at least 100ms, such as 90d or 10s`);
    return fallback;
  };
  const namespace = values.namespace ?? process.env.SLUICE_NAMESPACE ?? 'sluice-system';
  const image = values['sidecar-image'] ?? process.env.SLUICE_IMAGE ?? `sluice:${version()}`;
  for (const [flag, name] of [['namespace', namespace], ['service', values.service], ['secret', values.secret], ['webhook', values.webhook]] as const) {
    if (!isObjectName(name)) problems.push(`--${flag} ${JSON.stringify(name)} is not a Kubernetes object name`);
  }
  if (!isImageReference(image)) problems.push(`--sidecar-image ${JSON.stringify(image)} is not an image reference`);
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) problems.push('--tls-cert and --tls-key go together');
  const config: InjectorConfig = {
    listen: values.listen,
    namespace,
    service: values.service,
    secret: values.secret,
    webhook: values.webhook,
    sidecarImage: image,
    tls: values['tls-cert'] && values['tls-key'] ? { certFile: values['tls-cert'], keyFile: values['tls-key'] } : null,
    lifetimes: { caMs: duration('ca-lifetime', DEFAULT_LIFETIMES.caMs), servingMs: duration('cert-lifetime', DEFAULT_LIFETIMES.servingMs) },
    resyncMs: duration('resync', DEFAULT_RESYNC_MS),
    serviceAccountDir: values['serviceaccount-dir'],
  };
  const level = logLevel();
  if (problems.length > 0 || level === null) {
    for (const problem of problems) process.stderr.write(`sluice inject: ${problem}\n`);
    return 2;
  }
  const log = createLogger(level, values.pretty ?? false);
  let injector;
  try {
    injector = await startInjector(config, process.env, log);
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'could not start');
    return 1;
  }
  log.info(
    { address: injector.address, namespace, image, certificates: config.tls ? 'files' : `Secret ${namespace}/${config.secret}` },
    'listening',
  );
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  log.info({ signal }, 'shutting down');
  await injector.stop();
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
