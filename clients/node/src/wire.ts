// The sluice.v1 messages as they travel, and a stub for the RateLimiter service loaded from the
// proto this package carries (proto/, copied from the repository's proto/ by the build).
import { credentials, loadPackageDefinition, type CallOptions, type ClientOptions, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

export interface Duration {
  seconds: number;
  nanos: number;
}

export interface AcquireRequest {
  resource: string;
  descriptors: Record<string, string>;
  cost: number;
  max_wait: Duration | null;
  priority: number;
  lane: string;
}

export interface AcquireResponse {
  granted: boolean;
  permit_id: string;
  retry_after: Duration | null;
  remaining: number;
  limit: number;
  reset_after: Duration | null;
  limit_name: string;
  /** The DecidedBy enum's name: the loader is asked for enums as strings. */
  decided_by: string;
  waited: Duration | null;
  reason: string;
}

export interface ReleaseRequest {
  permit_id: string;
  actual_cost?: number;
}

export interface ReleaseResponse {
  released: boolean;
}

type Unary<Req, Res> = (request: Req, options: CallOptions, callback: (err: ServiceError | null, response?: Res) => void) => ClientUnaryCall;

export interface RateLimiterStub {
  Acquire: Unary<AcquireRequest, AcquireResponse>;
  Release: Unary<ReleaseRequest, ReleaseResponse>;
  close(): void;
}

const definition = loadSync('sluice/v1/sluice.proto', {
  keepCase: true,
  // uint64 counts as numbers: the sidecar keeps them at most 2^53-1, where numbers are exact.
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [fileURLToPath(new URL('../proto', import.meta.url))],
});
const RateLimiter = (loadPackageDefinition(definition) as any).sluice.v1.RateLimiter;

export function connectStub(target: string, options: ClientOptions): RateLimiterStub {
  return new RateLimiter(target, credentials.createInsecure(), options) as RateLimiterStub;
}

export function durationOf(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

export function msOf(duration: Duration | null): number | undefined {
  return duration ? duration.seconds * 1000 + duration.nanos / 1e6 : undefined;
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as ServiceError).code === 'number' && typeof (err as ServiceError).details === 'string';
}
