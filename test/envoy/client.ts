// An Envoy RLS v3 client built from the repo's envoy protos, as any gRPC caller would build it.
import { credentials, loadPackageDefinition, Metadata, type ServiceError } from '@grpc/grpc-js';
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
  /** google.protobuf.Struct as proto-loader decodes it; see plainStruct. */
  dynamic_metadata: WireStruct | null;
}

interface WireStruct {
  fields: Record<string, WireValue>;
}

/** google.protobuf.Value: camelCase whatever keepCase says (protobufjs defines the well-known types itself). */
interface WireValue {
  kind: 'nullValue' | 'numberValue' | 'stringValue' | 'boolValue' | 'structValue' | 'listValue';
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: WireStruct;
  listValue?: { values: WireValue[] };
}

/** A decoded google.protobuf.Struct as plain data: { a: 1, b: [true, null] }. */
export function plainStruct(struct: WireStruct): Record<string, unknown> {
  return Object.fromEntries(Object.entries(struct.fields).map(([key, value]) => [key, plainValue(value)]));
}

function plainValue(value: WireValue): unknown {
  switch (value.kind) {
    case 'nullValue':
      return null;
    case 'structValue':
      return plainStruct(value.structValue!);
    case 'listValue':
      return value.listValue!.values.map(plainValue);
    default:
      return value[value.kind];
  }
}

export interface WireDescriptor {
  entries: { key: string; value: string }[];
  limit?: { requests_per_unit: number; unit: string | number };
  hits_addend?: { value: number };
}

export interface EnvoyClient {
  /** `headers` go as the call's metadata (a traceparent, as Envoy sends it when it traces). */
  shouldRateLimit(domain: string, descriptors: WireDescriptor[], hitsAddend?: number, headers?: Record<string, string>): Promise<WireResponse>;
  close(): void;
}

export function connectEnvoy(address: string): EnvoyClient {
  const raw = new RateLimitService(address, credentials.createInsecure());
  return {
    shouldRateLimit: (domain, descriptors, hitsAddend = 0, headers = {}) =>
      new Promise((resolve, reject) => {
        const metadata = new Metadata();
        for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
        raw.ShouldRateLimit({ domain, descriptors, hits_addend: hitsAddend }, metadata, (err: ServiceError | null, res: WireResponse) => (err ? reject(err) : resolve(res)));
      }),
    close: () => raw.close(),
  };
}

/** A descriptor from key/value pairs: desc('user', 'ann', 'path', '/x'). */
export function desc(...pairs: string[]): WireDescriptor {
  const entries = [];
  for (let i = 0; i < pairs.length; i += 2) entries.push({ key: pairs[i]!, value: pairs[i + 1]! });
  return { entries };
}
