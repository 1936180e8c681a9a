// An Envoy RLS v3 client built from the repo's envoy protos, as any gRPC caller would build it.
import { credentials, loadPackageDefinition, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { LOADER_OPTIONS } from '../../src/grpc/proto.js';

const pkg = loadPackageDefinition(loadSync('envoy/service/ratelimit/v3/rls.proto', LOADER_OPTIONS)) as any;
const RateLimitService = pkg.envoy.service.ratelimit.v3.RateLimitService;

export interface WireStatus {
  code: 'OK' | 'OVER_LIMIT' | 'UNKNOWN';
  current_limit: { name: string; requests_per_unit: number; unit: string } | null;
  limit_remaining: number;
  duration_until_reset: { seconds: number; nanos: number } | null;
}

export interface WireResponse {
  overall_code: 'OK' | 'OVER_LIMIT' | 'UNKNOWN';
  statuses: WireStatus[];
  response_headers_to_add: { key: string; value: string }[];
}

export interface WireDescriptor {
  entries: { key: string; value: string }[];
  limit?: { requests_per_unit: number; unit: string | number };
  hits_addend?: { value: number };
}

export interface EnvoyClient {
  shouldRateLimit(domain: string, descriptors: WireDescriptor[], hitsAddend?: number): Promise<WireResponse>;
  close(): void;
}

export function connectEnvoy(address: string): EnvoyClient {
  const raw = new RateLimitService(address, credentials.createInsecure());
  return {
    shouldRateLimit: (domain, descriptors, hitsAddend = 0) =>
      new Promise((resolve, reject) =>
        raw.ShouldRateLimit({ domain, descriptors, hits_addend: hitsAddend }, (err: ServiceError | null, res: WireResponse) => (err ? reject(err) : resolve(res))),
      ),
    close: () => raw.close(),
  };
}

/** A descriptor from key/value pairs: desc('user', 'ann', 'path', '/x'). */
export function desc(...pairs: string[]): WireDescriptor {
  const entries = [];
  for (let i = 0; i < pairs.length; i += 2) entries.push({ key: pairs[i]!, value: pairs[i + 1]! });
  return { entries };
}
