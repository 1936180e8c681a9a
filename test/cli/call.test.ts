// sluice acquire | release | inspect against a real sidecar on a real Redis: human and JSON
// output, exit codes, waiting, and inspect charging nothing; usage errors and an unreachable
// sidecar answered in one line.
import { describe, expect, it } from 'vitest';
import { formatMs } from '../../src/cli/call.js';
import { runCli } from '../support/run-cli.js';
import { useSidecar } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const POLICY = `
resources:
  - name: api
    keys: [tenant]
    limits:
      - { name: daily, algorithm: fixed_window, rate: 5/1d }
  - name: slots
    keys: [tenant]
    settle_within: 1m
    limits:
      - { name: inflight, algorithm: concurrency, max: 1, ttl: 1h, counts: requests }
      - { name: tokens, algorithm: sliding_window, rate: 1000/1d }
`;

describe('the CLI calls a running sidecar', () => {
  const world = useRedis();
  const running = useSidecar(() => POLICY, () => ({ SLUICE_REDIS_URL: world.redis.url }));
  const sluice = (...args: string[]) => runCli(args, { SLUICE_ADDR: running.sidecar.address });

  it('acquire: granted in words (exit 0), then denied with when to try again (exit 1)', async () => {
    const granted = await sluice('acquire', 'api', 'tenant=words', '--cost', '4');
    expect(granted).toMatchObject({ code: 0, stderr: '' });
    expect(granted.stdout).toMatch(/^granted: api tenant=words, cost 4\n  daily: 1 of 5 left, full again in \d+h\d*m?\n  decided by STORE\n$/);
    const denied = await sluice('acquire', 'api', 'tenant=words', '--cost', '2');
    expect(denied.code).toBe(1);
    expect(denied.stdout).toMatch(/^denied: api tenant=words, cost 2: .*daily.*\n  try again in \d+h\d*m?\n  decided by STORE\n$/);
    const never = await sluice('acquire', 'api', 'tenant=words', '--cost', '6');
    expect(never.code).toBe(1);
    expect(never.stdout).toContain('it can never be granted as asked');
  });

  it('acquire --json: one JSON object with the answer; --addr wins over SLUICE_ADDR', async () => {
    const run = await runCli(['acquire', 'api', 'tenant=json', '--json', '--addr', running.sidecar.address], { SLUICE_ADDR: '127.0.0.1:1' });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      granted: true,
      permit_id: '',
      retry_after_ms: null,
      remaining: 4,
      limit: 5,
      reset_after_ms: expect.any(Number),
      limit_name: 'daily',
      decided_by: 'STORE',
      waited_ms: null,
      reason: '',
    });
  });

  it('inspect charges nothing, in words and in JSON', async () => {
    expect((await sluice('acquire', 'api', 'tenant=look')).code).toBe(0);
    for (let i = 0; i < 3; i++) {
      const run = await sluice('inspect', 'api', 'tenant=look');
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(/^api tenant=look: 0 waiting\n  daily \(fixed_window\): 4 of 5 left, full again in \d+h\d*m?\n$/);
    }
    const json = await sluice('inspect', 'api', 'tenant=look', '--json');
    expect(JSON.parse(json.stdout)).toEqual({ limits: [{ name: 'daily', algorithm: 'fixed_window', remaining: 4, limit: 5, reset_after_ms: expect.any(Number) }], waiters: 0 });
    // Four looks later the four units are all there.
    expect((await sluice('acquire', 'api', 'tenant=look', '--cost', '4')).code).toBe(0);
  });

  it('release gives the slot back and settles; a second release says it was not released (exit 1)', async () => {
    const held = JSON.parse((await sluice('acquire', 'slots', 'tenant=r', '--cost', '300', '--json')).stdout);
    expect(held).toMatchObject({ granted: true, limit_name: 'inflight' });
    expect(held.permit_id).not.toBe('');
    expect((await sluice('acquire', 'slots', 'tenant=r')).code).toBe(1);
    const released = await sluice('release', held.permit_id, '--actual', '100');
    expect(released).toMatchObject({ code: 0, stdout: `released ${held.permit_id}\n` });
    const look = JSON.parse((await sluice('inspect', 'slots', 'tenant=r', '--json')).stdout);
    expect(look.limits.map((l: { remaining: number }) => l.remaining)).toEqual([1, 900]);
    const again = await sluice('release', held.permit_id, '--json');
    expect(again).toMatchObject({ code: 1, stdout: '{"released":false}\n' });
  });

  it('acquire --max-wait waits its turn in the line and says how long it waited', async () => {
    const held = JSON.parse((await sluice('acquire', 'slots', 'tenant=w', '--json')).stdout);
    const waiting = sluice('acquire', 'slots', 'tenant=w', '--max-wait', '30s', '--priority', '3');
    // The waiter is in line once inspect counts it; then the slot comes back.
    let look = { waiters: 0 };
    for (let i = 0; look.waiters === 0 && i < 200; i++) look = JSON.parse((await sluice('inspect', 'slots', 'tenant=w', '--json')).stdout);
    expect(look.waiters).toBe(1);
    expect((await sluice('release', held.permit_id)).code).toBe(0);
    const served = await waiting;
    expect(served.code).toBe(0);
    expect(served.stdout).toMatch(/decided by STORE after waiting \d/);
    expect(served.stdout).toMatch(/permit \S+: give it back with sluice release \S+ \[--actual N\]/);
  });

  it.each([
    [['acquire'], 'sluice acquire: name the resource: sluice acquire RESOURCE KEY=VALUE...'],
    [['acquire', 'api', 'tenant'], 'sluice acquire: "tenant" is not KEY=VALUE'],
    [['acquire', 'api', 'tenant=x', '--cost', '1.5'], 'sluice acquire: --cost "1.5": must be a whole number of units'],
    [['acquire', 'api', 'tenant=x', '--max-wait', 'soon'], 'sluice acquire: --max-wait "soon": must be a duration such as 500ms, 2s or 1m'],
    [['acquire', 'api', 'tenant=x', '--priority', '2147483648'], 'sluice acquire: --priority "2147483648": must be a whole number from -2147483648 to 2147483647'],
    [['acquire', 'api', 'tenant=x', '--bogus'], 'sluice acquire: unknown option --bogus'],
    [['release'], 'sluice release: name one permit: sluice release PERMIT_ID [--actual N]'],
    [['release', 'p', '--cost', '3'], 'sluice release: --cost is not a release option'],
    [['inspect', 'api', 'tenant=x', '--max-wait', '1s'], 'sluice inspect: --max-wait is not an inspect option'],
  ])('%j is a usage error (exit 2) naming the problem, with the usage, no stack trace', async (args, message) => {
    const run = await sluice(...args);
    expect(run.code).toBe(2);
    expect(run.stderr.split('\n')[0]).toBe(message);
    expect(run.stderr).toContain('usage:');
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('the sidecar\'s own errors are one line with their status (exit 3), also in JSON', async () => {
    const missing = await sluice('inspect', 'nope', 'tenant=x');
    expect(missing).toMatchObject({ code: 3, stdout: '', stderr: 'sluice inspect: NOT_FOUND: resource: "nope" is not in the policy\n' });
    const tooBig = await sluice('acquire', 'api', 'tenant=x', '--cost', '18446744073709551615', '--json');
    expect(tooBig.code).toBe(3);
    expect(JSON.parse(tooBig.stdout)).toEqual({ error: { code: 'INVALID_ARGUMENT', message: 'cost: must be at most 1000000000000000' } });
  });

  it('no sidecar at the address: one line saying where it looked and what to do (exit 3)', async () => {
    const run = await runCli(['acquire', 'api', 'tenant=x'], { SLUICE_ADDR: '127.0.0.1:1' });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/^sluice acquire: UNAVAILABLE: no sidecar answers at 127\.0\.0\.1:1 \(.*ECONNREFUSED.*\): start one with sluice serve, or name it with --addr or SLUICE_ADDR\n$/);
  });
});

describe('formatMs', () => {
  it.each([
    [250, '250ms'],
    [1500, '1.5s'],
    [59_940, '59.9s'],
    [150_000, '2m30s'],
    [3_600_000, '1h'],
    [11_100_000, '3h5m'],
  ])('%d ms is %s', (ms, text) => {
    expect(formatMs(ms)).toBe(text);
  });
});
