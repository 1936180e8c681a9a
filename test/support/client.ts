// A sluice.v1 client built from the repo's proto, as any Node caller would build it.
import { credentials, loadPackageDefinition, type ChannelCredentials, type ChannelOptions, type Client, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { LOADER_OPTIONS } from '../../src/grpc/proto.js';

const pkg = loadSync('sluice/v1/sluice.proto', LOADER_OPTIONS);
const RateLimiter = (loadPackageDefinition(pkg) as any).sluice.v1.RateLimiter;

export interface Duration {
  seconds: number;
  nanos: number;
}

export interface AcquireResponse {
  granted: boolean;
  permit_id: string;
  retry_after: Duration | null;
  remaining: number;
  limit: number;
  reset_after: Duration | null;
  limit_name: string;
  decided_by: string;
  waited: Duration | null;
  request_id: string;
  reason: string;
}

export interface AcquireRequest {
  resource: string;
  descriptors?: Record<string, string>;
  cost?: number;
  max_wait?: Duration;
  priority?: number;
  lane?: string;
  request_id?: string;
}

export interface LimitState {
  name: string;
  algorithm: string;
  remaining: number;
  limit: number;
  reset_after: Duration | null;
}

export interface InspectResponse {
  limits: LimitState[];
  waiters: number;
}

export interface SluiceClient {
  raw: Client & Record<string, any>;
  acquire(req: AcquireRequest): Promise<AcquireResponse>;
  release(permitId: string, actualCost?: number): Promise<boolean>;
  inspect(req: { resource: string; descriptors?: Record<string, string> }): Promise<InspectResponse>;
  stream(): ClientDuplexStream<AcquireRequest, AcquireResponse>;
  close(): void;
}

/** `options` are grpc-js channel options; plaintext unless `channelCredentials` say otherwise. */
export function connect(address: string, options: ChannelOptions = {}, channelCredentials: ChannelCredentials = credentials.createInsecure()): SluiceClient {
  const raw = new RateLimiter(address, channelCredentials, options);
  const unary = <T>(method: string, req: unknown) =>
    new Promise<T>((resolve, reject) => raw[method](req, (err: ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
  return {
    raw,
    acquire: (req) => unary<AcquireResponse>('Acquire', req),
    release: async (permitId, actualCost) =>
      (await unary<{ released: boolean }>('Release', actualCost === undefined ? { permit_id: permitId } : { permit_id: permitId, actual_cost: actualCost })).released,
    inspect: (req) => unary<InspectResponse>('Inspect', req),
    stream: () => raw.AcquireStream(),
    close: () => raw.close(),
  };
}

export const ms = (d: Duration | null): number => (d ? d.seconds * 1000 + d.nanos / 1e6 : 0);
