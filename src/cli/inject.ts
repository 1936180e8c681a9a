// `sluice inject`: the admission webhook that adds the sidecar to pods, until SIGTERM.
import { isListenAddress } from '../config/schema.js';
import { parseDuration } from '../config/units.js';
import { createLogger } from '../log.js';
import { isImageReference, isObjectName } from '../kube/annotations.js';
import { DEFAULT_LIFETIMES, DEFAULT_RESYNC_MS, startInjector, type InjectorConfig } from '../kube/injector.js';
import { SERVICEACCOUNT_DIR } from '../kube/kube-api.js';
import { parseCommandLine } from './args.js';
import { logLevel, packageVersion } from './environment.js';
import { USAGE } from './usage.js';

export async function inject(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const { values } = parseCommandLine(
    'sluice inject',
    argv,
    {
      listen: { type: 'string', default: ':8443' },
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
    USAGE,
    0,
  );
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
  const image = values['sidecar-image'] ?? process.env.SLUICE_IMAGE ?? `sluice:${packageVersion()}`;
  for (const [flag, name] of [['namespace', namespace], ['service', values.service], ['secret', values.secret], ['webhook', values.webhook]] as const) {
    if (!isObjectName(name)) problems.push(`--${flag} ${JSON.stringify(name)} is not a Kubernetes object name`);
  }
  if (!isImageReference(image)) problems.push(`--sidecar-image ${JSON.stringify(image)} is not an image reference`);
  if (!isListenAddress(values.listen) || values.listen.startsWith('unix:')) {
    problems.push(`--listen ${JSON.stringify(values.listen)} is not HOST:PORT (such as :8443 for every interface, or 10.0.0.5:8443)`);
  }
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
