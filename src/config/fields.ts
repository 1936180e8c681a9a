// Field schemas shared by every section of the policy file (sluice's resources and the envoy:
// section alike), so a duration or a lease block reads and fails the same everywhere.
import { z } from 'zod';
import { parseDuration } from './units.js';

/** `20ms`, `30s`, `1m` -> milliseconds, above 0. */
export const duration = z.string({ error: 'expected a duration such as 20ms, 30s, 1m' }).transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    ctx.issues.push({ code: 'custom', input: text, message: 'expected a duration such as 20ms, 30s, 1m' });
    return z.NEVER;
  }
  return ms;
});

// Local token leases (Redis store only): take blocks of budget ahead and serve from them.
const LEASE_DEFAULTS = { enabled: true, max_fraction: 0.1, ttl: 1_000 };

export const lease = z
  .strictObject({
    enabled: z.boolean({ error: 'expected true or false' }).default(LEASE_DEFAULTS.enabled),
    max_fraction: z
      .number({ error: 'expected a number between 0 and 1' })
      .gt(0, { error: 'expected more than 0' })
      .max(1, { error: 'expected at most 1' })
      .default(LEASE_DEFAULTS.max_fraction),
    ttl: duration.default(LEASE_DEFAULTS.ttl),
  })
  .default(LEASE_DEFAULTS);
