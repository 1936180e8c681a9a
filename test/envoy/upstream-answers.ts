// The answers of upstream's integration test testBasicBaseConfig (test/integration/
// integration_test.go), which upstream runs on its config files and on the same config from an
// xDS management server: domains basic (key1 50/SECOND) and another (key2 20/MINUTE, key3
// 10/HOUR, key4 20/DAY).
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { secondsToWindowEnd } from '../../src/envoy/units.js';
import { desc, type EnvoyClient, type WireStatus } from './client.js';
import { inOneWindow } from './upstream.js';

/** A status as one line: code, requests_per_unit/unit (or -), limit_remaining. */
export const line = (s: WireStatus) => `${s.code} ${s.current_limit ? `${s.current_limit.requests_per_unit}/${s.current_limit.unit}` : '-'} ${s.limit_remaining}`;

/**
 * Upstream runs this case in several variants; sluice answers as its variant that stops counting
 * a request that is over the limit (STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT), since a request
 * over the limit takes nothing in sluice (docs/envoy.md).
 */
export async function expectBasicConfigAnswers(client: EnvoyClient): Promise<void> {
  const unknown = await client.shouldRateLimit('foo', [desc('hello', 'world')]);
  expect(unknown).toMatchObject({ overall_code: 'OK', statuses: [{ code: 'OK', current_limit: null, limit_remaining: 0 }] });

  expect((await client.shouldRateLimit('basic', [desc('key1', 'foo')])).statuses.map(line)).toEqual(['OK 50/SECOND 49']);

  await inOneWindow('MINUTE', 20_000);
  const one = randomUUID();
  for (let i = 0; i < 25; i++) {
    const res = await client.shouldRateLimit('another', [desc('key2', one)]);
    const expected = i < 20 ? `OK 20/MINUTE ${20 - (i + 1)}` : 'OVER_LIMIT 20/MINUTE 0';
    expect(res.overall_code, `request ${i}`).toBe(i < 20 ? 'OK' : 'OVER_LIMIT');
    expect(res.statuses.map(line), `request ${i}`).toEqual([expected]);
  }

  // Two keys of one domain: once key3 is over its limit, key2 is no longer charged.
  const two = randomUUID();
  for (let i = 0; i < 15; i++) {
    const res = await client.shouldRateLimit('another', [desc('key2', two), desc('key3', two)]);
    const over = i >= 10;
    expect(res.overall_code, `request ${i}`).toBe(over ? 'OVER_LIMIT' : 'OK');
    expect(res.statuses.map(line), `request ${i}`).toEqual([`OK 20/MINUTE ${over ? 10 : 20 - (i + 1)}`, over ? 'OVER_LIMIT 10/HOUR 0' : `OK 10/HOUR ${10 - (i + 1)}`]);
  }

  // duration_until_reset counts down to the end of the window.
  for (let i = 0; i < 2; i++) {
    const before = Date.now();
    const res = await client.shouldRateLimit('another', [desc('key4', 'durTest')]);
    const after = Date.now();
    const seconds = res.statuses[0]!.duration_until_reset!.seconds;
    expect(seconds).toBeLessThanOrEqual(secondsToWindowEnd('DAY', before));
    expect(seconds).toBeGreaterThanOrEqual(secondsToWindowEnd('DAY', after));
  }
}
