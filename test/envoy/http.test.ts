// envoyproxy/ratelimit's HTTP port (envoy.http_listen) on the built sidecar: POST /json answers as
// ShouldRateLimit over gRPC does, in protobuf's JSON mapping, on the same budgets and within the
// same max_in_flight; bad bodies, methods and paths get upstream's codes with what is wrong;
// bodies are bounded in size, in bytes held at once and in time; GET /healthcheck follows the
// gRPC health of `ratelimit` (require_domains, shutdown).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_HELD_BYTES, MAX_JSON_BYTES } from '../../src/grpc/envoy-http.js';
import { waitFor } from '../support/redis-server.js';
import { metric, startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { closesIn } from '../support/sockets.js';
import { useRedis } from '../support/use-redis.js';
import { connectEnvoy, desc, type EnvoyClient, type WireDescriptor, type WireResponse } from './client.js';
import { configDir, grpcError, watchHealth } from './support.js';
import { inOneWindow } from './upstream.js';

const API = `
domain: api
descriptors:
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 3, name: per-user }
  - key: plan
    value: free
    rate_limit: { unlimited: true }
  - key: burst
    rate_limit: { unit: hour, requests_per_unit: 50 }
`;

interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on its own connection; `declaredBytes` sends that content-length with a shorter body. */
function call(address: string, method: string, path: string, options: { body?: string | Buffer; declaredBytes?: number } = {}): Promise<HttpAnswer> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: address.slice(0, colon),
        port: Number(address.slice(colon + 1)),
        method,
        path,
        agent: false,
        headers: options.declaredBytes === undefined ? {} : { 'content-length': options.declaredBytes },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
          if (options.declaredBytes !== undefined) req.destroy();
        });
      },
    );
    req.on('error', reject);
    if (options.declaredBytes === undefined) req.end(options.body);
    else req.write(options.body ?? '');
  });
}

const httpOf = (sidecar: SidecarProcess): string => sidecar.listening.http as string;

const postJson = (sidecar: SidecarProcess, body: unknown): Promise<HttpAnswer> => call(httpOf(sidecar), 'POST', '/json', { body: typeof body === 'string' ? body : JSON.stringify(body) });

/** A RateLimitRequest as JSON, from wire-shaped descriptors. */
function jsonRequest(domain: string, descriptors: WireDescriptor[]): unknown {
  return { domain, descriptors: descriptors.map((d) => ({ entries: d.entries })) };
}

/**
 * A gRPC answer as protobuf's JSON mapping writes it (written out here, apart from sluice's own
 * writer): JSON names, enums by name, durations as "Ns", defaults left out.
 */
function asJson(res: WireResponse): unknown {
  const json = {
    overallCode: res.overall_code,
    statuses: res.statuses.map((s) => ({
      code: s.code,
      currentLimit: s.current_limit ? { name: s.current_limit.name || undefined, requestsPerUnit: s.current_limit.requests_per_unit || undefined, unit: s.current_limit.unit } : undefined,
      limitRemaining: s.limit_remaining || undefined,
      durationUntilReset: s.duration_until_reset ? `${s.duration_until_reset.seconds}s` : undefined,
    })),
    responseHeadersToAdd: res.response_headers_to_add.length > 0 ? res.response_headers_to_add.map(({ key, value }) => ({ key, value })) : undefined,
  };
  return JSON.parse(JSON.stringify(json));
}

/**
 * The answer with its seconds until the window ends (they move with the clock between two calls)
 * checked for their form and set aside.
 */
function timeless(json: any): unknown {
  for (const s of json.statuses ?? []) {
    if (s.durationUntilReset === undefined) continue;
    expect(s.durationUntilReset).toMatch(/^\d+s$/);
    s.durationUntilReset = 'seconds';
  }
  for (const h of json.responseHeadersToAdd ?? []) if (h.key === 'RateLimit-Reset') h.value = 'seconds';
  return json;
}

const world = useRedis();

describe('POST /json', () => {
  let sidecar: SidecarProcess;
  let grpc: EnvoyClient;

  beforeAll(async () => {
    sidecar = await startSidecar(`envoy:\n  config_dir: ${configDir({ 'api.yaml': API })}\n  http_listen: 127.0.0.1:0\n  response_headers: true\n`);
    grpc = connectEnvoy(sidecar.address);
  });
  afterAll(async () => {
    grpc?.close();
    await sidecar?.stop();
  });

  it('listens where envoy.http_listen says, and says so when it starts', () => {
    expect(httpOf(sidecar)).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('answers what ShouldRateLimit answers over gRPC, in protobuf JSON: 200 within the limit, 429 over it', async () => {
    await inOneWindow('HOUR', 20_000);
    const answers = [];
    for (let i = 0; i < 4; i++) {
      // The same rules for each transport, on a value of its own: the same budgets, fresh.
      const viaGrpc = await grpc.shouldRateLimit('api', [desc('user', 'g'), desc('plan', 'free'), desc('other', 'x')]);
      const viaHttp = await postJson(sidecar, jsonRequest('api', [desc('user', 'h'), desc('plan', 'free'), desc('other', 'x')]));
      expect(viaHttp.status).toBe(viaGrpc.overall_code === 'OVER_LIMIT' ? 429 : 200);
      expect(viaHttp.headers['content-type']).toBe('application/json');
      expect(timeless(JSON.parse(viaHttp.body))).toEqual(timeless(asJson(viaGrpc)));
      answers.push(viaHttp);
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 429]);
    // Written as upstream's protojson writes it: no zero, no unset field, enums by name.
    expect(timeless(JSON.parse(answers[3]!.body))).toEqual({
      overallCode: 'OVER_LIMIT',
      statuses: [
        { code: 'OVER_LIMIT', currentLimit: { name: 'per-user', requestsPerUnit: 3, unit: 'HOUR' }, durationUntilReset: 'seconds' },
        { code: 'OK', limitRemaining: 4294967295 },
        { code: 'OK' },
      ],
      responseHeadersToAdd: [
        { key: 'RateLimit-Limit', value: '3' },
        { key: 'RateLimit-Remaining', value: '0' },
        { key: 'RateLimit-Reset', value: 'seconds' },
      ],
    });
  });

  it('shares budgets with gRPC: each transport’s grant is the other’s less', async () => {
    const remaining = [];
    for (let i = 0; i < 3; i++) {
      if (i % 2 === 0) remaining.push((await grpc.shouldRateLimit('api', [desc('user', 'shared')])).statuses[0]!.limit_remaining);
      else remaining.push(JSON.parse((await postJson(sidecar, jsonRequest('api', [desc('user', 'shared')]))).body).statuses[0].limitRemaining ?? 0);
    }
    expect(remaining).toEqual([2, 1, 0]);
  });

  it('reads both field name forms, whole numbers as strings, enums by name or number, and hits_addend as the number it wraps', async () => {
    const remainingOf = async (body: unknown) => {
      const answer = await postJson(sidecar, body);
      expect(answer.status).toBe(200);
      return JSON.parse(answer.body).statuses[0];
    };
    const entries = (value: string) => [{ key: 'user', value }];
    expect(await remainingOf({ domain: 'api', hitsAddend: 2, descriptors: [{ entries: entries('camel') }] })).toMatchObject({ limitRemaining: 1 });
    expect(await remainingOf({ domain: 'api', hits_addend: '2', descriptors: [{ entries: entries('snake') }] })).toMatchObject({ limitRemaining: 1 });
    // A descriptor's own hits_addend (google.protobuf.UInt64Value) wins over the request's; a present 0 only checks.
    expect(await remainingOf({ domain: 'api', hits_addend: 1, descriptors: [{ entries: entries('own'), hitsAddend: '2' }] })).toMatchObject({ limitRemaining: 1 });
    expect(await remainingOf({ domain: 'api', descriptors: [{ entries: entries('own'), hits_addend: 0 }] })).toMatchObject({ code: 'OK', limitRemaining: 1 });
    // A limit override: requestsPerUnit or requests_per_unit, the unit by name or by number (3: HOUR).
    const override = { requestsPerUnit: '10', unit: 3 };
    expect(await remainingOf({ domain: 'api', descriptors: [{ entries: entries('o'), limit: override }] })).toEqual({
      code: 'OK',
      currentLimit: { requestsPerUnit: 10, unit: 'HOUR' },
      limitRemaining: 9,
      durationUntilReset: expect.stringMatching(/^\d+s$/),
    });
    expect(await remainingOf({ domain: 'api', descriptors: [{ entries: entries('o'), limit: { requests_per_unit: 10, unit: 'HOUR' } }], hitsAddend: null })).toMatchObject({ limitRemaining: 8 });
  });

  it('refuses a body that is not a RateLimitRequest in JSON with 400 and what is wrong, charging nothing', async () => {
    const x = { entries: [{ key: 'user', value: 'refused' }] };
    const cases: [string | Buffer, string][] = [
      ['', 'request body: not JSON (Unexpected end of JSON input)'],
      ['}', 'request body: not JSON'],
      ['[]', 'request: expected a JSON object (RateLimitRequest), not []'],
      [JSON.stringify({ domain: 5, descriptors: [x] }), 'domain: expected a JSON string, not 5'],
      [JSON.stringify({ domain: 'api', descriptors: [x], extra: 1 }), 'extra: unknown field of RateLimitRequest'],
      [JSON.stringify({ domain: 'api', descriptors: [x], hitsAddend: 1, hits_addend: 2 }), 'hits_addend: hits_addend is given twice'],
      [JSON.stringify({ domain: 'api', descriptors: [x], hitsAddend: 1.5 }), 'hitsAddend: expected a whole number from 0 to 4294967295 (uint32)'],
      [JSON.stringify({ domain: 'api', descriptors: [{ ...x, hitsAddend: -1 }] }), 'descriptors[0].hitsAddend: expected a whole number from 0 to 18446744073709551615 (uint64)'],
      [JSON.stringify({ domain: 'api', descriptors: [{ ...x, limit: { requestsPerUnit: 1, unit: 'FORTNIGHT' } }] }), 'descriptors[0].limit.unit: expected one of UNKNOWN, SECOND'],
      [JSON.stringify({ domain: 'api', descriptors: x }), 'descriptors: expected a JSON array'],
      ['{"domain": "api", "descriptors": [{"entries": [{"key": "user", "value": "\\ud800"}]}]}', 'descriptors[0].entries[0].value: not valid Unicode (a lone surrogate)'],
      [Buffer.from([0x7b, 0xff, 0x7d]), 'request body: not UTF-8'],
    ];
    for (const [body, message] of cases) {
      const answer = await call(httpOf(sidecar), 'POST', '/json', { body });
      expect({ message, status: answer.status, type: answer.headers['content-type'] }).toEqual({ message, status: 400, type: 'text/plain; charset=utf-8' });
      expect(answer.body).toContain(`Bad Request: ${message}`);
      expect(answer.body.endsWith('\n')).toBe(true);
    }
    expect((await grpc.shouldRateLimit('api', [desc('user', 'refused')])).statuses[0]!.limit_remaining).toBe(2);
  });

  it('checks a request as gRPC checks it: the same refusals, in the same words', async () => {
    const entry = (key: string, value: string) => ({ entries: [{ key, value }] });
    const requests: { domain: string; descriptors: WireDescriptor[] }[] = [
      { domain: '', descriptors: [desc('user', 'a')] },
      { domain: 'api', descriptors: [] },
      { domain: 'api', descriptors: [{ entries: [] }] },
      { domain: 'api', descriptors: [entry('', 'a')] },
      { domain: 'api', descriptors: Array.from({ length: 65 }, () => desc('user', 'a')) },
      { domain: 'api', descriptors: [entry('user', 'v'.repeat(4097))] },
      { domain: 'api', descriptors: [{ ...desc('user', 'a'), limit: { requests_per_unit: 1, unit: 'UNKNOWN' } }] },
      { domain: 'api', descriptors: [{ ...desc('user', 'a'), hits_addend: { value: 2 ** 53 } }] },
    ];
    for (const { domain, descriptors } of requests) {
      const refused = await grpcError(grpc.shouldRateLimit(domain, descriptors));
      expect(refused.code).toBe(status.INVALID_ARGUMENT);
      const json = { domain, descriptors: descriptors.map((d) => ({ entries: d.entries, limit: d.limit, hitsAddend: d.hits_addend?.value })) };
      const answer = await postJson(sidecar, json);
      expect({ status: answer.status, body: answer.body }).toEqual({ status: 400, body: `Bad Request: ${refused.details}\n` });
    }
  });

  it('answers 405 to other methods (with Allow), 404 to other paths, and HEAD /healthcheck without a body', async () => {
    const address = httpOf(sidecar);
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const answer = await call(address, method, '/json');
      expect(answer).toMatchObject({ status: 405, headers: { allow: 'POST' } });
      expect(answer.body).toBe('Method Not Allowed: POST a RateLimitRequest in JSON\n');
    }
    expect(await call(address, 'POST', '/healthcheck', { body: '{}' })).toMatchObject({ status: 405, headers: { allow: 'GET, HEAD' } });
    for (const path of ['/', '/json/', '/healthz', '/rlconfig']) expect(await call(address, 'GET', path)).toEqual(expect.objectContaining({ status: 404, body: '404 page not found\n' }));
    expect(await call(address, 'HEAD', '/healthcheck')).toMatchObject({ status: 200, body: '' });
    // A query string does not change the path.
    expect(await call(address, 'GET', '/healthcheck?verbose=1')).toMatchObject({ status: 200, body: 'OK' });
  });

  it(`decides a body of ${MAX_JSON_BYTES} bytes, and refuses a longer one with 413 from its declared length`, async () => {
    const request = JSON.stringify(jsonRequest('api', [desc('user', 'big')]));
    const atCap = await call(httpOf(sidecar), 'POST', '/json', { body: request + ' '.repeat(MAX_JSON_BYTES - request.length) });
    expect(atCap.status).toBe(200);
    const over = await call(httpOf(sidecar), 'POST', '/json', { body: Buffer.alloc(1024, ' '), declaredBytes: MAX_JSON_BYTES + 1 });
    expect(over).toMatchObject({ status: 413, headers: { connection: 'close' }, body: `Payload Too Large: a request body over ${MAX_JSON_BYTES} bytes\n` });
  });

  it('cuts a client that trickles its body within 12 s, and answers others meanwhile', async () => {
    const start = Date.now();
    const slow = await opened(httpOf(sidecar));
    slow.write('POST /json HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{');
    const timer = setInterval(() => slow.write(' '), 500);
    try {
      const closed = closesIn(slow, start, 14_000);
      expect((await postJson(sidecar, jsonRequest('api', [desc('user', 'meanwhile')]))).status).toBe(200);
      expect(await closed).toBeLessThan(12_000);
    } finally {
      clearInterval(timer);
      slow.destroy();
    }
  });

  it(`holds at most ${MAX_HELD_BYTES} bytes of bodies at once: past it a body is refused with 503 at once, and once they go it is served again`, async () => {
    // Bodies that are never finished, each just short of the cap, filling all but a few hundred bytes.
    const holders = await Promise.all(Array.from({ length: MAX_HELD_BYTES / MAX_JSON_BYTES }, () => opened(httpOf(sidecar))));
    for (const socket of holders) {
      socket.on('error', () => undefined);
      socket.write(`POST /json HTTP/1.1\r\nhost: x\r\ncontent-length: ${MAX_JSON_BYTES}\r\n\r\n`);
      socket.write(Buffer.alloc(MAX_JSON_BYTES - 100, ' '));
    }
    const request = JSON.stringify(jsonRequest('api', [desc('user', 'held')]));
    const probe = () => call(httpOf(sidecar), 'POST', '/json', { body: request + ' '.repeat(4096) });
    try {
      const busy = await waitFor('a 503 while the bodies are held', 8_000, async () => {
        const answer = await probe();
        return answer.status === 503 ? answer : undefined;
      });
      expect(busy).toMatchObject({ headers: { connection: 'close' }, body: 'Service Unavailable: too many request bytes being read at once; try again\n' });
    } finally {
      for (const socket of holders) socket.destroy();
    }
    await waitFor('a 200 once they are gone', 10_000, async () => ((await probe()).status === 200 ? true : undefined));
  });
});

/** A TCP connection to `address` (host:port), once it is open. */
function opened(address: string): Promise<Socket> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connectTcp(Number(address.slice(colon + 1)), address.slice(0, colon), () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('GET /healthcheck', () => {
  const healthcheck = async (sidecar: SidecarProcess) => {
    const { status: code, body } = await call(httpOf(sidecar), 'GET', '/healthcheck');
    return `${code} ${JSON.stringify(body)}`;
  };

  it('follows ratelimit’s gRPC health with require_domains: 500 while no domain is loaded, 200 "OK" once one is, 500 when it goes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-envoy-'));
    const sidecar = await startSidecar(`envoy:\n  config_dir: ${dir}\n  require_domains: true\n  http_listen: 127.0.0.1:0\n`);
    const health = watchHealth(sidecar.address, 'ratelimit');
    try {
      await health.until('NOT_SERVING');
      expect(await healthcheck(sidecar)).toBe('500 ""');
      writeFileSync(join(dir, 'api.yaml'), API);
      await health.until('SERVING');
      expect(await healthcheck(sidecar)).toBe('200 "OK"');
      rmSync(join(dir, 'api.yaml'));
      await health.until('NOT_SERVING');
      expect(await healthcheck(sidecar)).toBe('500 ""');
    } finally {
      health.close();
      await sidecar.stop();
    }
  });

  it('from SIGTERM answers 500, and new /json 503, while it finishes a /json under way; then the sidecar exits 0', async () => {
    const policy = `server:\n  shutdown_grace: 20s\nstore:\n  timeout: 20s\nenvoy:\n  config_dir: ${configDir({ 'api.yaml': API })}\n  http_listen: 127.0.0.1:0\n  lease: { enabled: false }\n`;
    const sidecar = await startSidecar(policy, { SLUICE_REDIS_URL: world.redis.url });
    try {
      expect(await healthcheck(sidecar)).toBe('200 "OK"');
      // A /json that waits on a stalled Redis holds the HTTP port open through the drain.
      world.redis.pause();
      const underway = postJson(sidecar, jsonRequest('api', [desc('user', 'underway')]));
      await waitFor('the /json in flight', 10_000, async () => ((await metric(sidecar, 'sluice_decisions_in_flight')) === 1 ? true : undefined));
      sidecar.child.kill('SIGTERM');
      await waitFor('/healthcheck to fail', 10_000, async () => ((await healthcheck(sidecar)) === '500 ""' ? true : undefined));
      expect(await postJson(sidecar, jsonRequest('api', [desc('user', 'late')]))).toMatchObject({
        status: 503,
        headers: { connection: 'close' },
        body: 'Service Unavailable: the sidecar is shutting down\n',
      });
      world.redis.resume();
      expect((await underway).status).toBe(200);
      expect(await sidecar.stop()).toBe(0);
    } finally {
      world.redis.resume();
      await sidecar.stop();
    }
  });
});

describe('/json and gRPC together', () => {
  /** `count` /json posts and as many gRPC calls on one descriptor, all at once: the codes they get. */
  async function mixed(sidecar: SidecarProcess, count: number): Promise<{ http: number[]; grpc: string[] }> {
    const grpc = connectEnvoy(sidecar.address);
    try {
      const body = jsonRequest('api', [desc('burst', 'together')]);
      const [http, viaGrpc] = await Promise.all([
        Promise.all(Array.from({ length: count }, () => postJson(sidecar, body).then((a) => a.status))),
        Promise.all(Array.from({ length: count }, () => grpc.shouldRateLimit('api', [desc('burst', 'together')]).then((a) => a.overall_code))),
      ]);
      return { http, grpc: viaGrpc };
    } finally {
      grpc.close();
    }
  }

  it('300 /json posts and 300 gRPC calls at once on a budget of 50, on the memory store: 50 granted in all', async () => {
    const sidecar = await startSidecar(`envoy:\n  config_dir: ${configDir({ 'api.yaml': API })}\n  http_listen: 127.0.0.1:0\n`);
    try {
      const { http, grpc } = await mixed(sidecar, 300);
      expect(http.filter((code) => code !== 200 && code !== 429)).toEqual([]);
      expect(grpc.filter((code) => code !== 'OK' && code !== 'OVER_LIMIT')).toEqual([]);
      expect(http.filter((code) => code === 200).length + grpc.filter((code) => code === 'OK').length).toBe(50);
    } finally {
      await sidecar.stop();
    }
  });

  it('the same on Redis with leases: at most 50 granted', async () => {
    const sidecar = await startSidecar(`store:\n  timeout: 5s\nenvoy:\n  config_dir: ${configDir({ 'api.yaml': API })}\n  http_listen: 127.0.0.1:0\n`, {
      SLUICE_REDIS_URL: world.redis.url,
    });
    try {
      const { http, grpc } = await mixed(sidecar, 300);
      expect(http.filter((code) => code !== 200 && code !== 429)).toEqual([]);
      expect(grpc.filter((code) => code !== 'OK' && code !== 'OVER_LIMIT')).toEqual([]);
      const granted = http.filter((code) => code === 200).length + grpc.filter((code) => code === 'OK').length;
      expect(granted).toBeGreaterThan(0);
      expect(granted).toBeLessThanOrEqual(50);
    } finally {
      await sidecar.stop();
    }
  });

  it('one server.max_in_flight for both: past it /json is shed with 503 and gRPC with RESOURCE_EXHAUSTED, and the held ones are then decided', async () => {
    const policy = `server:\n  max_in_flight: 4\nstore:\n  timeout: 20s\nenvoy:\n  config_dir: ${configDir({ 'api.yaml': API })}\n  http_listen: 127.0.0.1:0\n  lease: { enabled: false }\n`;
    const sidecar = await startSidecar(policy, { SLUICE_REDIS_URL: world.redis.url });
    const grpc = connectEnvoy(sidecar.address);
    world.redis.pause();
    try {
      // Two of each wait on the stalled Redis, taking every place.
      const held = [
        ...Array.from({ length: 2 }, (_, i) => postJson(sidecar, jsonRequest('api', [desc('user', `held-http-${i}`)])).then((a) => a.status)),
        ...Array.from({ length: 2 }, (_, i) => grpc.shouldRateLimit('api', [desc('user', `held-grpc-${i}`)]).then((a) => (a.overall_code === 'OK' ? 200 : 0))),
      ];
      await waitFor('4 decisions in flight', 10_000, async () => ((await metric(sidecar, 'sluice_decisions_in_flight')) === 4 ? true : undefined));
      const shed = await postJson(sidecar, jsonRequest('api', [desc('user', 'shed')]));
      expect(shed).toMatchObject({ status: 503, body: 'Service Unavailable: sidecar overloaded: 4 decisions in flight (server.max_in_flight); try again shortly\n' });
      expect((await grpcError(grpc.shouldRateLimit('api', [desc('user', 'shed')]))).code).toBe(status.RESOURCE_EXHAUSTED);
      world.redis.resume();
      expect(await Promise.all(held)).toEqual([200, 200, 200, 200]);
      // The shed ones took nothing.
      expect((await grpc.shouldRateLimit('api', [desc('user', 'shed')])).statuses[0]!.limit_remaining).toBe(2);
    } finally {
      world.redis.resume();
      grpc.close();
      await sidecar.stop();
    }
  });
});
