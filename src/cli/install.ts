// `sluice install`: prints the injector's manifests, for `sluice install | kubectl apply -f -`.
import { installOptions, InstallOptionError } from '../kube/install-options.js';
import { installManifests, manifestsYaml } from '../kube/manifests.js';
import { parseCommandLine } from './args.js';
import { packageVersion } from './environment.js';
import { USAGE } from './usage.js';

export function install(argv: string[]): number {
  const { values } = parseCommandLine(
    'sluice install',
    argv,
    {
      namespace: { type: 'string' },
      image: { type: 'string' },
      'failure-policy': { type: 'string' },
      'cert-manager': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    USAGE,
    0,
  );
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let options;
  try {
    options = installOptions(values, packageVersion());
  } catch (err) {
    if (!(err instanceof InstallOptionError)) throw err;
    process.stderr.write(`sluice install: ${err.message}\n`);
    return 2;
  }
  process.stdout.write(manifestsYaml(installManifests(options)));
  return 0;
}
