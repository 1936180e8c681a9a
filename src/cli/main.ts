// `sluice serve`, `sluice check` and `sluice install`: the process edge. Arguments and environment
// are read here and nowhere else.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type { LevelWithSilent } from 'pino';
import { loadPolicyFile, PolicyError } from '../config/load.js';
import { installOptions, InstallOptionError } from '../kube/install-options.js';
import { installManifests, manifestsYaml } from '../kube/manifests.js';
import { createLogger } from '../log.js';
import { packageRoot } from '../paths.js';
import { startSidecar, type Sidecar } from '../sidecar.js';

const USAGE = `usage: sluice <command> [options]

commands:
  serve [--config FILE] [--pretty]   run the sidecar (default policy: examples/quickstart.yaml)
  check FILE                         validate a policy file, print every problem, exit 1 if any
  install [--namespace NS] [--image IMAGE] [--failure-policy Ignore|Fail] [--cert-manager]
                                     print the injector's Kubernetes manifests, for
                                     sluice install | kubectl apply -f -
                                     (defaults: sluice-system, sluice:<version>, Ignore;
                                     --cert-manager: cert-manager issues the webhook's certificate)
  version                            print the version

environment:
  SLUICE_CONFIG          policy file for serve (--config wins)
  SLUICE_LISTEN          overrides server.listen, e.g. 127.0.0.1:50051 or unix:/run/sluice.sock
  SLUICE_ADMIN           overrides server.admin, e.g. 127.0.0.1:9464 or off
  SLUICE_REDIS_URL       overrides store.redis (one server; selects the Redis store)
  SLUICE_REDIS_PASSWORD  overrides store.redis password / password_file / the url's password
  SLUICE_LOG_LEVEL       trace, debug, info (default), warn, error, fatal or silent

signals (serve):
  SIGHUP                 read the policy file again (it is also watched for changes)
  SIGTERM, SIGINT        stop taking calls, finish the ones under way, exit 0
`;

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

async function main(argv: string[]): Promise<number> {
  // install has flags of its own, which no other command takes.
  if (argv[0] === 'install') return install(argv.slice(1));
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

function install(argv: string[]): number {
  let options;
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        namespace: { type: 'string' },
        image: { type: 'string' },
        'failure-policy': { type: 'string' },
        'cert-manager': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    options = installOptions(values, version());
  } catch (err) {
    // parseArgs names the unknown or incomplete flag; installOptions the value it refuses.
    if (!(err instanceof InstallOptionError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) throw err;
    process.stderr.write(`sluice install: ${(err as Error).message}\n`);
    return 2;
  }
  process.stdout.write(manifestsYaml(installManifests(options)));
  return 0;
}

function check(file: string | undefined): number {
  if (!file) {
    process.stderr.write('sluice check: name the policy file: sluice check FILE\n');
    return 2;
  }
  try {
    const policy = loadPolicyFile(file);
    const domains = policy.envoy ? `, Envoy config from ${policy.envoy.configDir}` : '';
    process.stdout.write(`${file}: ok, ${policy.resources.size} resource(s)${domains}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
}

async function serve(file: string | undefined, pretty: boolean): Promise<number> {
  const level = process.env.SLUICE_LOG_LEVEL ?? 'info';
  if (!LEVELS.has(level)) {
    process.stderr.write(`sluice: SLUICE_LOG_LEVEL must be one of ${[...LEVELS].join(', ')}\n`);
    return 2;
  }
  const log = createLogger(level as LevelWithSilent, pretty);
  const policyFile = file ?? join(packageRoot, 'examples', 'quickstart.yaml');
  let policy;
  try {
    policy = loadPolicyFile(policyFile, process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
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
    log.fatal({ err }, 'could not start');
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
      log.info({ signal }, 'shutting down');
      sidecar.stop().then(resolve, (err) => {
        log.error({ err }, 'shutdown failed');
        resolve();
      });
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
