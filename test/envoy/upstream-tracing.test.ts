// Tracing, as envoyproxy/ratelimit traces (its TestServiceTracer and TestRedisTracer, through the
// built sidecar): a "ShouldRateLimit Execution" span per call, parented on the traceparent Envoy
// sends, with a child span per store call ("Redis Pipeline Execution" on Redis), exported over
// OTLP to a collector run by the test. Spans are exported in the order they end, one batch at a
// time: once a later call's span has arrived, every span of the calls before it has too.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.js';
import { startRedis, type RedisProcess } from '../support/redis-server.js';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { SPAN_KIND, STATUS_CODE, startOtlpGrpcReceiver, startOtlpReceiver, traceparent, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';
import { configDir, waitForLog } from './support.js';
import { BACKENDS, policyOf, type Backend } from './upstream.js';

const FILES = {
  'traced.yaml': `
domain: traced
descriptors:
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 100 }
  - key: hello
`,
};

const SHOULD_RATE_LIMIT = 'ShouldRateLimit Execution';
const REDIS_PIPELINE = 'Redis Pipeline Execution';
const MEMORY_STORE = 'Memory Store Execution';

/** Exports soon after a span ends, so that tests wait for spans, not for a 5 s batch. */
const PROMPT_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '20' };

function tracingSection(lines: string[]): string {
  return ['tracing:', '  enabled: true', ...lines.map((line) => `  ${line}`), ''].join('\n');
}

/** Every span received, once those of every call made so far have arrived: a marker call's span is last. */
async function allExported(receiver: OtlpReceiver, client: EnvoyClient): Promise<ReceivedSpan[]> {
  const marker = traceparent();
  await client.shouldRateLimit('traced', [desc('hello', 'marker')], 0, { traceparent: marker.header });
  while (!receiver.spans.some((span) => span.traceId === marker.traceId)) await receiver.waitForSpans(receiver.spans.length + 1);
  return receiver.spans;
}

/** The spans of one trace, once every span of the calls made so far has arrived. */
async function spansOf(receiver: OtlpReceiver, client: EnvoyClient, traceId: string): Promise<ReceivedSpan[]> {
  return (await allExported(receiver, client)).filter((span) => span.traceId === traceId);
}

interface Traced {
  receiver: OtlpReceiver;
  sidecar: SidecarProcess;
  client: EnvoyClient;
  redis: RedisProcess | null;
}

/** A sidecar serving FILES on `backend` with `tracing` lines, exporting to a collector of the test's. */
function useTraced(backend: Backend, tracing: (receiver: OtlpReceiver) => string[], env: Record<string, string> = PROMPT_EXPORT): Traced {
  const world = {} as Traced;
  beforeAll(async () => {
    world.receiver = await startOtlpReceiver();
    world.redis = backend.redis ? await startRedis() : null;
    const policy = policyOf(configDir(FILES), backend) + tracingSection(tracing(world.receiver));
    world.sidecar = await startSidecar(policy, { ...env, ...(world.redis ? { SLUICE_REDIS_URL: world.redis.url } : {}) });
    world.client = connectEnvoy(world.sidecar.address);
  });
  afterAll(async () => {
    world.client?.close();
    await world.sidecar?.stop();
    await world.redis?.stop();
    await world.receiver?.close();
  });
  return world;
}

describe.each(BACKENDS)('tracing ShouldRateLimit, on $name', (backend) => {
  const world = useTraced(backend, (receiver) => [`endpoint: ${receiver.url}`, 'service_namespace: edge', 'service_instance_id: pod-1']);

  it('TestServiceTracer', async () => {
    const { traceId, parentId, header } = traceparent();
    const response = await world.client.shouldRateLimit('traced', [desc('hello', 'world')], 0, { traceparent: header });
    expect(response.overall_code).toBe('OK');

    const spans = await spansOf(world.receiver, world.client, traceId);
    // No limit applies to hello=world: the store is not asked, and the call is the only span.
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({
      name: SHOULD_RATE_LIMIT,
      parentSpanId: parentId,
      kind: SPAN_KIND.SERVER,
      attributes: { domain: 'traced', descriptors: 1, overall_code: 'OK', 'rpc.grpc.status_code': 0 },
      resource: { 'service.name': 'sluice', 'service.namespace': 'edge', 'service.instance.id': 'pod-1' },
    });
  });

  it('a call with no trace context starts its own trace', async () => {
    const before = world.receiver.spans.length;
    await world.client.shouldRateLimit('traced', [desc('hello', 'untraced')]);
    const roots = (await allExported(world.receiver, world.client)).slice(before).filter((span) => span.parentSpanId === '');
    expect(roots).toHaveLength(1);
    expect(roots[0]).toMatchObject({ name: SHOULD_RATE_LIMIT, attributes: { domain: 'traced' } });
    expect(roots[0]!.traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it('a call refused for its input ends its span with the error', async () => {
    const { traceId, header } = traceparent();
    await expect(world.client.shouldRateLimit('traced', [], 0, { traceparent: header })).rejects.toMatchObject({ code: 3 });
    const [span] = await spansOf(world.receiver, world.client, traceId);
    expect(span).toMatchObject({
      name: SHOULD_RATE_LIMIT,
      attributes: { 'rpc.grpc.status_code': 3 },
      status: { code: STATUS_CODE.ERROR, message: 'descriptors: must not be empty' },
    });
  });

  if (backend.redis) {
    it('TestRedisTracer', async () => {
      const { traceId, header } = traceparent();
      await world.client.shouldRateLimit('traced', [desc('user', 'ann')], 0, { traceparent: header });
      const spans = await spansOf(world.receiver, world.client, traceId);
      const call = spans.find((span) => span.name === SHOULD_RATE_LIMIT)!;
      const store = spans.filter((span) => span.name !== SHOULD_RATE_LIMIT);
      expect(store).toHaveLength(1);
      expect(store[0]).toMatchObject({ name: REDIS_PIPELINE, parentSpanId: call.spanId, kind: SPAN_KIND.CLIENT, attributes: { 'sluice.store.call': 'acquire' } });
    });
  } else {
    it('the memory store’s part of a call is a span of its own', async () => {
      const { traceId, header } = traceparent();
      await world.client.shouldRateLimit('traced', [desc('user', 'ann')], 0, { traceparent: header });
      const spans = await spansOf(world.receiver, world.client, traceId);
      const call = spans.find((span) => span.name === SHOULD_RATE_LIMIT)!;
      expect(spans.filter((span) => span !== call)).toMatchObject([{ name: MEMORY_STORE, parentSpanId: call.spanId, attributes: { 'sluice.store.call': 'acquire' } }]);
    });
  }
});

describe('sampling_rate 0', () => {
  const world = useTraced(BACKENDS[0]!, (receiver) => [`endpoint: ${receiver.url}`, 'sampling_rate: 0']);

  it('exports no trace that starts here, nor one Envoy did not sample; one Envoy sampled is followed', async () => {
    await world.client.shouldRateLimit('traced', [desc('user', 'bob')]);
    await world.client.shouldRateLimit('traced', [desc('user', 'bob')], 0, { traceparent: traceparent(false).header });
    const sampled = traceparent(true);
    await world.client.shouldRateLimit('traced', [desc('user', 'bob')], 0, { traceparent: sampled.header });
    await world.receiver.waitForSpans(2);
    // The sampled call's spans are the last to end, so every span there is to see has arrived.
    expect(world.receiver.spans.map((span) => [span.name, span.traceId])).toEqual([
      [MEMORY_STORE, sampled.traceId],
      [SHOULD_RATE_LIMIT, sampled.traceId],
    ]);
  });
});

describe('B3 headers (Envoy’s Zipkin tracer)', () => {
  const world = useTraced(BACKENDS[0]!, (receiver) => [`endpoint: ${receiver.url}`]);

  it('parent the span as a traceparent does', async () => {
    const traceId = randomBytes(16).toString('hex');
    const parentId = randomBytes(8).toString('hex');
    await world.client.shouldRateLimit('traced', [desc('hello', 'b3')], 0, { 'x-b3-traceid': traceId, 'x-b3-spanid': parentId, 'x-b3-sampled': '1' });
    const [span] = await spansOf(world.receiver, world.client, traceId);
    expect(span).toMatchObject({ name: SHOULD_RATE_LIMIT, parentSpanId: parentId });
  });
});

describe('exporter: grpc', () => {
  let receiver: OtlpReceiver;
  let sidecar: SidecarProcess;
  let client: EnvoyClient;
  beforeAll(async () => {
    receiver = await startOtlpGrpcReceiver();
    sidecar = await startSidecar(policyOf(configDir(FILES), BACKENDS[0]!) + tracingSection(['exporter: grpc', `endpoint: ${receiver.url}`]), PROMPT_EXPORT);
    client = connectEnvoy(sidecar.address);
  });
  afterAll(async () => {
    client?.close();
    await sidecar?.stop();
    await receiver?.close();
  });

  it('exports the same spans over OTLP/gRPC', async () => {
    const { traceId, header } = traceparent();
    await client.shouldRateLimit('traced', [desc('user', 'cy')], 0, { traceparent: header });
    const spans = await spansOf(receiver, client, traceId);
    expect(spans.map((span) => span.name)).toEqual([MEMORY_STORE, SHOULD_RATE_LIMIT]);
  });
});

describe('the collector', () => {
  it('is told the last spans at shutdown, batched or not', async () => {
    const receiver = await startOtlpReceiver();
    // A batch an hour away: only the shutdown sends it.
    const sidecar = await startSidecar(policyOf(configDir(FILES), BACKENDS[0]!) + tracingSection([`endpoint: ${receiver.url}`]), { OTEL_BSP_SCHEDULE_DELAY: '3600000' });
    const client = connectEnvoy(sidecar.address);
    const { traceId, header } = traceparent();
    await client.shouldRateLimit('traced', [desc('hello', 'last')], 0, { traceparent: header });
    client.close();
    expect(receiver.requests).toBe(0);
    expect(await sidecar.stop()).toBe(0);
    expect(receiver.spans.filter((span) => span.traceId === traceId).map((span) => span.name)).toEqual([SHOULD_RATE_LIMIT]);
    await receiver.close();
  });

  it('being down changes no answer: spans are dropped, the failure logged', async () => {
    const deadPort = await freePort();
    const sidecar = await startSidecar(policyOf(configDir(FILES), BACKENDS[0]!) + tracingSection([`endpoint: http://127.0.0.1:${deadPort}/v1/traces`]), {
      ...PROMPT_EXPORT,
      OTEL_BSP_MAX_QUEUE_SIZE: '64',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '16',
    });
    const client = connectEnvoy(sidecar.address);
    const since = sidecar.logs.length;
    // 150 calls against 100 an hour: the first 100 pass, the rest are over, exactly as untraced.
    const codes: string[] = [];
    for (let i = 0; i < 150; i++) codes.push((await client.shouldRateLimit('traced', [desc('user', 'dee')], 0, { traceparent: traceparent().header })).overall_code);
    expect(codes.filter((code) => code === 'OK')).toHaveLength(100);
    expect(codes.slice(100)).toEqual(Array(50).fill('OVER_LIMIT'));
    const warned = await waitForLog(sidecar, 'tracing: could not export spans; they are dropped', since);
    expect(String(warned.err)).toMatch(/ECONNREFUSED|connect/);
    client.close();
    expect(await sidecar.stop()).toBe(0);
  });
});

describe('tracing off (the default)', () => {
  it('exports nothing, whatever the OTEL_* variables and the calls’ trace context say', async () => {
    const receiver = await startOtlpReceiver();
    const sidecar = await startSidecar(policyOf(configDir(FILES), BACKENDS[0]!), {
      ...PROMPT_EXPORT,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url.replace('/v1/traces', ''),
    });
    const client = connectEnvoy(sidecar.address);
    for (let i = 0; i < 5; i++) expect((await client.shouldRateLimit('traced', [desc('user', 'eve')], 0, { traceparent: traceparent().header })).overall_code).toBe('OK');
    client.close();
    // A sidecar that traced would have exported its spans by the time it exits (see above).
    expect(await sidecar.stop()).toBe(0);
    expect(receiver.requests).toBe(0);
    expect(sidecar.logs.some((line) => String(line.msg).startsWith('tracing:'))).toBe(false);
    await receiver.close();
  });
});
