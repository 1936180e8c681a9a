// Many tenants asking many times over AcquireStreams, with a fixed number of requests in flight:
// the overload a busy service puts on its sidecar. Every answer is tallied per tenant, so a test
// can compare what was granted with what the limits allow.
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { connect, type AcquireRequest, type AcquireResponse, type SluiceClient } from './client.js';

export interface StreamLoad {
  resource: string;
  tenants: number;
  asksEach: number;
  inFlight: number;
  /** Streams (each on its own client) the requests are spread over. */
  streams: number;
  /** Tenants are `${tenantPrefix}t0`, `${tenantPrefix}t1`, ...: a fresh prefix, fresh budgets. */
  tenantPrefix?: string;
}

export interface StreamTally {
  /** Grants per tenant. */
  granted: Uint32Array;
  /** Answers by decided_by, granted or not. */
  decidedBy: Record<string, number>;
  /** Requests that got a gRPC status instead of an answer, by status details' first words. */
  errors: Record<string, number>;
  /** Status codes of those errors. */
  codes: Set<number>;
  /** Milliseconds from write to answer, per answered request, in the order answered. */
  latencies: Float64Array;
  answered: number;
  /** Milliseconds from the first write to the last answer. */
  elapsedMs: number;
}

export async function streamLoad(address: string, load: StreamLoad): Promise<StreamTally> {
  const total = load.tenants * load.asksEach;
  const tally: StreamTally = {
    granted: new Uint32Array(load.tenants),
    decidedBy: {},
    errors: {},
    codes: new Set(),
    latencies: new Float64Array(total),
    answered: 0,
    elapsedMs: 0,
  };
  const prefix = load.tenantPrefix ?? '';
  const sentAt = new Float64Array(total);
  const startedAt = performance.now();
  const clients: SluiceClient[] = Array.from({ length: load.streams }, () => connect(address));
  let next = 0;
  let settled = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));

  // Ask k goes to tenant k % tenants: each tenant's asks are spread over the whole run.
  const open = (channel: number) => {
    const call: ClientDuplexStream<AcquireRequest, AcquireResponse> = clients[channel]!.stream();
    const outstanding = new Map<string, number>();
    const issue = () => {
      if (next >= total) return;
      const ask = next++;
      const id = String(ask);
      outstanding.set(id, ask % load.tenants);
      sentAt[ask] = performance.now();
      call.write({ resource: load.resource, descriptors: { tenant: `${prefix}t${ask % load.tenants}` }, request_id: id });
    };
    const settle = () => {
      if (++settled === total) finish();
      else issue();
    };
    call.on('data', (res: AcquireResponse) => {
      const tenant = outstanding.get(res.request_id);
      if (tenant === undefined) return;
      outstanding.delete(res.request_id);
      tally.latencies[tally.answered++] = performance.now() - sentAt[Number(res.request_id)]!;
      if (res.granted) tally.granted[tenant]!++;
      tally.decidedBy[res.decided_by] = (tally.decidedBy[res.decided_by] ?? 0) + 1;
      settle();
    });
    let broken = false;
    const fail = (err: ServiceError | null) => {
      if (broken) return;
      broken = true;
      const lost = outstanding.size;
      if (err) {
        tally.codes.add(err.code);
        const key = (err.details ?? err.message).split(':')[0]!;
        tally.errors[key] = (tally.errors[key] ?? 0) + lost;
      }
      outstanding.clear();
      // The requests under way on a broken stream are lost; carry on on a fresh one.
      const fresh = lost > 0 && settled + lost < total ? open(channel) : null;
      for (let i = 0; i < lost; i++) {
        if (++settled === total) finish();
        else fresh?.issue();
      }
    };
    call.on('error', (err: ServiceError) => fail(err));
    call.on('end', () => fail(null));
    return { issue };
  };

  const perStream = Math.ceil(load.inFlight / load.streams);
  for (let channel = 0; channel < load.streams; channel++) {
    const stream = open(channel);
    for (let i = 0; i < perStream && channel * perStream + i < load.inFlight; i++) stream.issue();
  }
  await done;
  tally.elapsedMs = performance.now() - startedAt;
  for (const client of clients) client.close();
  return tally;
}
