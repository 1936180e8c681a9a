// The Envoy config from an xDS management server (envoy.xds; upstream's CONFIG_TYPE=GRPC_XDS_SOTW):
// the built sidecar against a small ADS server written here (xds-server.ts). Cases derived from
// upstream's test/integration/xds_sotw_integration_test.go run on every backend with upstream's
// resources and answers; the rest attack the client: bad resources are NACKed and the served
// config stays, the server goes away and comes back, responses too big or not protobuf at all.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ServerCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { makeTlsFiles, type TlsFiles } from '../support/tls.js';
import { connectEnvoy, desc, type EnvoyClient } from './client.js';
import { healthOf, waitForLog, watchHealth } from './support.js';
import { onEveryBackend, statusLine as line } from './upstream.js';
import { basicConfigAnswers } from './upstream-basic-config.js';
import { startXdsServer, type RateLimitConfigObject, type XdsServer } from './xds-server.js';
import { RATE_LIMIT_CONFIG_TYPE } from '../../src/envoy/xds-config.js';

const ENVOY_SERVICE = 'envoy.service.ratelimit.v3.RateLimitService';
const NODE = 'init-test-node';

const limit = (key: string, unit: string, requests_per_unit: number) => ({ key, rate_limit: { unit, requests_per_unit } });

/** Upstream's initialXdsBasicConfig. */
const BASIC: RateLimitConfigObject[] = [
  { name: 'basic', domain: 'basic', descriptors: [limit('key1', 'SECOND', 50), limit('key1_local', 'SECOND', 50), limit('one_per_minute', 'MINUTE', 1)] },
  {
    name: 'another',
    domain: 'another',
    descriptors: [
      limit('key2', 'MINUTE', 20),
      limit('key3', 'HOUR', 10),
      limit('key2_local', 'MINUTE', 20),
      limit('key3_local', 'HOUR', 10),
      limit('key4', 'DAY', 20),
      limit('key4_local', 'DAY', 20),
    ],
  },
];

/** What upstream's newConfigWithXdsConfigProvider adds. */
const RELOAD: RateLimitConfigObject = {
  name: 'reload',
  domain: 'reload',
  descriptors: [limit('key1', 'SECOND', 50), limit('block', 'SECOND', 0), limit('one_per_minute', 'MINUTE', 1)],
};

/** The envoy: lines of a sidecar served by `server` (quick reconnects: the tests stop servers). */
function xdsLines(server: XdsServer, extra: string[] = []): string[] {
  return ['xds:', `  server: 127.0.0.1:${server.port}`, `  node_id: ${NODE}`, '  retry: { initial: 100ms, max: 1s }', ...extra.map((l) => `  ${l}`)];
}

const isAck = (version: string) => (r: { version_info: string; response_nonce: string; error_detail: unknown }) =>
  r.version_info === version && r.response_nonce !== '' && r.error_detail === null;

describe('upstream test/integration/xds_sotw_integration_test.go', () => {
  let server: XdsServer;
  beforeAll(async () => {
    server = await startXdsServer();
    server.setSnapshot('1', BASIC);
  });
  afterAll(() => server.stop());

  onEveryBackend('from an xDS management server', null, { sidecar: () => xdsLines(server) }, (world) => {
    const client = () => world.served('sidecar').client;

    it('TestXdsProviderBasicConfig/WithoutPerSecondRedis', async () => {
      expect(await waitForLog(world.served('sidecar').sidecar, 'envoy config reloaded', 0)).toMatchObject({ version: '1', domains: ['another', 'basic'] });
      expect(await server.waitForRequest(isAck('1'))).toMatchObject({ type_url: RATE_LIMIT_CONFIG_TYPE, node: { id: NODE } });
      await basicConfigAnswers(client());
    });

    it('TestXdsProviderBasicConfigReload/ReloadConfigWithXdsServer', async () => {
      const { sidecar } = world.served('sidecar');
      expect(await client().shouldRateLimit('reload', [desc('block', 'foo')])).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null }] });

      const before = sidecar.logs.length;
      server.setSnapshot('2', [...BASIC, RELOAD]);
      expect(await waitForLog(sidecar, 'envoy config reloaded', before)).toMatchObject({ version: '2', domains: ['another', 'basic', 'reload'] });
      expect((await client().shouldRateLimit('reload', [desc('key1', 'foo')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);
      expect((await client().shouldRateLimit('reload', [desc('block', 'foo')])).statuses.map(line)).toEqual(['OVER_LIMIT 0/SECOND 0']);

      const restored = sidecar.logs.length;
      server.setSnapshot('3', BASIC);
      expect(await waitForLog(sidecar, 'envoy config reloaded', restored)).toMatchObject({ version: '3', domains: ['another', 'basic'] });
      expect(await client().shouldRateLimit('reload', [desc('block', 'foo')])).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null }] });
      // Back to the first snapshot's resources under the first version, for the next backend.
      server.setSnapshot('1', BASIC);
    });
  });
});

describe('the xDS client of the sidecar', () => {
  let server: XdsServer;
  let sidecar: SidecarProcess | null = null;
  let client: EnvoyClient | null = null;

  /** A sidecar on the memory store served by `server`, with these lines under envoy.xds and under envoy. */
  async function serve(lines: { xds?: string[]; envoy?: string[] } = {}): Promise<{ sidecar: SidecarProcess; client: EnvoyClient }> {
    const envoy = [...xdsLines(server, lines.xds), ...(lines.envoy ?? [])];
    sidecar = await startSidecar(['envoy:', ...envoy.map((l) => `  ${l}`), ''].join('\n'));
    client = connectEnvoy(sidecar.address);
    return { sidecar, client };
  }

  beforeAll(async () => {
    server = await startXdsServer();
  });
  afterEach(async () => {
    client?.close();
    await sidecar?.stop();
    sidecar = client = null;
  });
  afterAll(() => server.stop());

  it('serves no domain until the first config arrives; with require_domains, not serving until then', async () => {
    const version = `first-${Date.now()}`;
    const { sidecar, client } = await serve({ envoy: ['require_domains: true'] });
    expect(await healthOf(sidecar.address, ENVOY_SERVICE)).toBe('NOT_SERVING');
    expect(await client.shouldRateLimit('basic', [desc('key1', 'foo')])).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null }] });

    const health = watchHealth(sidecar.address, ENVOY_SERVICE);
    try {
      server.setSnapshot(version, BASIC);
      await health.until('SERVING');
    } finally {
      health.close();
    }
    expect((await client.shouldRateLimit('basic', [desc('key1', 'first')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);
  });

  it('NACKs a response with a bad resource, naming the problem, and keeps serving the config it has', async () => {
    server.setSnapshot('good', BASIC);
    const { sidecar, client } = await serve();
    await server.waitForRequest(isAck('good'));

    const nacks = server.requests.length;
    const before = sidecar.logs.length;
    const bad: RateLimitConfigObject = { name: 'bad', domain: 'bad', descriptors: [limit('key1', 'UNKNOWN', 5)] };
    server.setSnapshot('bad-unit', [...BASIC, bad]);
    const nack = await server.waitForRequest((r) => r.error_detail !== null, nacks);
    expect(nack.version_info).toBe('good');
    expect(nack.error_detail!.message).toBe(`xDS resource "bad": descriptors[0].rate_limit.unit: invalid rate limit unit 'UNKNOWN'`);
    expect(await waitForLog(sidecar, 'envoy config from xDS refused; still serving the previous config', before)).toMatchObject({ version: 'bad-unit' });
    expect((await client.shouldRateLimit('basic', [desc('key1', 'nack')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);
    expect(await client.shouldRateLimit('bad', [desc('key1', 'nack')])).toMatchObject({ statuses: [{ current_limit: null }] });

    // One domain per resource, as one per file; bytes that are no RateLimitConfig, or another type.
    const twice = server.requests.length;
    server.setSnapshot('twice', [...BASIC, { name: 'basic-again', domain: 'basic', descriptors: [] }]);
    expect((await server.waitForRequest((r) => r.error_detail !== null, twice)).error_detail!.message).toBe(
      `xDS resource "basic-again": domain: duplicate domain 'basic' (also in xDS resource "basic"): one resource per domain, unless merge_domains is on`,
    );
    const garbage = server.requests.length;
    server.setSnapshot('garbage', [...BASIC, { type_url: RATE_LIMIT_CONFIG_TYPE, value: Buffer.from([0x0a, 0xff, 0xff]) }, { type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', value: Buffer.alloc(0) }]);
    const problems = (await server.waitForRequest((r) => r.error_detail !== null, garbage)).error_detail!.message.split('\n');
    expect(problems).toEqual([
      expect.stringMatching(/^resource \[2\]: not a RateLimitConfig: /),
      `resource [3]: expected type ${RATE_LIMIT_CONFIG_TYPE}, not type.googleapis.com/envoy.config.cluster.v3.Cluster`,
    ]);
    expect((await client.shouldRateLimit('basic', [desc('key1', 'nack')])).statuses.map(line)).toEqual(['OK 50/SECOND 48']);

    // A valid response after them is applied and ACKed.
    const fixed = server.requests.length;
    server.setSnapshot('fixed', [...BASIC, RELOAD]);
    await server.waitForRequest(isAck('fixed'), fixed);
    expect((await client.shouldRateLimit('reload', [desc('block', 'foo')])).statuses.map(line)).toEqual(['OVER_LIMIT 0/SECOND 0']);
  });

  it('reconnects when the management server goes away and comes back, asking with the version it has', async () => {
    server.setSnapshot('before', BASIC);
    const { sidecar, client } = await serve();
    await server.waitForRequest(isAck('before'));

    const logs = sidecar.logs.length;
    await server.stop();
    // The stream is cut (CANCELLED), then attempts fail (UNAVAILABLE) while the server is down.
    const ended = await waitForLog(sidecar, 'xDS stream ended; reconnecting', logs);
    expect(await waitForLog(sidecar, 'xDS stream ended; reconnecting', sidecar.logs.indexOf(ended) + 1)).toMatchObject({ code: 'UNAVAILABLE' });
    expect((await client.shouldRateLimit('basic', [desc('key1', 'away')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);

    const requests = server.requests.length;
    server.setSnapshot('after', [...BASIC, RELOAD]);
    await server.start();
    const again = await server.waitForRequest((r) => r.response_nonce === '', requests);
    expect(again.version_info).toBe('before');
    await server.waitForRequest(isAck('after'), requests);
    expect((await client.shouldRateLimit('reload', [desc('block', 'foo')])).statuses.map(line)).toEqual(['OVER_LIMIT 0/SECOND 0']);
  });

  it('a response past max_message_size, or not a DiscoveryResponse, ends the stream; the sidecar keeps serving and reconnects', async () => {
    server.setSnapshot('small', BASIC);
    const { sidecar, client } = await serve({ xds: ['max_message_size: 2048'] });
    await server.waitForRequest(isAck('small'));

    const logs = sidecar.logs.length;
    const huge: RateLimitConfigObject = { name: 'huge', domain: 'huge', descriptors: [{ key: 'k', value: 'v'.repeat(4096), rate_limit: { unit: 'SECOND', requests_per_unit: 1 } }] };
    server.setSnapshot('huge', [...BASIC, huge]);
    expect(await waitForLog(sidecar, 'xDS stream ended; reconnecting', logs)).toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    expect((await client.shouldRateLimit('basic', [desc('key1', 'huge')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);
    expect(await client.shouldRateLimit('huge', [desc('k', 'v'.repeat(200))])).toMatchObject({ statuses: [{ current_limit: null }] });

    server.setSnapshot('raw', BASIC);
    await server.waitForRequest(isAck('raw'));
    const raw = sidecar.logs.length;
    server.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    expect(await waitForLog(sidecar, 'xDS stream ended; reconnecting', raw)).toMatchObject({ code: 'INTERNAL' });
    const requests = server.requests.length;
    server.setSnapshot('recovered', [...BASIC, RELOAD]);
    await server.waitForRequest(isAck('recovered'), requests);
    expect((await client.shouldRateLimit('reload', [desc('block', 'foo')])).statuses.map(line)).toEqual(['OVER_LIMIT 0/SECOND 0']);
  });

  it('sends node_metadata with the node, and headers with the stream', async () => {
    server.setSnapshot('meta', BASIC);
    const after = server.requests.length;
    await serve({ xds: ['node_metadata: { cluster: edge, zone: a }', 'headers: { authorization: Bearer t0ken }'] });
    const ack = await server.waitForRequest(isAck('meta'), after);
    expect(ack.node).toEqual({ id: NODE, metadata: { cluster: 'edge', zone: 'a' } });
    expect(ack.headers).toMatchObject({ authorization: 'Bearer t0ken' });
  });
});

describe('envoy.upstream_env with CONFIG_TYPE=GRPC_XDS_SOTW', () => {
  let server: XdsServer;
  let tls: TlsFiles;
  beforeAll(async () => {
    tls = await makeTlsFiles();
    const credentials = ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }], false);
    server = await startXdsServer({ credentials });
    server.setSnapshot('1', BASIC);
  });
  afterAll(async () => {
    await server.stop();
    tls.remove();
  });

  it('asks the management server of CONFIG_GRPC_XDS_SERVER_URL over TLS, as node CONFIG_GRPC_XDS_NODE_ID with its metadata and headers', async () => {
    const sidecar = await startSidecar('envoy:\n  upstream_env: true\n', {
      CONFIG_TYPE: 'GRPC_XDS_SOTW',
      CONFIG_GRPC_XDS_SERVER_URL: `127.0.0.1:${server.port}`,
      CONFIG_GRPC_XDS_NODE_ID: 'from-env',
      CONFIG_GRPC_XDS_NODE_METADATA: 'team=payments,zone=b',
      CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS: 'x-token:abc',
      CONFIG_GRPC_XDS_SERVER_USE_TLS: 'true',
      CONFIG_GRPC_XDS_SERVER_TLS_CACERT: tls.caFile,
      CONFIG_GRPC_XDS_SERVER_TLS_SAN: 'localhost',
      XDS_CLIENT_BACKOFF_INITIAL_INTERVAL: '100ms',
    });
    const client = connectEnvoy(sidecar.address);
    try {
      const ack = await server.waitForRequest(isAck('1'));
      expect(ack.node).toEqual({ id: 'from-env', metadata: { team: 'payments', zone: 'b' } });
      expect(ack.headers).toMatchObject({ 'x-token': 'abc' });
      await waitForLog(sidecar, 'envoy config reloaded', 0);
      expect((await client.shouldRateLimit('basic', [desc('key1', 'env')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);
    } finally {
      client.close();
      await sidecar.stop();
    }
  });
});
