// Polyglot use: a Python service (Debian's python3-grpcio, stubs generated from the repo's proto
// by Debian's protoc + grpc_python_plugin) drives the built sidecar, started as deployed on a real
// redis-server, over real gRPC.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { generatePythonStubs, runPythonClient, type Step } from '../support/python.js';
import { DEPLOYED_NODE_FLAGS, startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const SCRIPT = join(packageRoot, 'test', 'e2e', 'python', 'client.py');

const POLICY = `
# Generous: this test is about the client and the wire, not store failures on a busy machine.
store:
  timeout: 10s
resources:
  - name: py
    keys: [tenant]
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 30s }
      - { name: rps, algorithm: token_bucket, rate: 100/1s, burst: 100 }
  - name: pywait
    keys: [tenant]
    limits:
      - { name: rps, algorithm: token_bucket, rate: 1/1s, burst: 1 }
`;

const world = useRedis();
let sidecar: SidecarProcess;
let stubs: string;
let step: (name: string) => Step;

beforeAll(async () => {
  stubs = generatePythonStubs(['proto/sluice/v1/sluice.proto']);
  sidecar = await startSidecar(POLICY, { SLUICE_REDIS_URL: world.redis.url }, DEPLOYED_NODE_FLAGS);
  step = await runPythonClient(SCRIPT, sidecar.address, stubs);
});

afterAll(async () => {
  await sidecar?.stop();
  if (stubs) rmSync(stubs, { recursive: true, force: true });
});

describe('a Python grpcio client with stubs generated from proto/', () => {
  it('ran against Debian python3-grpcio', () => {
    expect(step('versions').grpc).toMatch(/^\d+\.\d+/);
  });

  it('Acquire is granted with a permit_id for the concurrency slot', () => {
    expect(step('acquire1')).toMatchObject({
      granted: true,
      remaining: 0,
      limit: 1,
      limit_name: 'inflight',
      decided_by: 'STORE',
      request_id: 'py-1',
      reason: '',
      retry_after_ms: null,
    });
    expect(step('acquire1').permit_id).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('a second Acquire while the slot is held is denied with retry_after and a reason', () => {
    const denied = step('acquire2');
    expect(denied).toMatchObject({ granted: false, permit_id: '', limit_name: 'inflight', request_id: 'py-2', remaining: 0, limit: 1 });
    // Without a Release, the slot frees when the held permit's 30 s ttl runs out.
    expect(denied.retry_after_ms).toBeGreaterThan(0);
    expect(denied.retry_after_ms).toBeLessThanOrEqual(30_000);
    expect(denied.reason).toContain('inflight');
  });

  it('Release frees the slot once; releasing again is released=false', () => {
    expect(step('release1')).toEqual({ step: 'release1', released: true });
    expect(step('release_again')).toEqual({ step: 'release_again', released: false });
  });

  it('after the Release, Acquire is granted again, and Release with actual_cost settles it', () => {
    expect(step('acquire3')).toMatchObject({ granted: true, limit_name: 'inflight', request_id: 'py-3' });
    expect(step('acquire3').permit_id).not.toBe(step('acquire1').permit_id);
    expect(step('release3_settled')).toEqual({ step: 'release3_settled', released: true });
  });

  it('bad requests come back as gRPC statuses naming the field', () => {
    expect(step('unknown_resource')).toMatchObject({ code: 'NOT_FOUND' });
    expect(step('unknown_resource').details).toContain('nope');
    expect(step('missing_key')).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(step('missing_key').details).toContain('tenant');
    expect(step('huge_cost')).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(step('huge_cost').details).toContain('cost');
    expect(step('garbage_permit')).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(step('garbage_permit').details).toContain('permit_id');
  });

  it('max_wait: a request waits in the line (in Redis) and is granted with waited set; one whose max_wait passes first is denied, having waited', () => {
    expect(sidecar.listening.store).toBe('redis');
    expect(step('wait_first')).toMatchObject({ granted: true, waited_ms: null });
    // The next unit was up to a second away.
    const granted = step('wait_granted');
    expect(granted).toMatchObject({ granted: true, decided_by: 'STORE', limit_name: 'rps' });
    expect(granted.waited_ms).toBeGreaterThan(500);
    expect(granted.waited_ms).toBeLessThanOrEqual(1_000 + 100);
    const timedOut = step('wait_timeout');
    expect(timedOut).toMatchObject({ granted: false, limit_name: 'rps' });
    expect(timedOut.waited_ms).toBeGreaterThanOrEqual(50);
    expect(timedOut.reason).toContain('max_wait');
  });

  it('AcquireStream answers every request, matched by request_id', () => {
    const answers = step('stream').answers as Step[];
    expect(answers.map((a) => a.request_id).sort()).toEqual(['s-0', 's-1', 's-2']);
    for (const answer of answers) expect(answer).toMatchObject({ granted: true, limit_name: 'inflight', remaining: 0 });
  });

  it('the sidecar is still serving afterwards', () => {
    expect(sidecar.child.exitCode).toBeNull();
  });
});
