// A bug in the sidecar (here a store that throws a TypeError) is no store failure: the caller gets
// INTERNAL with a generic message, on_store_failure does not decide it, the circuit breaker does
// not count it, and the error is logged. A real store failure on the same sidecar still gets the
// resource's on_store_failure.
import { status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { Metrics } from '../../src/admin/metrics.js';
import { Decider } from '../../src/decide/decider.js';
import { Admission } from '../../src/guard/admission.js';
import { FailurePolicy } from '../../src/guard/failure-policy.js';
import { GuardedStore } from '../../src/guard/guarded-store.js';
import { INTERNAL_DETAILS } from '../../src/grpc/request-error.js';
import { startGrpcServer, type GrpcServer } from '../../src/grpc/grpc-server.js';
import { MemoryStore } from '../../src/store/memory/memory-store.js';
import { StoreError, type Grant, type StoreVerdict } from '../../src/store/store.js';
import type { Resource } from '../../src/config/policy.js';
import { connect, type SluiceClient } from '../support/client.js';

const policy = parsePolicy(
  `
resources:
  - name: r
    keys: [tenant]
    on_store_failure: closed
    limits: [{ name: inflight, algorithm: concurrency, max: 5, ttl: 1m }]
`,
  'p.yaml',
);

/** The memory store, with a bug for tenant "bug" (and in releases of tenant "ok") and a lost connection for tenant "down". */
class FaultyStore extends MemoryStore {
  override async acquire(resource: Resource, scope: string, cost: number, permitId: string): Promise<StoreVerdict> {
    if (scope.endsWith('|bug')) throw new TypeError("Cannot read properties of undefined (reading 'capacity')");
    if (scope.endsWith('|down')) throw new StoreError('Connection is closed.');
    return super.acquire(resource, scope, cost, permitId);
  }

  override async release(resource: Resource, scope: string, grant: Grant, delta: number): Promise<void> {
    if (scope.endsWith('|ok')) throw new TypeError('release is broken');
    return super.release(resource, scope, grant, delta);
  }
}

describe('an error that is no store failure', () => {
  const warned: { obj: object; msg: string }[] = [];
  let guarded: GuardedStore;
  let server: GrpcServer;
  let client: SluiceClient;

  beforeAll(async () => {
    guarded = new GuardedStore(new FaultyStore({ maxKeys: 100, sweepEveryMs: 0 }), { failuresToOpen: 2, probeEveryMs: 60_000 });
    const admission = new Admission(100, 1_000);
    const decider = new Decider(guarded, { maxPermits: 100, failurePolicy: new FailurePolicy({ maxKeys: 100, retryAfterMs: () => 500 }) });
    const metrics = new Metrics({
      permits: () => 0,
      permitsEvicted: () => 0,
      leases: () => null,
      storeUp: () => 1,
      admission: () => admission,
      memoryScopesRefused: () => 0,
    });
    server = await startGrpcServer('127.0.0.1:0', policy.server.connections, {
      decider,
      maxStreams: 10,
      resources: () => policy.resources,
      metrics,
      admission,
      warn: (obj, msg) => warned.push({ obj, msg }),
      tracing: null,
    });
    client = connect(server.address);
  });

  afterAll(async () => {
    client?.close();
    server?.server.forceShutdown();
    server?.listener.close();
    await guarded?.close();
  });

  const failure = (call: Promise<unknown>) =>
    call.then(
      (res) => {
        throw new Error(`expected an error status, got ${JSON.stringify(res)}`);
      },
      (err: ServiceError) => err,
    );

  it('answers Acquire with INTERNAL and a generic message, logs the error, and never opens the circuit', async () => {
    for (let i = 0; i < 3; i++) {
      const err = await failure(client.acquire({ resource: 'r', descriptors: { tenant: 'bug' } }));
      expect(status[err.code]).toBe('INTERNAL');
      expect(err.details).toBe(INTERNAL_DETAILS);
      expect(err.details).not.toContain('store unavailable');
    }
    expect(warned.filter(({ obj }) => (obj as { err?: unknown }).err instanceof TypeError)).toHaveLength(3);
    // Three in a row, with two failures opening it: the breaker saw none of them.
    expect(guarded.available).toBe(true);
  });

  it('a real store failure is still decided by on_store_failure', async () => {
    const res = await client.acquire({ resource: 'r', descriptors: { tenant: 'down' } });
    expect(res).toMatchObject({ granted: false, decided_by: 'FAIL_CLOSED' });
    expect(res.reason).toMatch(/^store unavailable: Connection is closed\./);
  });

  it('answers Release with INTERNAL when releasing fails on a bug, and the permit stays releasable', async () => {
    const granted = await client.acquire({ resource: 'r', descriptors: { tenant: 'ok' } });
    expect(granted.granted).toBe(true);
    for (let i = 0; i < 2; i++) {
      // Kept after the first failure: the retry finds the permit (an unknown one answers released: false).
      const err = await failure(client.release(granted.permit_id));
      expect(status[err.code]).toBe('INTERNAL');
      expect(err.details).toBe(INTERNAL_DETAILS);
    }
  });
});
