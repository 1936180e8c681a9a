// Bad input over real gRPC against the built sidecar (memory store): every mistake a caller can
// make gets an exact status whose message names the field, and charges nothing. Then a seeded
// fuzz of every method: the process answers everything and stays up.
import { describe, expect, it } from 'vitest';
import { Client, credentials, Metadata, status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { LOADER_OPTIONS } from '../../src/grpc/proto.js';
import { useSidecar } from '../support/sidecar.js';
import type { AcquireRequest, AcquireResponse } from '../support/client.js';

const POLICY = `
resources:
  # A bucket that refills one unit per 8.76 hours (the slowest a full bucket of 1000 may refill):
  # 'remaining' cannot move by itself during a run.
  - name: api
    keys: [tenant]
    limits:
      - { name: slow, algorithm: token_bucket, rate: 1000/365d, burst: 1000 }
  - name: held
    keys: [tenant]
    limits:
      - { name: inflight, algorithm: concurrency, max: 3, ttl: 1h }
  # Required keys that are also names of Object.prototype members.
  - name: proto-keys
    keys: [constructor, toString]
    limits:
      - { name: slow, algorithm: token_bucket, rate: 1000/365d, burst: 1000 }
`;

const BURST = 1000;
const MAX = 256;

const running = useSidecar(() => POLICY);

/** Resolves with the ServiceError a call failed with; fails the test if it succeeded. */
async function failure(call: Promise<unknown>): Promise<ServiceError> {
  try {
    const res = await call;
    throw new Error(`expected an error status, got OK: ${JSON.stringify(res)}`);
  } catch (err) {
    if (typeof (err as ServiceError).code !== 'number') throw err;
    return err as ServiceError;
  }
}

async function expectStatus(call: Promise<unknown>, code: status, ...fragments: string[]): Promise<void> {
  const err = await failure(call);
  expect(status[err.code], `details: ${err.details}`).toBe(status[code]);
  for (const fragment of fragments) expect(err.details).toContain(fragment);
}

/** A valid cost-1 Acquire on api/tenant: its 'remaining'. */
async function probe(tenant: string): Promise<number> {
  const res = await running.client.acquire({ resource: 'api', descriptors: { tenant } });
  expect(res.granted).toBe(true);
  expect(res.limit).toBe(BURST);
  return res.remaining;
}

/** Runs `bad` between two probes of the same scope: only the second probe may have been charged. */
async function chargesNothing(tenant: string, bad: () => Promise<void>): Promise<void> {
  const before = await probe(tenant);
  await bad();
  expect(await probe(tenant)).toBe(before - 1);
}

/** A concurrency probe: takes and gives back one slot of held/tenant, returning 'remaining'. */
async function heldRemaining(tenant: string): Promise<number> {
  const res = await running.client.acquire({ resource: 'held', descriptors: { tenant } });
  expect(res.granted).toBe(true);
  expect(await running.client.release(res.permit_id)).toBe(true);
  return res.remaining;
}

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
let tenants = 0;
const freshTenant = () => `t${++tenants}`;

// [what, request for a tenant, code, fragments the message must contain]
const cases: [string, (t: string) => AcquireRequest, status, string[]][] = [
  ['unknown resource', (t) => ({ resource: 'no-such-resource', descriptors: { tenant: t } }), status.NOT_FOUND, ['resource', 'no-such-resource']],
  ['empty resource', (t) => ({ resource: '', descriptors: { tenant: t } }), status.INVALID_ARGUMENT, ['resource']],
  ['no descriptors at all', () => ({ resource: 'api' }), status.INVALID_ARGUMENT, ['descriptors', 'tenant']],
  ['required descriptor key missing', (t) => ({ resource: 'api', descriptors: { user: t } }), status.INVALID_ARGUMENT, ['descriptors', 'tenant']],
  ['required descriptor key with another case', (t) => ({ resource: 'api', descriptors: { Tenant: t } }), status.INVALID_ARGUMENT, ['descriptors', 'tenant']],
  ['empty descriptor value', () => ({ resource: 'api', descriptors: { tenant: '' } }), status.INVALID_ARGUMENT, ['descriptors', 'tenant']],
  ['resource over 256 bytes', (t) => ({ resource: 'r'.repeat(MAX + 1), descriptors: { tenant: t } }), status.INVALID_ARGUMENT, ['resource', '256']],
  ['resource of 86 chars / 258 bytes', (t) => ({ resource: '€'.repeat(86), descriptors: { tenant: t } }), status.INVALID_ARGUMENT, ['resource', '256']],
  ['lane over 256 bytes', (t) => ({ resource: 'api', descriptors: { tenant: t }, lane: 'l'.repeat(MAX + 1) }), status.INVALID_ARGUMENT, ['lane', '256']],
  ['lane of 130 UTF-16 units / 260 bytes', (t) => ({ resource: 'api', descriptors: { tenant: t }, lane: '😀'.repeat(65) }), status.INVALID_ARGUMENT, ['lane']],
  ['a lane the resource does not have', (t) => ({ resource: 'api', descriptors: { tenant: t }, lane: 'bulk' }), status.INVALID_ARGUMENT, ['lane', 'bulk', 'no lanes']],
  ['max_wait past 300 s', (t) => ({ resource: 'api', descriptors: { tenant: t }, max_wait: { seconds: 301, nanos: 0 } }), status.INVALID_ARGUMENT, ['max_wait', '300s']],
  ['request_id over 256 bytes', (t) => ({ resource: 'api', descriptors: { tenant: t }, request_id: 'q'.repeat(MAX + 1) }), status.INVALID_ARGUMENT, ['request_id', '256']],
  ['request_id of 129 chars / 258 bytes', (t) => ({ resource: 'api', descriptors: { tenant: t }, request_id: 'é'.repeat(129) }), status.INVALID_ARGUMENT, ['request_id']],
  ['descriptor key over 256 bytes', (t) => ({ resource: 'api', descriptors: { tenant: t, ['k'.repeat(MAX + 1)]: 'v' } }), status.INVALID_ARGUMENT, ['descriptors', 'key']],
  ['descriptor key of 86 chars / 258 bytes', (t) => ({ resource: 'api', descriptors: { tenant: t, ['ключ'.repeat(32) + 'ю']: 'v' } }), status.INVALID_ARGUMENT, ['descriptors', 'key']],
  ['descriptor value over 256 bytes (extra key)', (t) => ({ resource: 'api', descriptors: { tenant: t, model: 'v'.repeat(MAX + 1) } }), status.INVALID_ARGUMENT, ['descriptors', 'model', '256']],
  ['descriptor value of 86 chars / 258 bytes (extra key)', (t) => ({ resource: 'api', descriptors: { tenant: t, model: '€'.repeat(86) } }), status.INVALID_ARGUMENT, ['descriptors', 'model']],
  ['required descriptor value over 256 bytes', (t) => ({ resource: 'api', descriptors: { tenant: t + 'v'.repeat(MAX) } }), status.INVALID_ARGUMENT, ['descriptors', 'tenant', '256']],
  ['17 descriptors', (t) => ({ resource: 'api', descriptors: { tenant: t, ...manyDescriptors(16) } }), status.INVALID_ARGUMENT, ['descriptors', '16']],
  ['cost 2^64-1', (t) => ({ resource: 'api', descriptors: { tenant: t }, cost: '18446744073709551615' as unknown as number }), status.INVALID_ARGUMENT, ['cost']],
  ['cost 2^53', (t) => ({ resource: 'api', descriptors: { tenant: t }, cost: '9007199254740992' as unknown as number }), status.INVALID_ARGUMENT, ['cost']],
  ['cost 2^53-1', (t) => ({ resource: 'api', descriptors: { tenant: t }, cost: Number.MAX_SAFE_INTEGER }), status.INVALID_ARGUMENT, ['cost', 'at most 1000000000000000']],
  ['cost 10^15+1', (t) => ({ resource: 'api', descriptors: { tenant: t }, cost: 1e15 + 1 }), status.INVALID_ARGUMENT, ['cost', 'at most 1000000000000000']],
  ['negative max_wait seconds', (t) => ({ resource: 'api', descriptors: { tenant: t }, max_wait: { seconds: -1, nanos: 0 } }), status.INVALID_ARGUMENT, ['max_wait']],
  ['negative max_wait nanos', (t) => ({ resource: 'api', descriptors: { tenant: t }, max_wait: { seconds: 0, nanos: -1 } }), status.INVALID_ARGUMENT, ['max_wait']],
  ['max_wait nanos of a whole second', (t) => ({ resource: 'api', descriptors: { tenant: t }, max_wait: { seconds: 1, nanos: 1_000_000_000 } }), status.INVALID_ARGUMENT, ['max_wait']],
  ['max_wait seconds past 2^53', (t) => ({ resource: 'api', descriptors: { tenant: t }, max_wait: { seconds: '9223372036854775807' as unknown as number, nanos: 0 } }), status.INVALID_ARGUMENT, ['max_wait']],
];

describe('Acquire: bad input gets an exact status naming the field and charges nothing', () => {
  it.each(cases)('%s', async (_what, request, code, fragments) => {
    const tenant = freshTenant();
    await chargesNothing(tenant, () => expectStatus(running.client.acquire(request(tenant)), code, ...fragments));
  });

  it('the same bad request repeated many times still charges nothing', async () => {
    const tenant = freshTenant();
    await chargesNothing(tenant, async () => {
      const bad = { resource: 'api', descriptors: { tenant }, cost: '18446744073709551615' as unknown as number };
      const errors = await Promise.all(Array.from({ length: 50 }, () => failure(running.client.acquire(bad))));
      expect(new Set(errors.map((e) => e.code))).toEqual(new Set([status.INVALID_ARGUMENT]));
    });
  });
});

describe('Inspect: the same bad scope gets the same status as Acquire, and charges nothing', () => {
  // The cases about the resource and the descriptors: all that Inspect takes.
  const scopeCases = cases.filter(([, request]) => Object.keys(request('t')).every((field) => field === 'resource' || field === 'descriptors'));

  it('the filter keeps the scope cases (a filter that kept none would test nothing)', () => {
    expect(scopeCases.map(([what]) => what)).toEqual(expect.arrayContaining(['unknown resource', 'empty resource', 'no descriptors at all', '17 descriptors']));
  });

  it.each(scopeCases)('%s', async (_what, request, code, fragments) => {
    const tenant = freshTenant();
    await chargesNothing(tenant, () => expectStatus(running.client.inspect(request(tenant)), code, ...fragments));
  });
});

describe('Acquire: the limits themselves are accepted', () => {
  // A lane is a name from the policy (a resource without lanes takes only ''), so its length is
  // checked (above) before it is looked up: no lane of 256 bytes can exist.
  it('exactly 256 bytes everywhere, 16 descriptors, and multi-byte strings of exactly 256 bytes', async () => {
    const tenant = freshTenant();
    const exact = 'x'.repeat(MAX);
    const exactMultiByte = '€'.repeat(85) + 'a';
    expect(bytes(exactMultiByte)).toBe(MAX);
    const before = await probe(tenant);
    const descriptors = { tenant, [exact]: exact, model: exactMultiByte, ...manyDescriptors(13) };
    expect(Object.keys(descriptors)).toHaveLength(16);
    const res = await running.client.acquire({ resource: 'api', descriptors, request_id: exact });
    expect(res).toMatchObject({ granted: true, remaining: before - 1, request_id: exact, limit_name: 'slow' });
    const multi = await running.client.acquire({ resource: 'api', descriptors: { tenant }, request_id: exactMultiByte });
    expect(multi).toMatchObject({ granted: true, remaining: before - 2, request_id: exactMultiByte });
  });

  it('a required descriptor value of exactly 256 bytes is a scope of its own', async () => {
    const tenant = freshTenant().padEnd(MAX, '-');
    expect(await probe(tenant)).toBe(BURST - 1);
  });

  it('a resource name of exactly 256 bytes passes the length check and is NOT_FOUND', async () => {
    await expectStatus(running.client.acquire({ resource: 'r'.repeat(MAX), descriptors: { tenant: 'x' } }), status.NOT_FOUND, 'resource');
  });

  it('cost 10^15 (the bound) is a valid request that can never be granted: denied, no retry_after, nothing charged', async () => {
    const tenant = freshTenant();
    await chargesNothing(tenant, async () => {
      const res = await running.client.acquire({ resource: 'api', descriptors: { tenant }, cost: 1e15 });
      expect(res.granted).toBe(false);
      expect(res.retry_after).toBeNull();
      expect(res.reason).not.toBe('');
    });
  });

  it('cost 0 means 1', async () => {
    const tenant = freshTenant();
    const before = await probe(tenant);
    const res = await running.client.acquire({ resource: 'api', descriptors: { tenant }, cost: 0 });
    expect(res).toMatchObject({ granted: true, remaining: before - 1 });
  });
});

describe('Acquire: required keys named like Object.prototype members', () => {
  // proto-loader decodes the descriptors map into a plain object, so descriptors.constructor is
  // Object itself when the caller did not send it.
  it.each([
    ['constructor missing', { toString: 'x' }, 'constructor'],
    ['toString missing', { constructor: 'x' }, 'toString'],
  ])('%s -> INVALID_ARGUMENT naming the key', async (_what, descriptors, key) => {
    await expectStatus(running.client.acquire({ resource: 'proto-keys', descriptors }), status.INVALID_ARGUMENT, 'descriptors', key);
  });

  it('both present is granted', async () => {
    const res = await running.client.acquire({ resource: 'proto-keys', descriptors: { constructor: 'a', toString: 'b' } });
    expect(res).toMatchObject({ granted: true, remaining: BURST - 1 });
  });
});

describe('Release: bad input', () => {
  it('empty permit_id -> INVALID_ARGUMENT naming permit_id', async () => {
    await expectStatus(running.client.release(''), status.INVALID_ARGUMENT, 'permit_id');
  });

  it.each([
    ['garbage', 'garbage'],
    ['the old <12 hex>.<sequence> form', 'aaaaaaaaaaaa.zz'],
    ['one character short', 'a'.repeat(21)],
    ['plain base64 characters', 'a'.repeat(20) + '+/'],
    ['trailing newline', 'a'.repeat(22) + '\n'],
    ['over 256 bytes', 'a'.repeat(MAX + 1)],
    ['multi-byte', 'ä'.repeat(20)],
  ])('%s permit_id -> INVALID_ARGUMENT naming permit_id', async (_what, id) => {
    await expectStatus(running.client.release(id), status.INVALID_ARGUMENT, 'permit_id');
  });

  it('a well-formed but unknown permit_id is OK with released=false', async () => {
    expect(await running.client.release('a'.repeat(22))).toBe(false);
  });

  it('bad releases change no concurrency slot; a bad actual_cost leaves the permit releasable', async () => {
    const tenant = freshTenant();
    expect(await heldRemaining(tenant)).toBe(2);
    const held = await running.client.acquire({ resource: 'held', descriptors: { tenant } });
    expect(held).toMatchObject({ granted: true, remaining: 2 });
    expect(held.permit_id).not.toBe('');

    await expectStatus(running.client.release(''), status.INVALID_ARGUMENT, 'permit_id');
    await expectStatus(running.client.release('garbage'), status.INVALID_ARGUMENT, 'permit_id');
    expect(await running.client.release('a'.repeat(22))).toBe(false);
    await expectStatus(running.client.release(held.permit_id, '18446744073709551615' as unknown as number), status.INVALID_ARGUMENT, 'actual_cost');
    expect(await heldRemaining(tenant)).toBe(1); // still held by `held`

    expect(await running.client.release(held.permit_id)).toBe(true);
    expect(await heldRemaining(tenant)).toBe(2);
    expect(await running.client.release(held.permit_id)).toBe(false);
    expect(await heldRemaining(tenant)).toBe(2);
  });
});

describe('AcquireStream: one bad request ends the stream', () => {
  interface StreamResult {
    answers: AcquireResponse[];
    status: StatusObject;
  }

  /** Writes `requests` (awaiting answers for the first `answered` of them first), then half-closes. */
  function runStream(requests: AcquireRequest[], answered = 0): Promise<StreamResult> {
    const call = running.client.stream();
    const answers: AcquireResponse[] = [];
    return new Promise((resolve) => {
      let next = 0;
      const writeRest = () => {
        while (next < requests.length) call.write(requests[next++]!);
        call.end();
      };
      call.on('data', (res: AcquireResponse) => {
        answers.push(res);
        if (answers.length === answered) writeRest();
      });
      call.on('error', () => undefined); // reported through 'status'
      call.on('status', (s: StatusObject) => resolve({ answers, status: s }));
      while (next < answered) call.write(requests[next++]!);
      if (answered === 0) writeRest();
    });
  }

  const good = (tenant: string, id: string): AcquireRequest => ({ resource: 'api', descriptors: { tenant }, request_id: id });

  it('valid requests are answered; the bad one ends it with INVALID_ARGUMENT naming its request_id (answers awaited first)', async () => {
    const tenant = freshTenant();
    const before = await probe(tenant);
    const result = await runStream(
      [good(tenant, 'ok-1'), good(tenant, 'ok-2'), { resource: 'api', descriptors: { tenant: '' }, request_id: 'bad-3' }, good(tenant, 'never-4')],
      2,
    );
    expect(result.answers.map((a) => [a.request_id, a.granted])).toEqual([
      ['ok-1', true],
      ['ok-2', true],
    ]);
    expect(status[result.status.code]).toBe('INVALID_ARGUMENT');
    expect(result.status.details).toContain('bad-3');
    expect(result.status.details).toContain('tenant');
    // ok-1 and ok-2 were charged; bad-3 was not, and nothing after it was decided.
    expect(await probe(tenant)).toBe(before - 3);
  });

  it('valid requests sent back-to-back with a bad one are still all answered before the error', async () => {
    const tenant = freshTenant();
    const before = await probe(tenant);
    const result = await runStream([
      good(tenant, 'ok-1'),
      good(tenant, 'ok-2'),
      good(tenant, 'ok-3'),
      { resource: 'api', descriptors: { tenant }, cost: '18446744073709551615' as unknown as number, request_id: 'bad-4' },
    ]);
    expect(status[result.status.code]).toBe('INVALID_ARGUMENT');
    expect(result.status.details).toContain('bad-4');
    expect(result.status.details).toContain('cost');
    // Every request that was charged must have been answered: a grant the caller never hears of
    // is budget lost (and, with a concurrency limit, a slot held until its ttl).
    const charged = before - 1 - (await probe(tenant));
    expect(result.answers.map((a) => a.request_id).sort()).toEqual(['ok-1', 'ok-2', 'ok-3']);
    expect(charged).toBe(3);
  });

  it('requests around a bad one: every request that was charged was answered', async () => {
    const tenant = freshTenant();
    const before = await probe(tenant);
    const requests = [
      ...Array.from({ length: 20 }, (_, i) => good(tenant, `pre-${i}`)),
      { resource: 'api', descriptors: { tenant: '' }, request_id: 'bad-mid' },
      ...Array.from({ length: 20 }, (_, i) => good(tenant, `post-${i}`)),
    ];
    const result = await runStream(requests);
    expect(status[result.status.code]).toBe('INVALID_ARGUMENT');
    expect(result.status.details).toContain('bad-mid');
    const charged = before - 1 - (await probe(tenant));
    const answered = result.answers.map((a) => a.request_id);
    expect(answered.filter((id) => id.startsWith('pre-'))).toHaveLength(20);
    expect(charged, `answered: ${answered.join(' ')}`).toBe(answered.length);
  });

  it('an unknown resource in a stream ends it with NOT_FOUND naming the request_id', async () => {
    const result = await runStream([{ resource: 'nope', descriptors: { tenant: 'x' }, request_id: 'r-nf' }]);
    expect(status[result.status.code]).toBe('NOT_FOUND');
    expect(result.status.details).toContain('r-nf');
    expect(result.status.details).toContain('nope');
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzz: random bytes and mutated valid messages on every method, through a generic running.client.

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.SLUICE_FUZZ_SEED ?? 0x5eed);
// Wide: on a starved machine a stream of mutated messages can take seconds; never answered is what fails.
const DEADLINE_MS = 15_000;
const PARALLEL = 24;

const sluicePkg = loadSync('sluice/v1/sluice.proto', LOADER_OPTIONS);
const methods = sluicePkg['sluice.v1.RateLimiter'] as Record<string, { requestSerialize: (v: unknown) => Buffer }>;
const encodeAcquire = (req: object) => methods.Acquire!.requestSerialize(req);
const encodeRelease = (req: object) => methods.Release!.requestSerialize(req);
const encodeInspect = (req: object) => methods.Inspect!.requestSerialize(req);
/** grpc.health.v1.HealthCheckRequest { string service = 1; } */
const encodeHealth = (service: string) => {
  const name = Buffer.from(service);
  return name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, name.length]), name]);
};

const ACQUIRE_SEEDS = [
  encodeAcquire({}),
  encodeAcquire({ resource: 'api', descriptors: { tenant: 'fuzz' } }),
  encodeAcquire({ resource: 'api', descriptors: { tenant: 'fuzz', model: 'gpt', user: 'u{1}|%' }, cost: 3, request_id: 'fz' }),
  encodeAcquire({ resource: 'held', descriptors: { tenant: 'fuzz' }, max_wait: { seconds: 1, nanos: 5 }, priority: -7, lane: 'bulk' }),
  encodeAcquire({ resource: 'proto-keys', descriptors: { constructor: 'a', toString: 'b' }, cost: '18446744073709551615' }),
  encodeAcquire({ resource: 'api', descriptors: { tenant: 'fuzz' }, max_wait: { seconds: -1, nanos: -1 }, priority: 2147483647 }),
  encodeAcquire({ resource: 'api', descriptors: manyDescriptors(17) }),
];
const RELEASE_SEEDS = [
  encodeRelease({}),
  encodeRelease({ permit_id: 'aaaaaaaaaaaa.zz' }),
  encodeRelease({ permit_id: 'a'.repeat(22), actual_cost: 0 }),
  encodeRelease({ permit_id: 'Zz-_0123456789abcdefgh', actual_cost: '18446744073709551615' }),
  encodeRelease({ permit_id: 'not a permit' }),
];
const INSPECT_SEEDS = [
  encodeInspect({}),
  encodeInspect({ resource: 'api', descriptors: { tenant: 'fuzz' } }),
  encodeInspect({ resource: 'held', descriptors: { tenant: 'fuzz', extra: 'x' } }),
  encodeInspect({ resource: 'proto-keys', descriptors: { constructor: 'a', toString: 'b' } }),
  encodeInspect({ resource: 'api', descriptors: manyDescriptors(17) }),
];
const HEALTH_SEEDS = [encodeHealth(''), encodeHealth('sluice.v1.RateLimiter'), encodeHealth('no.such.Service')];

function fuzzer(rand: () => number) {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const mutations: ((seeds: readonly Buffer[]) => Buffer)[] = [
    () => randomBytes(int(64)),
    () => randomBytes(64 + int(1024)),
    (seeds) => {
      const b = pick(seeds);
      return b.subarray(0, int(b.length + 1));
    },
    (seeds) => {
      const b = Buffer.from(pick(seeds));
      for (let i = 0, n = 1 + int(4); i < n && b.length > 0; i++) b[int(b.length)]! ^= 1 << int(8);
      return b;
    },
    (seeds) => {
      const b = Buffer.from(pick(seeds));
      for (let i = 0, n = 1 + int(3); i < n && b.length > 0; i++) b[int(b.length)] = int(256);
      return b;
    },
    (seeds) => {
      const b = pick(seeds);
      const at = int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), randomBytes(1 + int(8)), b.subarray(at)]);
    },
    (seeds) => Buffer.concat([pick(seeds), pick(seeds)]), // protobuf merge: valid, last wins
    (seeds) => Buffer.concat([pick(seeds), Buffer.from([0x08 | int(8), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])]),
    (seeds) => Buffer.concat([pick(seeds), Buffer.from([(1 + int(15)) << 3 | 2, 0xff, 0xff, 0xff, 0xff, 0x0f])]), // length far past the end
    (seeds) => Buffer.concat([pick(seeds), Buffer.from([(int(20) << 3) | 3])]), // unterminated group
    (seeds) => pick(seeds),
  ];
  return (seeds: readonly Buffer[]) => pick(mutations)(seeds);
}

interface Outcome {
  code: status;
  details: string;
}

function unary(raw: Client, path: string, body: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    raw.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      new Metadata(),
      { deadline: Date.now() + DEADLINE_MS },
      (err: ServiceError | null) => resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: '' }),
    );
  });
}

/** A stream's status, and how many answers came before it. */
interface StreamOutcome extends Outcome {
  answers: number;
}

function bidi(raw: Client, path: string, bodies: Buffer[]): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const call = raw.makeBidiStreamRequest(path, (b: Buffer) => b, (b: Buffer) => b, new Metadata(), { deadline: Date.now() + DEADLINE_MS });
    let answers = 0;
    call.on('data', () => answers++);
    call.on('error', () => undefined);
    call.on('status', (s: StatusObject) => resolve({ code: s.code, details: s.details, answers }));
    for (const body of bodies) call.write(body);
    call.end();
  });
}

async function inBatches<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < jobs.length; i += PARALLEL) results.push(...(await Promise.all(jobs.slice(i, i + PARALLEL).map((job) => job()))));
  return results;
}

describe('AcquireStream: a message that is not protobuf ends the stream after the answers under way', () => {
  // Left to grpc-js, such a message ended the stream while the sidecar still wrote the answers of
  // the requests before it, and an answer written after that end kept the status from ever being
  // sent (src/grpc/undecodable.ts): most of these streams waited for their deadline. The fuzz's
  // stream #1058 (two requests, then one cut short) was the first seen.
  const STREAMS = 48;
  const REQUESTS = 10;
  /** A field's tag whose varint is cut short. */
  const UNDECODABLE = Buffer.from([0xff, 0xff]);

  it(`each of ${STREAMS} streams of ${REQUESTS} requests and an undecodable message gets its ${REQUESTS} answers, then INTERNAL`, async () => {
    const tenant = freshTenant();
    const before = await probe(tenant);
    const requests = Array.from({ length: REQUESTS }, (_, i) => encodeAcquire({ resource: 'api', descriptors: { tenant }, request_id: `r${i}` }));
    const raw = new Client(running.sidecar.address, credentials.createInsecure());
    let outcomes: StreamOutcome[];
    try {
      outcomes = await inBatches(Array.from({ length: STREAMS }, () => () => bidi(raw, '/sluice.v1.RateLimiter/AcquireStream', [...requests, UNDECODABLE])));
    } finally {
      raw.close();
    }
    const seen: Record<string, number> = {};
    for (const o of outcomes) {
      const key = `${status[o.code]} after ${o.answers} answers${o.code === status.INTERNAL ? `: ${o.details}` : ''}`;
      seen[key] = (seen[key] ?? 0) + 1;
    }
    expect(seen).toEqual({ [`INTERNAL after ${REQUESTS} answers: Error deserializing request`]: STREAMS });
    // Every request was charged once and answered; the undecodable messages charged nothing.
    expect(await probe(tenant)).toBe(before - 1 - STREAMS * REQUESTS);
  });
});

describe(`fuzz (seed ${SEED}; set SLUICE_FUZZ_SEED to replay another)`, () => {
  // Statuses a malformed or odd message may get. UNAVAILABLE would mean the memory store "failed"
  // (in fact: validation threw something other than a RequestError), UNKNOWN an exception in a
  // handler, DEADLINE_EXCEEDED a call never answered.
  const ALLOWED = new Set([status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.INTERNAL, status.RESOURCE_EXHAUSTED]);

  it('every method answers every message with a status and the process stays up', async () => {
    const rand = prng(SEED);
    const mutate = fuzzer(rand);
    const raw = new Client(running.sidecar.address, credentials.createInsecure());
    try {
      const oversize = Buffer.alloc(70 * 1024, 0x0a); // past grpc.max_receive_message_length
      const plan: { method: string; body: Buffer[]; run: () => Promise<Outcome> }[] = [];
      const addUnary = (path: string, seeds: Buffer[], n: number) => {
        for (let i = 0; i < n; i++) {
          const body = i === 0 ? oversize : mutate(seeds);
          plan.push({ method: path, body: [body], run: () => unary(raw, path, body) });
        }
      };
      addUnary('/sluice.v1.RateLimiter/Acquire', ACQUIRE_SEEDS, 300);
      addUnary('/sluice.v1.RateLimiter/Release', RELEASE_SEEDS, 300);
      addUnary('/grpc.health.v1.Health/Check', HEALTH_SEEDS, 200);
      for (let i = 0; i < 100; i++) {
        const bodies = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => mutate(ACQUIRE_SEEDS));
        if (i === 0) bodies.push(oversize);
        plan.push({ method: '/sluice.v1.RateLimiter/AcquireStream', body: bodies, run: () => bidi(raw, '/sluice.v1.RateLimiter/AcquireStream', bodies) });
      }
      // Last, so that the messages drawn for every other method are the ones drawn before Inspect was.
      addUnary('/sluice.v1.RateLimiter/Inspect', INSPECT_SEEDS, 200);

      const outcomes = await inBatches(plan.map((p) => p.run));
      const histogram: Record<string, Record<string, number>> = {};
      const unexpected: string[] = [];
      outcomes.forEach((o, i) => {
        const byMethod = (histogram[plan[i]!.method] ??= {});
        byMethod[status[o.code]!] = (byMethod[status[o.code]!] ?? 0) + 1;
        if (!ALLOWED.has(o.code) && unexpected.length < 10) {
          unexpected.push(`#${i} ${plan[i]!.method} [${plan[i]!.body.map((b) => b.toString('hex')).join(', ')}] -> ${status[o.code]}: ${o.details}`);
        }
      });
      expect(unexpected, `seed ${SEED}; outcomes ${JSON.stringify(histogram)}`).toEqual([]);
      // The fuzz reached past the decoder: some messages were decided, some were refused by validation.
      expect(histogram['/sluice.v1.RateLimiter/Acquire']?.OK ?? 0).toBeGreaterThan(0);
      expect(histogram['/sluice.v1.RateLimiter/Acquire']?.INVALID_ARGUMENT ?? 0).toBeGreaterThan(0);
      expect(histogram['/grpc.health.v1.Health/Check']?.OK ?? 0).toBeGreaterThan(0);
    } finally {
      raw.close();
    }

    expect(running.sidecar.child.exitCode).toBeNull();
    expect(running.sidecar.child.signalCode).toBeNull();
    const after = await running.client.acquire({ resource: 'api', descriptors: { tenant: `after-fuzz-${SEED}` }, request_id: 'after' });
    expect(after).toMatchObject({ granted: true, remaining: BURST - 1, limit: BURST, limit_name: 'slow', decided_by: 'STORE', request_id: 'after' });
    const permit = await running.client.acquire({ resource: 'held', descriptors: { tenant: `after-fuzz-${SEED}` } });
    expect(permit).toMatchObject({ granted: true, remaining: 2 });
    expect(await running.client.release(permit.permit_id)).toBe(true);
  });
});

function manyDescriptors(n: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`d${i}`, `v${i}`]));
}
