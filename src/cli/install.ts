// `sluice install`: prints the injector's manifests, for `sluice install | kubectl apply -f -`.
import { parseArgs } from 'node:util';
import { installOptions, InstallOptionError } from '../kube/install-options.js';
import { installManifests, manifestsYaml } from '../kube/manifests.js';
import { packageVersion } from './environment.js';
import { USAGE } from './usage.js';

export function install(argv: string[]): number {
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
    options = installOptions(values, packageVersion());
  } catch (err) {
    // parseArgs names the unknown or incomplete flag; installOptions the value it refuses.
    if (!(err instanceof InstallOptionError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) throw err;
    process.stderr.write(`sluice install: ${(err as Error).message}\n`);
    return 2;
  }
  process.stdout.write(manifestsYaml(installManifests(options)));
  return 0;
}
