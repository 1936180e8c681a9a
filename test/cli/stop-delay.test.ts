// SLUICE_STOP_DELAY, the classic sidecar's shutdown: kubelet sends SIGTERM to the app and sluice at
// once, so sluice keeps granting for the delay (while the app finishes), then drains and exits 0.
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { connect } from '../support/client.js';
import { until } from '../support/load.js';
import { startSidecar } from '../support/sidecar.js';

const POLICY = `
resources:
  - name: api
    limits:
      - { name: plenty, algorithm: fixed_window, rate: 1000000/1h }
`;
const DELAY_MS = 1_500;

describe('SLUICE_STOP_DELAY', () => {
  it('keeps granting after SIGTERM until the delay has passed, then exits 0', async () => {
    const sidecar = await startSidecar(POLICY, { SLUICE_STOP_DELAY: `${DELAY_MS}ms` });
    const client = connect(sidecar.address);
    expect((await client.acquire({ resource: 'api' })).granted).toBe(true);
    const exited = once(sidecar.child, 'exit');
    const signalled = Date.now();
    sidecar.child.kill('SIGTERM');
    await until(() => sidecar.logs.some((line) => line.stopDelayMs === DELAY_MS), 5_000);
    let lastGrantAfter = -1;
    let done = false;
    void exited.then(() => (done = true));
    // Paced calls until the process is gone: each grant after the signal is time it kept serving.
    while (!done) {
      const granted = await client.acquire({ resource: 'api' }).then((res) => res.granted, () => false);
      if (granted) lastGrantAfter = Date.now() - signalled;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const [code] = await exited;
    client.close();
    expect(code).toBe(0);
    // Granting went on for the delay (less the moment the signal took to arrive)...
    expect(lastGrantAfter).toBeGreaterThanOrEqual(DELAY_MS - 200);
    // ...and the drain came after it.
    const drained = sidecar.logs.findIndex((line) => line.msg === 'shutting down');
    expect(drained).toBeGreaterThan(sidecar.logs.findIndex((line) => line.stopDelayMs === DELAY_MS));
  });

  it('refuses a value that is not a duration', async () => {
    await expect(startSidecar(POLICY, { SLUICE_STOP_DELAY: '25' })).rejects.toThrow(/SLUICE_STOP_DELAY must be a duration/);
  });
});
