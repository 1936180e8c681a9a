// The policy file is reloaded while the sidecar serves: through the kubelet's ConfigMap update
// (a new timestamped directory, then the `..data` symlink swapped in one rename), and on SIGHUP.
// Under load no call fails; the new policy answers within 2 s; a limit that keeps its name and
// algorithm keeps its state under the new numbers; a bad file keeps the old policy.
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type SluiceClient } from '../support/client.js';
import { ConfigMapVolume } from '../support/configmap-volume.js';
import { metric, startSidecarOn, type SidecarProcess } from '../support/sidecar.js';
import { useRedis } from '../support/use-redis.js';

const resources = (changed: boolean) => `
resources:
  - name: steady
    keys: [tenant]
    lease: { enabled: false }
    limits: [{ name: per-day, algorithm: fixed_window, rate: 10/1d }]
  - name: tightened
    keys: [tenant]
    lease: { enabled: false }
    limits: [{ name: per-day, algorithm: fixed_window, rate: ${changed ? 6 : 4}/1d }]
  - name: switched
    keys: [tenant]
    lease: { enabled: false }
    limits: [{ name: per-day, algorithm: ${changed ? 'sliding_window' : 'fixed_window'}, rate: 3/1d }]
  - name: hammered
    limits: [{ name: per-second, algorithm: token_bucket, rate: 1000000/1s }]
${changed ? '' : `  - name: retired
    limits: [{ name: per-day, algorithm: fixed_window, rate: 100/1d }]`}
${changed ? `  - name: fresh
    limits: [{ name: per-day, algorithm: fixed_window, rate: 100/1d }]` : ''}
`;

/** Grants in a row for `resource`/`tenant` until the first denial (at most 50). */
async function grantsUntilDenied(client: SluiceClient, resource: string, tenant: string): Promise<number> {
  for (let n = 0; n < 50; n++) if (!(await client.acquire({ resource, descriptors: { tenant } })).granted) return n;
  return 50;
}

/** Asks until `check` holds, at most `ms`; answers how long it took. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - start;
}

const code = (err: unknown) => (err as ServiceError).code;

describe.each(['memory', 'redis'] as const)('policy reload on the %s store', (store) => {
  const world = store === 'redis' ? useRedis({ prioritised: true }) : null;
  const storeSection = () => (world ? `store:\n  redis: { url: "${world.redis.url}" }\n  timeout: 10s\n` : '');
  let volume: ConfigMapVolume;
  let sidecar: SidecarProcess;
  let client: SluiceClient;

  beforeAll(async () => {
    volume = new ConfigMapVolume(storeSection() + resources(false));
    sidecar = await startSidecarOn(volume.file);
    client = connect(sidecar.address);
  });
  afterAll(async () => {
    client?.close();
    await sidecar?.stop();
  });

  it('swaps in the new policy within 2 s under load, with no failed call, keeping the state of limits that keep their name', async () => {
    expect(await grantsUntilDenied(client, 'steady', 'a')).toBe(10);
    expect(await grantsUntilDenied(client, 'tightened', 'a')).toBe(4);
    expect(await grantsUntilDenied(client, 'switched', 'a')).toBe(3);
    // Spend part of steady's budget for a second tenant, to see it carried over.
    for (let i = 0; i < 4; i++) expect((await client.acquire({ resource: 'steady', descriptors: { tenant: 'b' } })).granted).toBe(true);
    expect((await client.acquire({ resource: 'retired' })).granted).toBe(true);

    // 32 callers keep asking through the swap; every call must be answered, and granted.
    let running = true;
    const failures: unknown[] = [];
    let answered = 0;
    const callers = Array.from({ length: 32 }, async () => {
      while (running) {
        try {
          const res = await client.acquire({ resource: 'hammered' });
          if (!res.granted) failures.push(res);
          answered++;
        } catch (err) {
          failures.push(err);
        }
      }
    });
    await within(10_000, async () => answered > 200);

    volume.update(storeSection() + resources(true));
    const tookMs = await within(2_000, () =>
      client.acquire({ resource: 'fresh' }).then(
        (res) => res.granted,
        (err) => (code(err) === status.NOT_FOUND ? false : Promise.reject(err)),
      ),
    );
    const atSwap = answered;
    await within(10_000, async () => answered > atSwap + 200);
    running = false;
    await Promise.all(callers);
    expect(failures).toEqual([]);
    expect(tookMs).toBeLessThan(2_000);

    // Unchanged: the same budget, nothing restored.
    expect(await grantsUntilDenied(client, 'steady', 'a')).toBe(0);
    expect(await grantsUntilDenied(client, 'steady', 'b')).toBe(6);
    // Same name and algorithm, new number: what was used counts against the new capacity.
    expect(await grantsUntilDenied(client, 'tightened', 'a')).toBe(2);
    // Same name, another algorithm: a fresh budget.
    expect(await grantsUntilDenied(client, 'switched', 'a')).toBe(3);
    // Removed: unknown from now on, and gone from the metrics (else every name ever served would stay).
    await expect(client.acquire({ resource: 'retired' })).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(await metric(sidecar, 'sluice_decisions_total', 'resource="retired"')).toBe(0);
    expect(await metric(sidecar, 'sluice_decisions_total', 'resource="steady"')).toBeGreaterThan(0);
    expect(await metric(sidecar, 'sluice_policy_reloads_total', 'result="applied"')).toBe(1);
  });

  it('keeps serving the previous policy when the new file is bad, and says so on /readyz', async () => {
    volume.update(storeSection() + 'resources:\n  - name: broken\n    limits: [{ name: x, algorithm: fixed_window, rate: lots }]\n');
    await within(5_000, async () => (await metric(sidecar, 'sluice_policy_reloads_total', 'result="rejected"')) === 1);
    const ready = await fetch(`http://${sidecar.admin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toMatch(/reload refused at .*rate.*still serving that one/);
    expect((await client.acquire({ resource: 'fresh' })).granted).toBe(true);
    await expect(client.acquire({ resource: 'broken' })).rejects.toMatchObject({ code: status.NOT_FOUND });
    const refusal = sidecar.logs.find((entry) => entry.msg === 'policy reload refused; still serving the previous policy');
    expect(refusal?.problems).toEqual([expect.stringContaining('rate')]);

    // A good file again clears the refusal.
    volume.update(storeSection() + resources(true).replace('rate: 100/1d }]', 'rate: 200/1d }]'));
    await within(5_000, async () => (await metric(sidecar, 'sluice_policy_reloads_total', 'result="applied"')) === 2);
    expect(await (await fetch(`http://${sidecar.admin}/readyz`)).text()).not.toMatch(/refused/);
  });
});

describe('SIGHUP', () => {
  // The served path is a symlink into a directory the sidecar does not watch: an edit there is
  // seen only when SIGHUP asks for it.
  const elsewhere = mkdtempSync(join(tmpdir(), 'sluice-policy-target-'));
  const watched = mkdtempSync(join(tmpdir(), 'sluice-policy-link-'));
  let sidecar: SidecarProcess;
  let client: SluiceClient;

  beforeAll(async () => {
    writeFileSync(join(elsewhere, 'policy.yaml'), resources(false));
    symlinkSync(join(elsewhere, 'policy.yaml'), join(watched, 'policy.yaml'));
    sidecar = await startSidecarOn(join(watched, 'policy.yaml'));
    client = connect(sidecar.address);
  });
  afterAll(async () => {
    client?.close();
    await sidecar?.stop();
  });

  it('reads the policy file again instead of ending the process', async () => {
    await expect(client.acquire({ resource: 'fresh' })).rejects.toMatchObject({ code: status.NOT_FOUND });
    writeFileSync(join(elsewhere, 'policy.yaml'), resources(true));
    sidecar.child.kill('SIGHUP');
    await within(5_000, async () => sidecar.logs.some((entry) => entry.msg === 'policy reloaded' && entry.trigger === 'SIGHUP'));
    expect((await client.acquire({ resource: 'fresh' })).granted).toBe(true);
    expect(sidecar.child.exitCode).toBeNull();
  });

  it('reads the file once for a storm of SIGHUPs, not once for each', async () => {
    const reloads = async () => (await metric(sidecar, 'sluice_policy_reloads_total'));
    const before = await reloads();
    for (let i = 0; i < 30; i++) {
      sidecar.child.kill('SIGHUP');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // A bad file and one more signal: once that is refused, every reload the storm caused is done.
    writeFileSync(join(elsewhere, 'policy.yaml'), 'resources: [ broken\n');
    sidecar.child.kill('SIGHUP');
    await within(5_000, async () => (await metric(sidecar, 'sluice_policy_reloads_total', 'result="rejected"')) === 1);
    expect((await reloads()) - before).toBeLessThanOrEqual(3);
    expect((await client.acquire({ resource: 'fresh' })).granted).toBe(true);
  });
});
