// Load targets over gRPC: unary Acquire and AcquireStream against sluice or the floor. Requests are
// built once per slot; each slot always uses the same channel (slot % channels).
import {
  credentials,
  makeGenericClientConstructor,
  type Client,
  type ClientDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { serviceOf, sluicePackage } from '../src/grpc/proto.js';
import type { Duration } from '../test/support/client.js';
import { DENIED, FAILED, GRANTED, type Complete, type Target } from './load.js';

const RateLimiter = makeGenericClientConstructor(serviceOf(sluicePackage, 'sluice.v1.RateLimiter'), 'RateLimiter');

export interface WireRequest {
  resource: string;
  descriptors: Record<string, string>;
  cost: number;
  /** How long it may wait in its scope's line; absent or 0: answer now. */
  max_wait?: Duration;
  priority?: number;
  request_id?: string;
}

export interface WireResponse {
  granted: boolean;
  /** Set on a denial: when to ask again. */
  retry_after: Duration | null;
  decided_by: string;
  request_id: string;
}

type Callback = (err: ServiceError | null, res: WireResponse) => void;
export type RateLimiterClient = Client & {
  Acquire(req: WireRequest, cb: Callback): unknown;
  AcquireStream(): ClientDuplexStream<WireRequest, WireResponse>;
};

/** One client with its own HTTP/2 connection (grpc-js would otherwise share one per target). */
export function openClient(address: string): RateLimiterClient {
  return new RateLimiter(address, credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
  }) as unknown as RateLimiterClient;
}

export async function openClients(address: string, channels: number): Promise<RateLimiterClient[]> {
  const clients = Array.from({ length: channels }, () => openClient(address));
  const deadline = Date.now() + 10_000;
  await Promise.all(
    clients.map((c) => new Promise<void>((resolve, reject) => c.waitForReady(deadline, (err) => (err ? reject(err) : resolve())))),
  );
  return clients;
}

function count(tally: Record<string, number>, key: string): void {
  tally[key] = (tally[key] ?? 0) + 1;
}

/** `onAnswer`, if given, sees the decided_by of every answer as it arrives (the outage run times on it). */
export async function unaryTarget(
  address: string,
  channels: number,
  request: WireRequest,
  onAnswer?: (decidedBy: string) => void,
): Promise<Target> {
  const clients = await openClients(address, channels);
  const decidedBy: Record<string, number> = {};
  const callbacks: Callback[] = [];
  let complete: Complete = () => undefined;
  const callbackFor = (slot: number): Callback =>
    (callbacks[slot] ??= (err, res) => {
      if (err) return complete(slot, FAILED);
      count(decidedBy, res.decided_by);
      onAnswer?.(res.decided_by);
      complete(slot, res.granted ? GRANTED : DENIED);
    });
  return {
    decidedBy,
    bind(fn) {
      complete = fn;
    },
    issue(slot) {
      clients[slot % clients.length]!.Acquire(request, callbackFor(slot));
    },
    async close() {
      for (const c of clients) c.close();
    },
  };
}

/**
 * One AcquireStream per channel; slot s writes to stream s % channels with request_id "s" and is
 * answered when that id comes back (answers may come out of order).
 */
export async function streamTarget(address: string, channels: number, request: WireRequest, slots: number): Promise<Target> {
  const clients = await openClients(address, channels);
  const decidedBy: Record<string, number> = {};
  const requests = Array.from({ length: slots }, (_, slot) => ({ ...request, request_id: String(slot) }));
  const slotOf = new Map(requests.map((r, slot) => [r.request_id, slot]));
  const pending = new Uint8Array(slots);
  let complete: Complete = () => undefined;
  let closing = false;

  const open = (channel: number): ClientDuplexStream<WireRequest, WireResponse> => {
    const call = clients[channel]!.AcquireStream();
    call.on('data', (res: WireResponse) => {
      const slot = slotOf.get(res.request_id);
      if (slot === undefined || !pending[slot]) return;
      pending[slot] = 0;
      count(decidedBy, res.decided_by);
      complete(slot, res.granted ? GRANTED : DENIED);
    });
    // A broken stream fails its requests under way and is replaced.
    const broken = () => {
      if (closing || streams[channel] !== call) return;
      streams[channel] = open(channel);
      for (let slot = channel; slot < slots; slot += channels) {
        if (pending[slot]) {
          pending[slot] = 0;
          complete(slot, FAILED);
        }
      }
    };
    call.on('error', broken);
    call.on('end', broken);
    return call;
  };
  const streams = clients.map((_, channel) => open(channel));

  return {
    decidedBy,
    bind(fn) {
      complete = fn;
    },
    issue(slot) {
      pending[slot] = 1;
      streams[slot % channels]!.write(requests[slot]!);
    },
    async close() {
      closing = true;
      for (const s of streams) s.end();
      for (const c of clients) c.close();
    },
  };
}
