// The built sidecar over real gRPC: what a caller sees from Acquire, Release and AcquireStream,
// health, reflection, metrics and shutdown.
import { once } from 'node:events';
import { credentials, loadPackageDefinition, status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { createRequire } from 'node:module';
import http2 from 'node:http2';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, ms, type AcquireResponse } from '../support/client.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { metric, startSidecar, useSidecar } from '../support/sidecar.js';

const POLICY = `
resources:
  - name: api
    keys: [tenant]
    limits:
      - { name: per-minute, algorithm: token_bucket, rate: 60/1m, burst: 3 }
  - name: llm
    keys: [tenant]
    settle_within: 1m
    limits:
      - { name: rpm, algorithm: token_bucket, rate: 100/1m, counts: requests }
      - { name: tokens, algorithm: fixed_window, rate: 1000/1d }
  - name: jobs
    limits:
      - { name: inflight, algorithm: concurrency, max: 2, ttl: 1h }
  - name: stream
    keys: [tenant]
    limits:
      - { name: hourly, algorithm: fixed_window, rate: 40/1d }
`;

const healthPkg = loadPackageDefinition(loadSync(healthProtoPath, { keepCase: true, enums: String })) as any;
const reflectionProto = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection')), '..', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');

function healthClient(address: string) {
  return new healthPkg.grpc.health.v1.Health(address, credentials.createInsecure());
}

describe('sidecar on the memory store', () => {
  const running = useSidecar(() => POLICY);

  it('listens on loopback and grants with every field filled', async () => {
    expect(running.sidecar.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const res = await running.client.acquire({ resource: 'api', descriptors: { tenant: 'fields' }, request_id: 'r-1' });
    expect(res).toMatchObject({ granted: true, remaining: 2, limit: 3, limit_name: 'per-minute', decided_by: 'STORE', request_id: 'r-1', reason: '', permit_id: '' });
    expect(res.retry_after).toBeNull();
    expect(ms(res.reset_after)).toBe(1000);
  });

  it('denies past the burst with the exact retry_after, then grants at that moment', async () => {
    const tenant = { tenant: 'burst' };
    for (let i = 0; i < 3; i++) expect((await running.client.acquire({ resource: 'api', descriptors: tenant })).granted).toBe(true);
    const denied = await running.client.acquire({ resource: 'api', descriptors: tenant });
    expect(denied).toMatchObject({ granted: false, remaining: 0, limit_name: 'per-minute' });
    expect(denied.reason).toMatch(/per-minute/);
    // One token per second refills; the first is due within a second of the grants above.
    expect(ms(denied.retry_after)).toBeGreaterThan(0);
    expect(ms(denied.retry_after)).toBeLessThanOrEqual(1000);
  });

  it('denies a cost that can never fit, saying so, with no retry_after', async () => {
    const res = await running.client.acquire({ resource: 'api', descriptors: { tenant: 'huge' }, cost: 4 });
    expect(res.granted).toBe(false);
    expect(res.retry_after).toBeNull();
    expect(res.reason).toMatch(/cost 4 exceeds the capacity 3 of limit "per-minute": it can never be granted/);
    expect((await running.client.acquire({ resource: 'api', descriptors: { tenant: 'huge' }, cost: 3 })).remaining).toBe(0);
  });

  it('settles the real cost on Release: refunds the difference, or charges the extra', async () => {
    const tenant = { tenant: 'settle' };
    const first = await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 1000 });
    expect(first).toMatchObject({ granted: true, limit_name: 'tokens', remaining: 0 });
    expect(first.permit_id).not.toBe('');
    expect((await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 1 })).granted).toBe(false);

    expect(await running.client.release(first.permit_id, 600)).toBe(true);
    const second = await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 400 });
    expect(second).toMatchObject({ granted: true, remaining: 0 });

    expect(await running.client.release(second.permit_id, 300)).toBe(true);
    const third = await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 50 });
    expect(third).toMatchObject({ granted: true, remaining: 50 });
    expect(await running.client.release(third.permit_id, 100)).toBe(true);
    expect((await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 1 })).remaining).toBe(0);
  });

  it('answers released=false for a permit released twice, and changes nothing', async () => {
    const tenant = { tenant: 'twice' };
    const grant = await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 500 });
    expect(await running.client.release(grant.permit_id, 0)).toBe(true);
    expect(await running.client.release(grant.permit_id, 0)).toBe(false);
    // Refunded once: the whole day's 1000 fit again, and not one unit more.
    expect((await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 1000 })).granted).toBe(true);
    expect((await running.client.acquire({ resource: 'llm', descriptors: tenant, cost: 1 })).granted).toBe(false);
  });

  it('holds concurrency slots until Release frees them', async () => {
    const a = await running.client.acquire({ resource: 'jobs' });
    const b = await running.client.acquire({ resource: 'jobs' });
    expect([a.granted, b.granted]).toEqual([true, true]);
    const c = await running.client.acquire({ resource: 'jobs' });
    expect(c).toMatchObject({ granted: false, limit_name: 'inflight', remaining: 0 });
    expect(ms(c.retry_after)).toBeGreaterThan(3_500_000); // when a's ttl (1h) would reclaim it
    expect(await running.client.release(a.permit_id)).toBe(true);
    const d = await running.client.acquire({ resource: 'jobs' });
    expect(d.granted).toBe(true);
    await running.client.release(b.permit_id);
    await running.client.release(d.permit_id);
  });

  it('answers many acquires on one stream, matched by request_id, and ends cleanly', async () => {
    const stream = running.client.stream();
    const answers = new Map<string, AcquireResponse>();
    stream.on('data', (res: AcquireResponse) => answers.set(res.request_id, res));
    for (let i = 0; i < 60; i++) stream.write({ resource: 'stream', descriptors: { tenant: 's' }, request_id: `q${i}` });
    stream.end();
    await once(stream, 'end');
    expect(answers.size).toBe(60);
    const granted = [...answers.values()].filter((a) => a.granted);
    expect(granted).toHaveLength(40);
    expect([...answers.keys()].sort()).toEqual(Array.from({ length: 60 }, (_, i) => `q${i}`).sort());
  });

  it('serves grpc.health.v1 and reports SERVING', async () => {
    const health = healthClient(running.sidecar.address);
    const res = await new Promise<any>((resolve, reject) =>
      health.Check({ service: 'sluice.v1.RateLimiter' }, (err: Error | null, r: unknown) => (err ? reject(err) : resolve(r))),
    );
    expect(res.status).toBe('SERVING');
    health.close();
  });

  it('serves reflection listing the sluice service', async () => {
    const pkg = loadPackageDefinition(loadSync(reflectionProto, { keepCase: true })) as any;
    const reflection = new pkg.grpc.reflection.v1.ServerReflection(running.sidecar.address, credentials.createInsecure());
    const call = reflection.ServerReflectionInfo();
    const reply = once(call, 'data');
    call.write({ list_services: '' });
    const [res] = await reply;
    call.end();
    reflection.close();
    expect(res.list_services_response.service.map((s: { name: string }) => s.name)).toContain('sluice.v1.RateLimiter');
  });

  it('exports decisions on /metrics and is ready on /readyz', async () => {
    const metrics = await (await fetch(`http://${running.sidecar.admin}/metrics`)).text();
    expect(metrics).toMatch(/sluice_decisions_total\{resource="api",outcome="granted",decided_by="STORE"\} \d+/);
    expect(metrics).toMatch(/sluice_decisions_total\{resource="api",outcome="denied",decided_by="STORE"\} \d+/);
    expect((await fetch(`http://${running.sidecar.admin}/readyz`)).status).toBe(200);
  });
});

describe('sidecar on Redis', () => {
  let redis: RedisProcess;
  // Redis is paused on purpose below: give calls under way far more than the default deadline.
  const POLICY_REDIS = `
store:
  timeout: 30s
resources:
  - name: jobs
    limits:
      - { name: inflight, algorithm: concurrency, max: 5, ttl: 1h }
  - name: api
    limits:
      - { name: daily, algorithm: fixed_window, rate: 100/1d }
`;

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('gives back the grants of a stream cancelled before they were answered', async () => {
    const sidecar = await startSidecar(POLICY_REDIS, { SLUICE_REDIS_URL: redis.url });
    const client = connect(sidecar.address);
    try {
      // Warm the connection and the script cache, so the requests below wait only on the pause.
      expect((await client.acquire({ resource: 'api' })).granted).toBe(true);
      redis.pause();
      const stream = client.stream();
      stream.on('error', () => undefined);
      for (let i = 0; i < 5; i++) stream.write({ resource: 'jobs', request_id: `c${i}` });
      for (let i = 0; i < 5; i++) stream.write({ resource: 'api', request_id: `d${i}` });
      // The requests reach the sidecar and wait on Redis; then the client gives up on them.
      await waitFor(async () => (await metric(sidecar, 'sluice_decisions_in_flight')) === 10);
      stream.cancel();
      await waitFor(async () => (await metric(sidecar, 'sluice_open_streams')) === 0);
      redis.resume();
      // Every slot must come back: five new holders fit again, and the daily count is back at 1.
      await waitFor(async () => {
        const held = Number((await redis.client.get('sluice:{jobs}:inflight|cc|held')) ?? 0);
        return held === 0;
      });
      const holders = await Promise.all(Array.from({ length: 5 }, () => client.acquire({ resource: 'jobs' })));
      expect(holders.every((h) => h.granted)).toBe(true);
      expect((await client.acquire({ resource: 'api' })).remaining).toBe(98);
    } finally {
      redis.resume();
      client.close();
      await sidecar.stop();
    }
  });

  it('on SIGTERM reports NOT_SERVING, finishes the call under way, and exits 0', async () => {
    const sidecar = await startSidecar(POLICY_REDIS, { SLUICE_REDIS_URL: redis.url });
    const client = connect(sidecar.address);
    const health = healthClient(sidecar.address);
    try {
      expect((await client.acquire({ resource: 'api' })).granted).toBe(true);
      const watch = health.Watch({ service: '' });
      const statuses: string[] = [];
      const notServing = new Promise<void>((resolve) =>
        watch.on('data', (r: { status: string }) => {
          statuses.push(r.status);
          if (r.status === 'NOT_SERVING') resolve();
        }),
      );
      watch.on('error', () => undefined);
      await waitFor(async () => statuses.includes('SERVING'));

      redis.pause();
      const underway = client.acquire({ resource: 'api', request_id: 'in-flight' });
      await waitFor(async () => (await metric(sidecar, 'sluice_decisions_in_flight')) === 1);
      sidecar.child.kill('SIGTERM');
      await notServing;
      watch.cancel();
      redis.resume();
      const answered = await underway;
      expect(answered).toMatchObject({ granted: true, request_id: 'in-flight' });
      expect(await sidecar.stop()).toBe(0);
      expect(sidecar.logs.map((l) => l.msg)).toContain('stopped');
    } finally {
      redis.resume();
      client.close();
      health.close();
      await sidecar.stop();
    }
  });

  it('on SIGTERM cuts a stream its client never ends once shutdown_grace has passed, and exits 0', async () => {
    const sidecar = await startSidecar(`server:\n  shutdown_grace: 1s\nresources:\n  - { name: api, limits: [{ name: l, algorithm: fixed_window, rate: 100/1m }] }\n`);
    const client = connect(sidecar.address);
    try {
      const call = client.stream();
      const answered = new Promise((resolve) => call.once('data', resolve));
      const cut = new Promise<{ code: number }>((resolve) => call.on('error', resolve));
      call.write({ resource: 'api', request_id: 'held' });
      await answered;
      const started = Date.now();
      sidecar.child.kill('SIGTERM');
      expect(await sidecar.stop()).toBe(0);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect([status.CANCELLED, status.UNAVAILABLE]).toContain((await cut).code);
    } finally {
      client.close();
    }
  });

  it('stops reading a stream whose client does not read its answers, and serves it all once it does', async () => {
    const sidecar = await startSidecar(`resources:\n  - { name: api, limits: [{ name: l, algorithm: fixed_window, rate: 1000000/1m }] }\n`);
    // A raw HTTP/2 client: unlike grpc-js, it really stops taking data when paused.
    const session = http2.connect(`http://${sidecar.address}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/sluice.v1.RateLimiter/AcquireStream', 'content-type': 'application/grpc', te: 'trailers' });
      stream.pause();
      const total = 40_000;
      // AcquireRequest{resource: "api"} (field 1), as a gRPC message frame, many times over.
      const message = Buffer.from([0x0a, 0x03, 0x61, 0x70, 0x69]);
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
      stream.write(Buffer.concat(Array.from({ length: total }, () => frame)));
      let last = -1;
      await waitFor(async () => {
        const decided = await metric(sidecar, 'sluice_decisions_total');
        const stable = decided === last && decided > 0;
        last = decided;
        if (!stable) await new Promise((resolve) => setTimeout(resolve, 250));
        return stable;
      });
      // It decided what flow control let through, then stopped reading: a bounded amount.
      expect(last).toBeLessThan(total / 2);
      let bytes = 0;
      const answeredAll = waitFor(async () => (await metric(sidecar, 'sluice_decisions_total')) === total);
      stream.on('data', (chunk: Buffer) => (bytes += chunk.length));
      stream.resume();
      await answeredAll;
      expect(bytes).toBeGreaterThan(total * 10);
      stream.close();
    } finally {
      session.close();
      await sidecar.stop();
    }
  });

  it('decides by on_store_failure, not a hang or a crash, when Redis is gone', async () => {
    const lonely = await startRedis();
    const sidecar = await startSidecar(
      `
store:
  timeout: 100ms
resources:
  - name: open
    on_store_failure: open
    limits: [{ name: daily, algorithm: fixed_window, rate: 100/1d }]
  - name: closed
    on_store_failure: closed
    limits: [{ name: daily, algorithm: fixed_window, rate: 100/1d }]
`,
      { SLUICE_REDIS_URL: lonely.url },
    );
    const client = connect(sidecar.address);
    try {
      expect((await client.acquire({ resource: 'open' })).decided_by).toBe('STORE');
      await lonely.stop();
      const open = await client.acquire({ resource: 'open' });
      expect(open).toMatchObject({ granted: true, decided_by: 'FAIL_OPEN', permit_id: '' });
      const closed = await client.acquire({ resource: 'closed' });
      expect(closed).toMatchObject({ granted: false, decided_by: 'FAIL_CLOSED' });
      expect(ms(closed.retry_after)).toBeGreaterThan(0);
      expect(closed.reason).toMatch(/store unavailable/);
      expect(sidecar.child.exitCode).toBeNull();
      // Five failures in a row open the circuit: then /storez and the readiness text tell the
      // truth, and decisions no longer go to the store at all. The sidecar stays ready: it answers.
      for (let i = 0; i < 3; i++) await client.acquire({ resource: 'closed' });
      expect((await fetch(`http://${sidecar.admin}/storez`)).status).toBe(503);
      const ready = await fetch(`http://${sidecar.admin}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.text()).toMatch(/store down/);
      expect(await metric(sidecar, 'sluice_store_up')).toBe(0);
      expect((await client.acquire({ resource: 'open' })).decided_by).toBe('FAIL_OPEN');
      const metrics = await (await fetch(`http://${sidecar.admin}/metrics`)).text();
      expect(metrics).toMatch(/^sluice_store_failures_total\{reason="circuit_open"\} [1-9]/m);
    } finally {
      client.close();
      await sidecar.stop();
    }
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

