// envoyproxy/ratelimit's config as an xDS management server sends it: RateLimitConfig resources
// (proto/ratelimit/config/ratelimit/v3/rls_conf.proto), one domain each. Each is turned into the
// tree a config file of that domain would hold and read by the same rules as a file
// (parseDomainTree in config.ts), so a resource is valid exactly when that file would be.
import { createHash } from 'node:crypto';
import type { EnvoyOptions } from '../config/policy.js';
import { assembleConfig, domainTrees, parseDomainTree, type Domain, type EnvoyConfig, type Loaded } from './config.js';
import { metadataFromStruct, type WireStruct } from './metadata.js';

export const RATE_LIMIT_CONFIG_TYPE = 'type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig';

/** A RateLimitConfig as protobufjs decodes it (keepCase, enums as names, defaults filled in). */
export interface RateLimitConfigMessage {
  name: string;
  domain: string;
  descriptors: RateLimitDescriptorMessage[];
}

export interface RateLimitDescriptorMessage {
  key: string;
  value: string;
  rate_limit: RateLimitPolicyMessage | null;
  descriptors: RateLimitDescriptorMessage[];
  shadow_mode: boolean;
  detailed_metric: boolean;
  quota_mode: boolean;
  metadata: WireStruct | null;
}

export interface RateLimitPolicyMessage {
  /** The unit's name (UNKNOWN when unset), or its number when the name is not known. */
  unit: string | number;
  requests_per_unit: number;
  unlimited: boolean;
  name: string;
  replaces: { name: string }[];
}

/** The config of one response's resources (every one valid), or every problem in them. */
export function configFromXds(resources: readonly RateLimitConfigMessage[], options: EnvoyOptions): Loaded<EnvoyConfig> {
  const trees = domainTrees(options);
  const parsed: Loaded<Domain>[] = resources.map((resource, i) =>
    parseDomainTree(fileTree(resource), `xDS resource ${resource.name === '' ? `[${i}]` : JSON.stringify(resource.name)}`, options, trees),
  );
  const sorted = [...resources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const fingerprint = createHash('sha256').update(JSON.stringify(sorted)).digest('hex');
  return assembleConfig(options, parsed, [], sorted.map((resource) => resource.name), fingerprint, 'resource');
}

/** No domain at all: what the Envoy service serves before the first config arrives. */
export function emptyXdsConfig(options: EnvoyOptions): EnvoyConfig {
  const config = configFromXds([], options);
  if (!config.ok) throw new Error(`no resources cannot be invalid: ${config.problems.join('; ')}`);
  return config.value;
}

/** The config file of a resource's domain, as data: the keys a file would spell. */
function fileTree(resource: RateLimitConfigMessage): Record<string, unknown> {
  return { domain: resource.domain, descriptors: resource.descriptors.map(descriptorTree) };
}

function descriptorTree(descriptor: RateLimitDescriptorMessage): Record<string, unknown> {
  const tree: Record<string, unknown> = {
    key: descriptor.key,
    value: descriptor.value,
    descriptors: descriptor.descriptors.map(descriptorTree),
    shadow_mode: descriptor.shadow_mode,
    detailed_metric: descriptor.detailed_metric,
    quota_mode: descriptor.quota_mode,
  };
  const rateLimit = descriptor.rate_limit;
  if (rateLimit) {
    tree.rate_limit = {
      // UNKNOWN (unset) is no unit: refused unless the limit is unlimited, as a file's.
      unit: String(rateLimit.unit),
      requests_per_unit: rateLimit.requests_per_unit,
      unlimited: rateLimit.unlimited,
      name: rateLimit.name,
      replaces: rateLimit.replaces.map((replaced) => ({ name: replaced.name })),
    };
  }
  if (descriptor.metadata) tree.metadata = metadataFromStruct(descriptor.metadata);
  return tree;
}
