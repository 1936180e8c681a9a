// The Python client library (clients/python, package sluice_client) as users install it: its wheel,
// built offline and installed with pip into a venv over Debian's python3-grpcio, drives the built
// sidecar, started as deployed on a real redis-server. Client (sync) and AsyncClient each run one
// script (test/clients/python/) whose steps are asserted here.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/config/load.js';
import { packageRoot } from '../../src/paths.js';
import { RedisStore } from '../../src/store/redis/redis-store.js';
import { lineKeys, ticketsIn } from '../support/line.js';
import { freePort } from '../support/ports.js';
import { generatePythonStubs, installPythonClient, runPythonSteps, type InstalledPythonClient, type Step } from '../support/python.js';
import { DEPLOYED_NODE_FLAGS, metric, startSidecar, type SidecarProcess } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const SCRIPTS = join(packageRoot, 'test', 'clients', 'python');
/** A script runs for about 10 s on a quiet machine: it waits for budget several times. */
const SCRIPT_TIMEOUT_MS = 120_000;

const POLICY = `
# Generous: these tests are about the client, not store failures on a busy machine.
store:
  timeout: 10s
resources:
  - name: bucket
    keys: [tenant]
    limits:
      - { name: per-10s, algorithm: token_bucket, rate: 1/10s, burst: 1 }
  - name: slow
    keys: [tenant]
    limits:
      - { name: per-2s, algorithm: token_bucket, rate: 1/2s, burst: 1 }
  - name: slot
    keys: [tenant]
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 30s }
  - name: tokens
    keys: [tenant]
    settle_within: 1m
    limits:
      - { name: daily, algorithm: token_bucket, rate: 1000/1d, burst: 1000 }
  - name: capped
    keys: [tenant]
    wait: { max_waiters: 1 }
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 30s }
  - name: cancel
    keys: [tenant]
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 30s }
      - { name: daily, algorithm: token_bucket, rate: 10/1d }
`;

const world = useRedis();
let sidecar: SidecarProcess;
let installed: InstalledPythonClient;
let stubs: string;
let unreachable: string;
const steps = {} as Record<'sync' | 'async', (name: string) => Step>;

beforeAll(async () => {
  installed = await installPythonClient();
  stubs = generatePythonStubs(['proto/sluice/v1/sluice.proto']);
  sidecar = await startSidecar(POLICY, { SLUICE_REDIS_URL: world.redis.url }, DEPLOYED_NODE_FLAGS);
  unreachable = `127.0.0.1:${await freePort()}`;
  const options = { python: installed.python, timeoutMs: SCRIPT_TIMEOUT_MS };
  steps.sync = await runPythonSteps(join(SCRIPTS, 'sync_client.py'), [sidecar.address, unreachable, stubs], options);
  steps.async = await runPythonSteps(join(SCRIPTS, 'async_client.py'), [sidecar.address, sidecar.admin!, unreachable], options);
}, 2 * SCRIPT_TIMEOUT_MS + 120_000);

afterAll(async () => {
  await sidecar?.stop();
  for (const dir of [installed?.dir, stubs]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.each([
  { flavour: 'sync' as const, client: 'Client', permit: 'Permit' },
  { flavour: 'async' as const, client: 'AsyncClient', permit: 'AsyncPermit' },
])('sluice_client.$client against a sidecar on Redis', ({ flavour, permit }) => {
  const step = (name: string) => steps[flavour](name);

  it('imports sluice_client from the installed wheel, not from the source tree, with its type information', () => {
    const module = step('installed').module as string;
    expect(module.startsWith(join(installed.dir, 'venv', 'lib'))).toBe(true);
    expect(module).toMatch(/\/site-packages\/sluice_client\/__init__\.py$/);
    expect(step('installed').typed).toEqual(['py.typed', 'v1/sluice_pb2.pyi']);
  });

  it('a grant is a Permit with the answer, decided_by as a name; leaving the block marks it released', () => {
    expect(step('grant')).toEqual({
      step: 'grant',
      outcome: permit,
      granted: true,
      permit_id: '', // a token bucket alone holds nothing to give back
      remaining: 0,
      limit: 1,
      limit_name: 'per-10s',
      decided_by: 'STORE',
      waited: null,
      reason: '',
      released: false,
      released_after: true,
    });
  });

  it('a denial raises Denied with retry_after in seconds, the limit, the reason and who decided', () => {
    const denied = step('denied');
    expect(denied).toMatchObject({ outcome: 'Denied', limit_name: 'per-10s', decided_by: 'STORE', waited: null });
    // The next unit is 10 s after the grant, taken moments before.
    expect(denied.retry_after).toBeGreaterThan(5);
    expect(denied.retry_after).toBeLessThanOrEqual(10);
    expect(denied.reason).toContain('per-10s');
  });

  it('a cost that can never fit is Denied with retry_after None', () => {
    expect(step('never')).toMatchObject({ outcome: 'Denied', retry_after: null, limit_name: 'per-10s' });
    expect(step('never').reason).toContain('capacity');
  });

  it('max_wait waits in the sidecar, past the client timeout (the deadline leaves room for it), and is granted with waited set', () => {
    expect(step('slow_first')).toMatchObject({ outcome: permit, waited: null });
    const waited = step('waited');
    expect(waited).toMatchObject({ outcome: permit, granted: true, limit_name: 'per-2s', decided_by: 'STORE' });
    // The next unit was up to 2 s away: it waited longer than the client's timeout of 0.5 s.
    expect(waited.waited).toBeGreaterThan(0.5);
    expect(waited.waited).toBeLessThan(5); // far from its max_wait of 10 s
    expect(waited.elapsed).toBeGreaterThanOrEqual(waited.waited);
  });

  it('a max_wait that passes first is Denied, having waited', () => {
    const timedOut = step('wait_timeout');
    expect(timedOut).toMatchObject({ outcome: 'Denied', limit_name: 'per-2s' });
    expect(timedOut.waited).toBeGreaterThan(0);
    expect(timedOut.reason).toContain('max_wait');
  });

  it('leaving the block releases a concurrency slot, once: the next acquire is granted', () => {
    const held = step('slot_held');
    expect(held).toMatchObject({ outcome: permit, limit_name: 'inflight', remaining: 0, limit: 1, released: false });
    expect(held.permit_id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(step('slot_busy')).toMatchObject({ outcome: 'Denied', limit_name: 'inflight' });
    expect(step('slot_left')).toEqual({ step: 'slot_left', released: true, release_again: false });
    const again = step('slot_again');
    expect(again).toMatchObject({ outcome: permit, granted: true, limit_name: 'inflight', release: true, release_again: false });
    expect(again.permit_id).not.toBe(held.permit_id);
  });

  it('settle(actual_cost) releases with the real cost, once; leaving the block after it does nothing more', () => {
    expect(step('settle_acquired')).toMatchObject({ outcome: permit, remaining: 400, limit: 1000, limit_name: 'daily' });
    expect(step('settled')).toEqual({ step: 'settled', settled: true, released: true, settle_again: false, release_again: false });
    // 1000 - 100 used - 1 now (at most one more unit refilled meanwhile), not 1000 - 600 - 1.
    const after = step('after_settle');
    expect(after).toMatchObject({ outcome: permit, limit_name: 'daily' });
    expect(after.remaining).toBeGreaterThanOrEqual(899);
    expect(after.remaining).toBeLessThanOrEqual(900);
  });

  it('no sidecar at the address, on_unavailable="raise": Unavailable', () => {
    const raised = step('unreachable_raise');
    expect(raised).toMatchObject({ outcome: 'Unavailable', code: 'UNAVAILABLE' });
    expect(raised.message).toContain(unreachable);
  });

  it('no sidecar at the address, on_unavailable="open": a Permit that says the client granted it, with nothing to release', () => {
    const opened = step('unreachable_open');
    expect(opened).toMatchObject({ outcome: permit, granted: true, decided_by: 'CLIENT_OPEN', permit_id: '', limit_name: '', released_after: true });
    expect(opened.reason).toContain(unreachable);
    expect(opened.reason).toContain("on_unavailable='open'");
  });

  it('no sidecar at the address, on_unavailable="closed": Denied by the client, with no retry_after', () => {
    const closed = step('unreachable_closed');
    expect(closed).toMatchObject({ outcome: 'Denied', decided_by: 'CLIENT_CLOSED', retry_after: null, limit_name: '' });
    expect(closed.reason).toContain(unreachable);
    expect(closed.reason).toContain('UNAVAILABLE');
  });

  it('an unknown resource raises SidecarError NOT_FOUND with the sidecar\'s message, even with on_unavailable="open"', () => {
    expect(step('unknown_resource')).toMatchObject({ outcome: 'SidecarError', code: 'NOT_FOUND' });
    expect(step('unknown_resource').details).toContain('nope');
  });
});

describe('sluice_client.Client only', () => {
  const step = (name: string) => steps.sync(name);

  it('a missing descriptor key raises SidecarError INVALID_ARGUMENT naming it, even with on_unavailable="open"', () => {
    expect(step('missing_key')).toMatchObject({ outcome: 'SidecarError', code: 'INVALID_ARGUMENT' });
    expect(step('missing_key').details).toContain('tenant');
  });

  it('a listener that never answers: the deadline passes, and on_unavailable="closed" denies', () => {
    const closed = step('deadline_closed');
    expect(closed).toMatchObject({ outcome: 'Denied', decided_by: 'CLIENT_CLOSED', retry_after: null });
    expect(closed.reason).toContain('DEADLINE_EXCEEDED');
  });

  it('a block that raises still releases its permit, and the exception goes on', () => {
    expect(step('slot_raised')).toMatchObject({ error: 'the work failed', outcome: 'Permit', granted: true, limit_name: 'inflight' });
  });

  it('refuses an unknown on_unavailable, a zero timeout and a negative max_wait with ValueError', () => {
    expect(step('bad_arguments')).toEqual({
      step: 'bad_arguments',
      on_unavailable: "on_unavailable must be one of raise, open, closed, not 'maybe'",
      timeout: 'timeout must be more than 0 seconds',
      max_wait: 'max_wait must be zero or more seconds, not -1',
    });
  });

  it('Client() takes its target from SLUICE_ADDR', () => {
    expect(step('env_target')).toMatchObject({ target: sidecar.address, outcome: 'Permit', granted: true });
  });

  it('raw stubs generated from the same proto work in the same process', () => {
    expect(step('raw_stubs')).toEqual({ step: 'raw_stubs', granted: true });
  });
});

describe('sluice_client.AsyncClient only', () => {
  const step = (name: string) => steps.async(name);

  it('a full waiting line raises SidecarError RESOURCE_EXHAUSTED with the sidecar\'s message, even with on_unavailable="open"', () => {
    expect(step('line_full')).toMatchObject({ outcome: 'SidecarError', code: 'RESOURCE_EXHAUSTED' });
    expect(step('line_full').details).toContain('wait.max_waiters');
  });

  it('cancelling a task that waits in acquire cancels the call; after the holder leaves, a request that does not wait is granted', () => {
    expect(step('cancel_a')).toMatchObject({ outcome: 'AsyncPermit', limit_name: 'inflight' });
    expect(step('cancel_b')).toEqual({ step: 'cancel_b', outcome: 'CancelledError', cancelled: true });
    expect(step('cancel_c')).toMatchObject({ outcome: 'AsyncPermit', granted: true, decided_by: 'STORE' });
  });

  it('the cancelled waiter left no ticket in Redis, its wait ended as cancelled, and it was charged nothing', async () => {
    const resource = parsePolicy(POLICY, 'policy.yaml').resources.get('cancel')!;
    const store = new RedisStore({ url: world.redis.url, prefix: 'sluice' });
    try {
      expect(await ticketsIn(world.redis.client, lineKeys(store, resource, ['async']))).toEqual([]);
    } finally {
      await store.close();
    }
    expect(await metric(sidecar, 'sluice_wait_seconds_count', 'resource="cancel"', 'end="cancelled"')).toBe(1);
    expect(await metric(sidecar, 'sluice_wait_seconds_count', 'resource="cancel"')).toBe(1);
    // The day's 10: A and C took one each, so 8 more are granted and the 9th is denied by the day.
    expect(step('cancel_rest')).toMatchObject({ granted: 8, last: { outcome: 'Denied', limit_name: 'daily' } });
  });
});

it('the sidecar is still serving afterwards', () => {
  expect(sidecar.child.exitCode).toBeNull();
});
