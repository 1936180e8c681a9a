// `sluice install`'s flags, checked once: each bad value is refused with what it must be.
import type { FailurePolicy, InstallOptions } from './manifests.js';

export const DEFAULT_NAMESPACE = 'sluice-system';

export interface InstallFlags {
  namespace?: string;
  image?: string;
  'failure-policy'?: string;
  'cert-manager'?: boolean;
}

export class InstallOptionError extends Error {}

const DNS_1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const FAILURE_POLICIES: readonly FailurePolicy[] = ['Ignore', 'Fail'];

/** `version` is sluice's own: the default image is the one this CLI came in. */
export function installOptions(flags: InstallFlags, version: string): InstallOptions {
  const namespace = flags.namespace ?? DEFAULT_NAMESPACE;
  if (namespace.length > 63 || !DNS_1123_LABEL.test(namespace)) {
    throw new InstallOptionError(
      `--namespace ${JSON.stringify(namespace)}: must be a DNS-1123 label: 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
    );
  }
  const image = flags.image ?? `sluice:${version}`;
  if (image === '' || /\s/.test(image)) {
    throw new InstallOptionError(`--image ${JSON.stringify(image)}: must be an image reference such as sluice:${version}, without whitespace`);
  }
  const failurePolicy = flags['failure-policy'] ?? 'Ignore';
  if (!FAILURE_POLICIES.includes(failurePolicy as FailurePolicy)) {
    throw new InstallOptionError(`--failure-policy ${JSON.stringify(failurePolicy)}: must be Ignore or Fail`);
  }
  return { namespace, image, failurePolicy: failurePolicy as FailurePolicy, certManager: flags['cert-manager'] ?? false };
}
